"""Optimizers and losses that compute what Keras computes, where torch's own classes do not. codegen.py
pastes the ones a model needs into its train.py (inspect.getsource), so each must stand alone: torch,
math and nothing else. Formulas from Keras 3's optimizers and losses (keras/src/optimizers/*.py)."""

from __future__ import annotations

import math

import torch


class KerasOptimizer(torch.optim.Optimizer):
    """What Keras's optimizers share: the gradient, and the square they accumulate. TensorFlow
    gives an embedding's gradient one row per token occurrence (IndexedSlices) and Keras squares
    each row before summing: a token seen twice adds g1**2 + g2**2, not (g1 + g2)**2. An
    nn.Embedding with sparse=True gives torch's gradient the same rows (make_optimizer sets it)."""

    @staticmethod
    def decay(p, group):
        """Keras's weight decay: decoupled from the gradient, applied before the update."""
        if group.get("weight_decay"):
            p.sub_(p * group["weight_decay"] * group["lr"])

    @staticmethod
    def keras_cast(value):
        """A Python hyper-parameter as Keras casts it to the variable's dtype: through a float32
        tensor (0.999 becomes 0.99900001287...); seen in float64, invisible in float32."""
        return torch.tensor(value, dtype=torch.float32).item()

    @staticmethod
    def gradients(p):
        if not p.grad.is_sparse:
            return p.grad, p.grad.square()
        rows, values = p.grad._indices(), p.grad._values()
        squares = torch.sparse_coo_tensor(rows, values.square(), p.shape)
        return p.grad.to_dense(), squares.to_dense()


class KerasSGD(KerasOptimizer):
    """SGD with Keras's decoupled weight decay (torch.optim.SGD adds weight_decay * p to the
    gradient, which momentum then carries along). Momentum and Nesterov as Keras computes them."""

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.decay(p, group)
                grad, _ = self.gradients(p)
                if not momentum:
                    p.sub_(lr * grad)
                    continue
                state = self.state[p]
                velocity = state.setdefault("velocity", torch.zeros_like(p))
                velocity.mul_(momentum).sub_(lr * grad)
                p.add_(momentum * velocity - lr * grad if group["nesterov"] else velocity)


class KerasAdam(KerasOptimizer):
    """Adam (and AdamW: weight_decay > 0) as Keras computes it. Keras adds epsilon to sqrt(v) before
    the bias correction; torch.optim.Adam adds it after, which is a different denominator in the
    first steps (by up to 1 / sqrt(1 - beta_2) = 31.6x for epsilon). Weight decay is decoupled and
    applied before the update, as in Keras."""

    def __init__(self, params, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, weight_decay=0.0):
        defaults = dict(
            lr=lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad, weight_decay=weight_decay
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, beta_1, beta_2 = group["lr"], group["beta_1"], group["beta_2"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(
                        step=0, m=torch.zeros_like(p), v=torch.zeros_like(p), v_hat=torch.zeros_like(p)
                    )
                state["step"] += 1
                self.decay(p, group)
                beta_1_power = self.keras_cast(beta_1) ** state["step"]
                alpha = lr * math.sqrt(1 - self.keras_cast(beta_2) ** state["step"]) / (1 - beta_1_power)
                m, v = state["m"], state["v"]
                grad, square = self.gradients(p)
                m.add_((grad - m) * (1 - beta_1))
                v.add_((square - v) * (1 - beta_2))
                if group["amsgrad"]:
                    torch.maximum(state["v_hat"], v, out=state["v_hat"])
                    v = state["v_hat"]
                p.sub_(m * alpha / (v.sqrt() + group["epsilon"]))


class KerasNadam(KerasOptimizer):
    """Nadam as Keras computes it: Adam with Nesterov momentum, whose momentum schedule
    u_t = beta_1 * (1 - 0.5 * 0.96 ** t) multiplies into one product that every parameter shares
    (Keras updates it once per step, before the parameters, with the Python hyper-parameters; the
    update itself casts them as Keras casts them)."""

    def __init__(self, params, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0):
        defaults = dict(lr=lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, weight_decay=weight_decay)
        super().__init__(params, defaults)
        self.iterations, self.u_product = 0, 1.0

    @torch.no_grad()
    def step(self, closure=None):
        self.iterations += 1
        t = self.iterations
        self.u_product *= self.param_groups[0]["beta_1"] * (1.0 - 0.5 * 0.96**t)
        decay = self.keras_cast(0.96)
        for group in self.param_groups:
            beta_1, beta_2 = self.keras_cast(group["beta_1"]), self.keras_cast(group["beta_2"])
            u_t = beta_1 * (1.0 - 0.5 * decay**t)
            u_t_1 = beta_1 * (1.0 - 0.5 * decay ** (t + 1))
            u_product_t_1 = self.u_product * u_t_1
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(m=torch.zeros_like(p), v=torch.zeros_like(p))
                self.decay(p, group)
                m, v = state["m"], state["v"]
                grad, square = self.gradients(p)
                m.add_((grad - m) * (1 - beta_1))
                v.add_((square - v) * (1 - beta_2))
                m_hat = u_t_1 * m / (1 - u_product_t_1) + (1 - u_t) * grad / (1 - self.u_product)
                v_hat = v / (1 - beta_2**t)
                p.sub_(m_hat * group["lr"] / (v_hat.sqrt() + group["epsilon"]))


class KerasRMSprop(KerasOptimizer):
    """RMSprop as Keras computes it: epsilon inside the square root (torch.optim.RMSprop adds it
    outside), Keras's `rho` is torch's `alpha`, and momentum accumulates the scaled step."""

    def __init__(self, params, lr, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, weight_decay=0.0):
        defaults = dict(
            lr=lr, rho=rho, momentum=momentum, epsilon=epsilon, centered=centered, weight_decay=weight_decay
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            rho = group["rho"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(
                        velocity=torch.zeros_like(p),
                        average=torch.zeros_like(p),
                        momentum=torch.zeros_like(p),
                    )
                velocity = state["velocity"]
                self.decay(p, group)
                grad, square = self.gradients(p)
                velocity.mul_(rho).add_((1 - rho) * square)
                denominator = velocity + group["epsilon"]
                if group["centered"]:
                    state["average"].mul_(rho).add_((1 - rho) * grad)
                    denominator = denominator - state["average"].square()
                increment = group["lr"] * grad / denominator.sqrt()
                if group["momentum"] > 0:
                    state["momentum"].mul_(group["momentum"]).add_(increment)
                    increment = state["momentum"]
                p.sub_(increment)


class KerasAdagrad(KerasOptimizer):
    """Adagrad as Keras computes it: the accumulator starts at initial_accumulator_value (Keras 0.1,
    torch 0) and epsilon sits inside the square root."""

    def __init__(self, params, lr, initial_accumulator_value=0.1, epsilon=1e-7, weight_decay=0.0):
        defaults = dict(
            lr=lr,
            initial_accumulator_value=initial_accumulator_value,
            epsilon=epsilon,
            weight_decay=weight_decay,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["accumulator"] = torch.full_like(p, group["initial_accumulator_value"])
                self.decay(p, group)
                grad, square = self.gradients(p)
                state["accumulator"].add_(square)
                p.sub_(group["lr"] * grad / (state["accumulator"] + group["epsilon"]).sqrt())


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
