"""Optimizers and losses that compute what Keras computes, where torch's own classes do not. codegen.py
pastes the ones a model needs into its train.py (inspect.getsource), so each must stand alone: torch,
math and nothing else. Formulas from Keras 3's optimizers and losses (keras/src/optimizers/*.py)."""

from __future__ import annotations

import math

import torch


class KerasOptimizer(torch.optim.Optimizer):
    """Keras's Optimizer.apply() around each optimizer's own update (`update`, one parameter): the
    gradients unscaled by loss_scale_factor, accumulated over gradient_accumulation_steps calls (the
    update takes their mean on the last), clipped (clipnorm per gradient, else global_clipnorm, else
    clipvalue), the decoupled weight decay `p -= p * weight_decay * lr`, the update, and with use_ema
    the moving average of the weights, which `finalize()` (fit()'s last act) puts in their place.
    `iterations` counts the updates (bias corrections read it), `calls` the calls to step(), as
    Keras's `_iterations` (its learning-rate schedules read that). skip_non_finite: a step whose gradients are not all finite
    changes nothing (Keras's LossScaleOptimizer).

    TensorFlow gives an embedding's gradient one row per token occurrence (IndexedSlices) and Keras
    squares each row before summing: a token seen twice adds g1**2 + g2**2, not (g1 + g2)**2. An
    nn.Embedding with sparse=True gives torch's gradient the same rows (prepare_model sets it)."""

    def __init__(
        self,
        params,
        defaults,
        weight_decay=0.0,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        gradient_accumulation_steps=None,
        loss_scale_factor=None,
        skip_non_finite=False,
    ):
        # The settings Keras's base class takes, in `defaults` too: the training check compares them.
        shared = dict(
            weight_decay=weight_decay or 0.0,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            gradient_accumulation_steps=gradient_accumulation_steps,
            loss_scale_factor=loss_scale_factor,
        )
        super().__init__(params, dict(defaults, **shared))
        self.skip_non_finite = skip_non_finite
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.use_ema, self.ema_momentum = use_ema, ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.loss_scale_factor = loss_scale_factor
        self.calls = 0

    @property
    def iterations(self):
        """Keras's `iterations`: the updates made (calls to step() over the accumulation steps)."""
        return self.calls // (self.gradient_accumulation_steps or 1)

    def scale_loss(self, loss):
        """What backward() runs on: Keras multiplies the loss by loss_scale_factor (the step divides
        the gradients by it again), which keeps float16 gradients from underflowing."""
        return loss * self.loss_scale_factor if self.loss_scale_factor else loss

    @torch.no_grad()
    def step(self, closure=None):
        entries = [(p, group) for group in self.param_groups for p in group["params"] if p.grad is not None]
        grads = [p.grad / self.loss_scale_factor if self.loss_scale_factor else p.grad for p, _ in entries]
        if self.skip_non_finite and not all(
            torch.isfinite(g._values() if g.is_sparse else g).all() for g in grads
        ):
            return  # Keras's LossScaleOptimizer skips the step (it would lower its loss scale)
        for p, group in entries:
            self.build(p, self.state[p], group)
        steps = self.gradient_accumulation_steps
        if steps:
            sums = [self.state[p].setdefault("accumulated", torch.zeros_like(p)) for p, _ in entries]
            if (self.calls + 1) % steps:
                for total, grad in zip(sums, grads, strict=True):
                    total.add_(grad)
                grads = None
            else:
                grads = [(grad.to_dense() + total) / steps for grad, total in zip(grads, sums, strict=True)]
                for total in sums:
                    total.zero_()
        if grads is not None:
            grads = self.clip(grads)
            for p, group in entries:
                self.decay(p, group)
            for (p, group), grad in zip(entries, grads, strict=True):
                self.update(p, grad, self.state[p], group)
        if self.use_ema:
            self.moving_average([p for p, _ in entries])
        self.calls += 1

    def build(self, p, state, group):
        """State that Keras creates from the weight when it builds, at the first call (before any
        weight decay)."""

    def update(self, p, grad, state, group):
        raise NotImplementedError

    @staticmethod
    def decay(p, group):
        """Keras's weight decay: decoupled from the gradient, applied before the update."""
        if group.get("weight_decay"):
            p.sub_(p * KerasOptimizer.keras_cast(group["weight_decay"]) * group["lr"])

    def clip(self, grads):
        """Keras's _clip_gradients: one kind of clipping, in this order of precedence."""
        if self.clipnorm and self.clipnorm > 0:
            return [
                self.rows(g, lambda v: v * self.clipnorm / torch.clamp(v.norm(), min=self.clipnorm))
                for g in grads
            ]
        if self.global_clipnorm and self.global_clipnorm > 0:
            norm = (
                torch.stack(
                    [g.coalesce().values().square().sum() if g.is_sparse else g.square().sum() for g in grads]
                )
                .sum()
                .sqrt()
            )
            scale = self.global_clipnorm * torch.minimum(1.0 / norm, torch.tensor(1.0 / self.global_clipnorm))
            return [g * scale for g in grads]
        if self.clipvalue and self.clipvalue > 0:
            return [self.rows(g, lambda v: v.clamp(-self.clipvalue, self.clipvalue)) for g in grads]
        return grads

    @staticmethod
    def rows(grad, function):
        """`function` on a gradient's values: a sparse gradient's rows (as TensorFlow's IndexedSlices)."""
        if not grad.is_sparse:
            return function(grad)
        return torch.sparse_coo_tensor(grad._indices(), function(grad._values()), grad.shape)

    @staticmethod
    def dense_and_square(grad):
        if not grad.is_sparse:
            return grad, grad.square()
        squares = torch.sparse_coo_tensor(grad._indices(), grad._values().square(), grad.shape)
        return grad.to_dense(), squares.to_dense()

    def moving_average(self, params):
        """Keras's use_ema: each weight's moving average (the weight itself at the first call)."""
        momentum = self.ema_momentum if self.iterations else 0.0
        for p in params:
            average = self.state[p].setdefault("average", p.detach().clone())
            average.copy_(momentum * average + (1 - momentum) * p)
        if self.ema_overwrite_frequency and (self.iterations + 1) % self.ema_overwrite_frequency == 0:
            self.finalize()

    @torch.no_grad()
    def finalize(self):
        """fit()'s last act (Keras's finalize_variable_values): with use_ema each weight becomes its
        moving average."""
        if not self.use_ema:
            return
        for group in self.param_groups:
            for p in group["params"]:
                if "average" in self.state[p]:
                    p.copy_(self.state[p]["average"])

    @staticmethod
    def keras_cast(value):
        """A Python hyper-parameter as Keras's ops.cast gives it the variable's dtype: through a
        float32 tensor (0.999 becomes 0.99900001287...); seen in float64, invisible in float32."""
        return torch.tensor(value, dtype=torch.float32).item()


class KerasSGD(KerasOptimizer):
    """SGD with Keras's decoupled weight decay (torch.optim.SGD adds weight_decay * p to the
    gradient, which momentum then carries along). Momentum and Nesterov as Keras computes them."""

    def __init__(self, params, lr, momentum=0.0, nesterov=False, **keras):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov), **keras)

    def update(self, p, grad, state, group):
        grad, _ = self.dense_and_square(grad)
        lr, momentum = group["lr"], self.keras_cast(group["momentum"])
        if not group["momentum"]:
            p.sub_(grad * lr)
            return
        velocity = state.setdefault("velocity", torch.zeros_like(p))
        velocity.copy_(velocity * momentum - grad * lr)
        p.add_(velocity * momentum - grad * lr if group["nesterov"] else velocity)


class KerasAdam(KerasOptimizer):
    """Adam (and AdamW: weight_decay > 0) as Keras computes it. Keras adds epsilon to sqrt(v) before
    the bias correction; torch.optim.Adam adds it after, which is a different denominator in the
    first steps (by up to 1 / sqrt(1 - beta_2) = 31.6x for epsilon)."""

    def __init__(self, params, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **keras):
        super().__init__(
            params, dict(lr=lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad), **keras
        )

    def update(self, p, grad, state, group):
        if "m" not in state:
            state.update(m=torch.zeros_like(p), v=torch.zeros_like(p), v_hat=torch.zeros_like(p))
        t = self.iterations + 1
        beta_1, beta_2 = group["beta_1"], group["beta_2"]
        alpha = group["lr"] * math.sqrt(1 - self.keras_cast(beta_2) ** t) / (1 - self.keras_cast(beta_1) ** t)
        m, v = state["m"], state["v"]
        grad, square = self.dense_and_square(grad)
        m.add_((grad - m) * (1 - beta_1))
        v.add_((square - v) * (1 - beta_2))
        if group["amsgrad"]:
            torch.maximum(state["v_hat"], v, out=state["v_hat"])
            v = state["v_hat"]
        p.sub_(m * alpha / (v.sqrt() + group["epsilon"]))


class KerasNadam(KerasOptimizer):
    """Nadam as Keras computes it: Adam with Nesterov momentum, whose momentum schedule
    u_t = beta_1 * (1 - 0.5 * 0.96 ** t) multiplies into one product that every parameter shares
    (Keras updates it once per update, before the parameters, with the Python hyper-parameters; the
    update itself casts them as Keras casts them)."""

    def __init__(self, params, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **keras):
        super().__init__(params, dict(lr=lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon), **keras)
        self.u_product, self.u_product_step = 1.0, 0

    def update(self, p, grad, state, group):
        t = self.iterations + 1
        if self.u_product_step != t:  # once per update, before the first parameter
            self.u_product *= self.param_groups[0]["beta_1"] * (1.0 - 0.5 * 0.96**t)
            self.u_product_step = t
        decay = self.keras_cast(0.96)
        beta_1, beta_2 = self.keras_cast(group["beta_1"]), self.keras_cast(group["beta_2"])
        u_t = beta_1 * (1.0 - 0.5 * decay**t)
        u_t_1 = beta_1 * (1.0 - 0.5 * decay ** (t + 1))
        u_product_t_1 = self.u_product * u_t_1
        if "m" not in state:
            state.update(m=torch.zeros_like(p), v=torch.zeros_like(p))
        m, v = state["m"], state["v"]
        grad, square = self.dense_and_square(grad)
        m.add_((grad - m) * (1 - beta_1))
        v.add_((square - v) * (1 - beta_2))
        m_hat = u_t_1 * m / (1 - u_product_t_1) + (1 - u_t) * grad / (1 - self.u_product)
        v_hat = v / (1 - beta_2**t)
        p.sub_(m_hat * group["lr"] / (v_hat.sqrt() + group["epsilon"]))


class KerasRMSprop(KerasOptimizer):
    """RMSprop as Keras computes it: epsilon inside the square root (torch.optim.RMSprop adds it
    outside), Keras's `rho` is torch's `alpha`, and momentum accumulates the scaled step."""

    def __init__(self, params, lr, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **keras):
        defaults = dict(lr=lr, rho=rho, momentum=momentum, epsilon=epsilon, centered=centered)
        super().__init__(params, defaults, **keras)

    def update(self, p, grad, state, group):
        rho = group["rho"]
        if "velocity" not in state:
            state.update(
                velocity=torch.zeros_like(p), average=torch.zeros_like(p), momentum=torch.zeros_like(p)
            )
        velocity = state["velocity"]
        grad, square = self.dense_and_square(grad)
        velocity.mul_(rho).add_((1 - rho) * square)
        denominator = velocity + group["epsilon"]
        if group["centered"]:
            state["average"].mul_(rho).add_((1 - rho) * grad)
            denominator = velocity - state["average"].square() + group["epsilon"]
        increment = group["lr"] * grad / denominator.sqrt()
        if group["momentum"] > 0:
            state["momentum"].mul_(group["momentum"]).add_(increment)
            increment = state["momentum"]
        p.sub_(increment)


class KerasAdagrad(KerasOptimizer):
    """Adagrad as Keras computes it: the accumulator starts at initial_accumulator_value (Keras 0.1,
    torch 0) and epsilon sits inside the square root."""

    def __init__(self, params, lr, initial_accumulator_value=0.1, epsilon=1e-7, **keras):
        defaults = dict(lr=lr, initial_accumulator_value=initial_accumulator_value, epsilon=epsilon)
        super().__init__(params, defaults, **keras)

    def update(self, p, grad, state, group):
        if "accumulator" not in state:
            state["accumulator"] = torch.full_like(p, group["initial_accumulator_value"])
        grad, square = self.dense_and_square(grad)
        state["accumulator"].add_(square)
        p.sub_(group["lr"] * grad / (state["accumulator"] + group["epsilon"]).sqrt())


class KerasAdadelta(KerasOptimizer):
    """Adadelta as Keras computes it: epsilon inside both square roots, the step scaled by lr
    (torch.optim.Adadelta agrees but for its lr default 1.0 against Keras's 0.001)."""

    def __init__(self, params, lr, rho=0.95, epsilon=1e-7, **keras):
        super().__init__(params, dict(lr=lr, rho=rho, epsilon=epsilon), **keras)

    def update(self, p, grad, state, group):
        rho, epsilon = group["rho"], group["epsilon"]
        if "square_average" not in state:
            state.update(square_average=torch.zeros_like(p), delta_average=torch.zeros_like(p))
        grad, square = self.dense_and_square(grad)
        state["square_average"].copy_(rho * state["square_average"] + (1 - rho) * square)
        delta = (
            -((state["delta_average"] + epsilon).sqrt() * grad) / (state["square_average"] + epsilon).sqrt()
        )
        state["delta_average"].copy_(rho * state["delta_average"] + (1 - rho) * delta.square())
        p.add_(group["lr"] * delta)


class KerasAdamax(KerasOptimizer):
    """Adamax as Keras computes it: epsilon added to the infinity norm, not to the gradient."""

    def __init__(self, params, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **keras):
        super().__init__(params, dict(lr=lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon), **keras)

    def update(self, p, grad, state, group):
        if "m" not in state:
            state.update(m=torch.zeros_like(p), u=torch.zeros_like(p))
        grad, _ = self.dense_and_square(grad)
        beta_1_power = self.keras_cast(group["beta_1"]) ** (self.iterations + 1)
        state["m"].add_((grad - state["m"]) * (1 - group["beta_1"]))
        torch.maximum(group["beta_2"] * state["u"], grad.abs(), out=state["u"])
        p.sub_(group["lr"] * state["m"] / ((1 - beta_1_power) * (state["u"] + group["epsilon"])))


class KerasFtrl(KerasOptimizer):
    """FTRL-proximal as Keras computes it (torch has none): per-coordinate learning rates from the
    accumulated squared gradients, L1/L2 strengths, L2 shrinkage and `beta`."""

    def __init__(
        self,
        params,
        lr,
        learning_rate_power=-0.5,
        initial_accumulator_value=0.1,
        l1_regularization_strength=0.0,
        l2_regularization_strength=0.0,
        l2_shrinkage_regularization_strength=0.0,
        beta=0.0,
        **keras,
    ):
        defaults = dict(
            lr=lr,
            learning_rate_power=learning_rate_power,
            initial_accumulator_value=initial_accumulator_value,
            l1_regularization_strength=l1_regularization_strength,
            l2_regularization_strength=l2_regularization_strength,
            l2_shrinkage_regularization_strength=l2_shrinkage_regularization_strength,
            beta=beta,
        )
        super().__init__(params, defaults, **keras)

    def update(self, p, grad, state, group):
        lr, power = group["lr"], group["learning_rate_power"]
        if "accumulator" not in state:
            state.update(
                accumulator=torch.full_like(p, group["initial_accumulator_value"]), linear=torch.zeros_like(p)
            )
        grad, square = self.dense_and_square(grad)
        l2 = group["l2_regularization_strength"] + group["beta"] / (2.0 * lr)
        shrunk = grad + 2 * group["l2_shrinkage_regularization_strength"] * p
        accumulator, linear = state["accumulator"], state["linear"]
        new_accumulator = accumulator + square
        linear.add_(shrunk - (new_accumulator.pow(-power) - accumulator.pow(-power)) / lr * p)
        quadratic = new_accumulator.pow(-power) / lr + 2 * l2
        l1 = group["l1_regularization_strength"]
        p.copy_((linear.clamp(-l1, l1) - linear) / quadratic)
        accumulator.copy_(new_accumulator)


class KerasLamb(KerasOptimizer):
    """LAMB as Keras computes it (torch has none): Adam's bias-corrected step, scaled per tensor by
    the ratio of the weight's norm to the step's."""

    def __init__(self, params, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **keras):
        super().__init__(params, dict(lr=lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon), **keras)

    def update(self, p, grad, state, group):
        if "m" not in state:
            state.update(m=torch.zeros_like(p), v=torch.zeros_like(p))
        t = self.iterations + 1
        beta_1_power = self.keras_cast(group["beta_1"]) ** t
        beta_2_power = self.keras_cast(group["beta_2"]) ** t
        grad, square = self.dense_and_square(grad)
        m, v = state["m"], state["v"]
        m.add_((grad - m) * (1 - group["beta_1"]))
        v.add_((square - v) * (1 - group["beta_2"]))
        step = (m / (1.0 - beta_1_power)) / ((v / (1.0 - beta_2_power)).sqrt() + group["epsilon"])
        weight_norm, step_norm = p.square().sum().sqrt(), step.square().sum().sqrt()
        ratio = weight_norm / step_norm if weight_norm > 0 and step_norm > 0 else 1.0
        p.sub_(ratio * group["lr"] * step)


class KerasLion(KerasOptimizer):
    """Lion as Keras computes it: the sign of an interpolated momentum."""

    def __init__(self, params, lr, beta_1=0.9, beta_2=0.99, **keras):
        super().__init__(params, dict(lr=lr, beta_1=beta_1, beta_2=beta_2), **keras)

    def update(self, p, grad, state, group):
        m = state.setdefault("m", torch.zeros_like(p))
        grad, _ = self.dense_and_square(grad)
        beta_1, beta_2 = self.keras_cast(group["beta_1"]), self.keras_cast(group["beta_2"])
        p.sub_(group["lr"] * torch.sign(m * beta_1 + grad * (1.0 - beta_1)))
        m.copy_(m * beta_2 + grad * (1.0 - beta_2))


class KerasAdafactor(KerasOptimizer):
    """Adafactor as Keras computes it: a weight of two or more dimensions keeps the mean squared
    gradient per row and per column of its last two axes in Keras's layout (a parameter group's
    `keras_layout`: the axes that take the parameter to Keras's order, then Keras's shape), others
    the full square."""

    def __init__(
        self,
        params,
        lr,
        beta_2_decay=-0.8,
        epsilon_1=1e-30,
        epsilon_2=1e-3,
        clip_threshold=1.0,
        relative_step=True,
        schedule=False,
        **keras,
    ):
        defaults = dict(
            lr=lr,
            beta_2_decay=beta_2_decay,
            epsilon_1=epsilon_1,
            epsilon_2=epsilon_2,
            clip_threshold=clip_threshold,
            relative_step=relative_step,
            keras_layout=None,
        )
        super().__init__(params, defaults, **keras)
        self.schedule = schedule  # Keras skips relative_step when the learning rate is a schedule

    def update(self, p, grad, state, group):
        axes, shape = group["keras_layout"] or (list(range(p.dim())), list(p.shape))
        weight = p.permute(*axes).reshape(shape)
        grad = self.dense_and_square(grad)[0].permute(*axes).reshape(shape)
        t = float(self.iterations + 1)
        lr = group["lr"]
        if group["relative_step"] and not self.schedule:
            lr = min(lr, 1 / math.sqrt(t))
        rho = min(lr, 1 / math.sqrt(t))
        alpha = torch.clamp(weight.square().mean().sqrt(), min=self.keras_cast(group["epsilon_2"])) * rho
        square = grad.square() + group["epsilon_1"]
        beta_2 = 1 - t ** group["beta_2_decay"]
        if weight.dim() >= 2:
            if "r" not in state:
                state.update(r=torch.zeros_like(weight[..., 0]), c=torch.zeros_like(weight[..., 0, :]))
            state["r"].copy_(beta_2 * state["r"] + (1 - beta_2) * square.mean(-1))
            state["c"].copy_(beta_2 * state["c"] + (1 - beta_2) * square.mean(-2))
            v = (state["r"] / state["r"].mean(-1, keepdim=True)).unsqueeze(-1) * state["c"].unsqueeze(-2)
        else:
            v = state.setdefault("v", torch.zeros_like(weight))
            v.copy_(beta_2 * v + (1 - beta_2) * square)
        u = grad / v.sqrt()
        u = u / torch.clamp(u.square().mean().sqrt() / group["clip_threshold"], min=1.0)
        step = (
            (alpha * u).reshape([p.shape[a] for a in axes]).permute(*[axes.index(i) for i in range(p.dim())])
        )
        p.sub_(step)


class KerasScheduleFreeAdamW(KerasOptimizer):
    """Schedule-free AdamW as Keras computes it: the weights are an interpolation between an Adam
    iterate (kept in the state, starting at the weights) and its running average."""

    def __init__(self, params, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8, warmup_steps=0, **keras):
        defaults = dict(lr=lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, warmup_steps=warmup_steps)
        super().__init__(params, defaults, **keras)

    def build(self, p, state, group):
        if "z" not in state:
            state.update(z=p.detach().clone(), v=torch.zeros_like(p))

    def update(self, p, grad, state, group):
        t = float(self.iterations + 1)
        beta_1, beta_2 = self.keras_cast(group["beta_1"]), self.keras_cast(group["beta_2"])
        epsilon, lr = self.keras_cast(group["epsilon"]), group["lr"]
        if group["warmup_steps"] > 0:
            lr = lr * min(t / group["warmup_steps"], 1.0)
        grad, square = self.dense_and_square(grad)
        z, v = state["z"], state["v"]
        v.add_((square - v) * (1 - beta_2))
        z.sub_(lr * grad / ((v / (1 - beta_2**t)).sqrt() + epsilon))
        weight = 1.0 / t
        # Keras's `momentum_old = momentum.value` reads the variable after its update: z, not z_old.
        x_old = (p - (1 - beta_1) * z) / beta_1
        x_new = (1 - weight) * x_old + weight * z
        p.copy_((1 - beta_1) * z + beta_1 * x_new)


class KerasMuon(KerasOptimizer):
    """Muon as Keras computes it: a Keras weight of two dimensions (not an embedding's, nor in
    `exclude_layers`) steps along the orthogonalised momentum (quintic Newton-Schulz iterations);
    every other weight takes an AdamW step with the adam_* settings. train.py puts the AdamW weights
    in a parameter group with `adam=True`."""

    def __init__(
        self,
        params,
        lr,
        adam_beta_1=0.9,
        adam_beta_2=0.999,
        adam_weight_decay=0.004,
        epsilon=1e-7,
        muon_a=3.4445,
        muon_b=-4.7750,
        muon_c=2.0315,
        adam_lr_ratio=1,
        momentum=0.95,
        ns_steps=5,
        nesterov=True,
        rms_rate=0.2,
        weight_decay=0.004,
        **keras,
    ):
        defaults = dict(
            lr=lr,
            adam_beta_1=adam_beta_1,
            adam_beta_2=adam_beta_2,
            adam_weight_decay=adam_weight_decay,
            epsilon=epsilon,
            muon_a=muon_a,
            muon_b=muon_b,
            muon_c=muon_c,
            adam_lr_ratio=adam_lr_ratio,
            momentum=momentum,
            ns_steps=ns_steps,
            nesterov=nesterov,
            rms_rate=rms_rate,
            adam=False,
        )
        super().__init__(params, defaults, weight_decay=weight_decay, **keras)

    @staticmethod
    def decay(p, group):
        rate = group["adam_weight_decay"] if group["adam"] else group["weight_decay"]
        if rate:
            p.sub_(p * KerasOptimizer.keras_cast(rate) * group["lr"])

    def update(self, p, grad, state, group):
        grad, square = self.dense_and_square(grad)
        m = state.setdefault("m", torch.zeros_like(p))
        if group["adam"]:
            v = state.setdefault("v", torch.zeros_like(p))
            t = self.iterations + 1
            lr = group["lr"] * group["adam_lr_ratio"]
            beta_1_power = self.keras_cast(group["adam_beta_1"]) ** t
            beta_2_power = self.keras_cast(group["adam_beta_2"]) ** t
            alpha = lr * math.sqrt(1 - beta_2_power) / (1 - beta_1_power)
            m.add_((grad - m) * (1 - group["adam_beta_1"]))
            v.add_((square - v) * (1 - group["adam_beta_2"]))
            p.sub_(m * alpha / (v.sqrt() + group["epsilon"]))
            return
        m.add_(grad + m * (group["momentum"] - 1))
        direction = grad + group["momentum"] * m if group["nesterov"] else m
        update = self.orthogonalised(direction, group)
        step = group["lr"] * update
        if group["rms_rate"] is not None:
            step = step * math.sqrt(max(p.shape[0], p.shape[1])) * group["rms_rate"]
        p.sub_(step)

    @staticmethod
    def orthogonalised(x, group):
        """Keras's zeropower_via_newtonschulz5 (on a matrix, transposed to have no more rows than
        columns: the result is the same for the weight in either layout)."""
        a, b, c = group["muon_a"], group["muon_b"], group["muon_c"]
        tall = x.shape[-2] > x.shape[-1]
        if tall:
            x = x.transpose(-2, -1)
        x = x / (torch.linalg.matrix_norm(x, keepdim=True) + 1e-7)
        for _ in range(group["ns_steps"]):
            gram = x @ x.transpose(-2, -1)
            x = a * x + (b * gram + c * gram @ gram) @ x
        return x.transpose(-2, -1) if tall else x


def orthogonal_penalty(kernel, factor, mode):
    """Keras's OrthogonalRegularizer on a (in, out) kernel: factor / 2 times the mean |cosine| between
    two distinct rows (mode "rows") or columns, each normalised as keras.ops.normalize does."""
    axis = 1 if mode == "rows" else 0
    unit = kernel * torch.clamp(torch.rsqrt(kernel.square().sum(axis, keepdim=True)), max=1e7)
    product = unit @ unit.T if mode == "rows" else unit.T @ unit
    size = product.shape[0]
    off_diagonal = product * (1.0 - torch.eye(size, dtype=product.dtype))
    return factor * 0.5 * off_diagonal.abs().sum() / (size * (size - 1.0) / 2.0)


def categorical_crossentropy(probabilities, targets, label_smoothing=0.0, reduction="mean"):
    """Keras's categorical cross-entropy on probabilities (from_logits=False): renormalised, clipped
    to [1e-7, 1 - 1e-7]; targets are one-hot (or class probabilities)."""
    if label_smoothing:
        targets = targets * (1 - label_smoothing) + label_smoothing / targets.shape[-1]
    probabilities = probabilities / probabilities.sum(dim=-1, keepdim=True)
    probabilities = probabilities.clamp(1e-7, 1 - 1e-7)
    per_sample = -(targets * probabilities.log()).sum(dim=-1)
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


def sparse_categorical_crossentropy(probabilities, targets, reduction="mean"):
    """Keras's sparse categorical cross-entropy on probabilities: targets are class indices."""
    probabilities = probabilities / probabilities.sum(dim=-1, keepdim=True)
    log_probabilities = probabilities.clamp(1e-7, 1 - 1e-7).log()
    per_sample = -log_probabilities.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


def binary_crossentropy(outputs, targets, from_logits=False, label_smoothing=0.0, reduction="mean"):
    """Keras's binary cross-entropy: the mean over the last axis, then over the batch; probabilities
    are clipped to [1e-7, 1 - 1e-7]."""
    if label_smoothing:
        targets = targets * (1 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        per_element = torch.nn.functional.binary_cross_entropy_with_logits(outputs, targets, reduction="none")
    else:
        p = outputs.clamp(1e-7, 1 - 1e-7)
        per_element = -(targets * p.log() + (1 - targets) * (1 - p).log())
    per_sample = per_element.mean(dim=-1)
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


def keras_loss(function, reduction="mean", **options):
    """A Keras loss as fit() reduces it: `function` gives Keras's per-sample values (Keras's loss
    function of the same name, on (outputs, targets)), averaged ("sum_over_batch_size") or summed."""

    def loss(outputs, targets):
        values = function(outputs, targets, **options)
        return values.sum() if reduction == "sum" else values.mean()

    return loss


def hinge_labels(targets):
    """Keras's hinge losses take 0/1 labels as -1/1 (when every label is 0 or 1)."""
    return 2.0 * targets - 1.0 if ((targets == 0) | (targets == 1)).all() else targets


def hinge(outputs, targets):
    return torch.clamp(1.0 - hinge_labels(targets) * outputs, min=0.0).mean(-1)


def squared_hinge(outputs, targets):
    return torch.clamp(1.0 - hinge_labels(targets) * outputs, min=0.0).square().mean(-1)


def categorical_hinge(outputs, targets):
    positive = (targets * outputs).sum(-1)
    negative = ((1.0 - targets) * outputs).amax(-1)
    return torch.clamp(negative - positive + 1.0, min=0.0)


def kl_divergence(outputs, targets):
    targets, outputs = targets.clamp(1e-7, 1), outputs.clamp(1e-7, 1)
    return (targets * (targets / outputs).log()).sum(-1)


def poisson(outputs, targets):
    return (outputs - targets * (outputs + 1e-7).log()).mean(-1)


def log_cosh(outputs, targets):
    x = outputs - targets
    return (x + torch.nn.functional.softplus(-2.0 * x) - math.log(2.0)).mean(-1)


def mean_absolute_percentage_error(outputs, targets):
    return 100.0 * ((targets - outputs) / torch.clamp(targets.abs(), min=1e-7)).abs().mean(-1)


def mean_squared_logarithmic_error(outputs, targets):
    first = (torch.clamp(outputs, min=1e-7) + 1.0).log()
    second = (torch.clamp(targets, min=1e-7) + 1.0).log()
    return (first - second).square().mean(-1)


def cosine_similarity(outputs, targets, axis=-1):
    unit = torch.nn.functional.normalize
    return -(unit(targets, dim=axis, eps=1e-12) * unit(outputs, dim=axis, eps=1e-12)).sum(axis)


def dice(outputs, targets, axis=None):
    """Keras's Dice: over every element of the batch unless `axis` names some."""
    axes = tuple(range(outputs.dim())) if axis is None else axis
    intersection = (targets * outputs).sum(axes)
    return 1 - 2.0 * intersection / (targets.sum(axes) + outputs.sum(axes) + 1e-7)


def tversky(outputs, targets, alpha=0.5, beta=0.5, axis=None):
    axes = tuple(range(outputs.dim())) if axis is None else axis
    intersection = (targets * outputs).sum(axes)
    false_positives = ((1 - outputs) * targets).sum(axes)
    false_negatives = (outputs * (1 - targets)).sum(axes)
    return 1 - intersection / (intersection + false_positives * alpha + false_negatives * beta + 1e-7)


def binary_focal_crossentropy(
    outputs,
    targets,
    apply_class_balancing=False,
    alpha=0.25,
    gamma=2.0,
    from_logits=False,
    label_smoothing=0.0,
):
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        outputs = torch.sigmoid(outputs)
    p = outputs.clamp(1e-7, 1 - 1e-7)
    bce = -(targets * p.log() + (1 - targets) * (1 - p).log())
    p_t = targets * outputs + (1 - targets) * (1 - outputs)
    focal = (1.0 - p_t).pow(gamma) * bce
    if apply_class_balancing:
        focal = (targets * alpha + (1 - targets) * (1 - alpha)) * focal
    return focal.mean(-1)


def categorical_focal_crossentropy(
    outputs, targets, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0
):
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / targets.shape[-1]
    if from_logits:
        outputs = torch.softmax(outputs, -1)
    outputs = (outputs / outputs.sum(-1, keepdim=True)).clamp(1e-7, 1 - 1e-7)
    return ((1.0 - outputs).pow(gamma) * alpha * -targets * outputs.log()).sum(-1)


def categorical_generalized_cross_entropy(outputs, targets, q=0.5):
    """Keras's generalized cross-entropy on probabilities; targets are class indices."""
    p = outputs.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    return (1 - p.pow(q)) / q


def categorical_accuracy(outputs, targets):
    return (outputs.argmax(-1) == targets.argmax(-1)).float().mean()


def sparse_categorical_accuracy(outputs, targets):
    return (outputs.argmax(-1) == targets.long()).float().mean()


def binary_accuracy(outputs, targets, threshold=0.5):
    return ((outputs > threshold).float() == targets).float().mean()


def mean_absolute_error(outputs, targets):
    return (outputs - targets).abs().mean()


def mean_squared_error(outputs, targets):
    return (outputs - targets).square().mean()


def classes_last(loss):
    """Keras's cross-entropy reduces over the last axis, torch's takes the classes on axis 1: a
    sequence of class scores (batch, steps, classes) is moved to (batch, classes, steps) for it."""

    def on_last_axis(outputs, targets):
        if targets.dim() == outputs.dim():  # one-hot rows or class probabilities
            targets = targets.movedim(-1, 1)
        return loss(outputs.movedim(-1, 1), targets)

    return on_last_axis


def keras_batchnorm_statistics(model):
    """Keras moves BatchNorm's moving variance towards the biased batch variance, torch's running_var
    towards the unbiased one (n / (n - 1) apart for n values per channel): after each training
    forward pass the difference is taken back out, so the statistics follow Keras's."""

    def biased_running_var(module, inputs, output):
        if not module.training or module.momentum is None or module.running_var is None:
            return
        x = inputs[0].detach()
        count = x.numel() // x.shape[1]
        if count > 1:
            biased = x.var(dim=[d for d in range(x.dim()) if d != 1], unbiased=False)
            # A new tensor, not an in-place change: autograd saved the old one for the backward pass.
            module.running_var = module.running_var - module.momentum * biased / (count - 1)

    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.register_forward_hook(biased_running_var)
