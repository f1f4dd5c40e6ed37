"""Where model.py computes the output of each Keras layer that has an activity regularizer: an
nn.Identity module named `<layer>_output` after that node, whose output train.py reads with a
forward hook (Keras adds the regularizer's penalty on the layer's output to the loss, and model.py's
forward returns only the model's outputs).

The place is found by value, as the Dropout layers' places are (dropout.py): the stage load records
each such layer's output at one sample. On the marked export (marked_ties.py) that value is the
marked model's, unlike any other node's.
"""

from __future__ import annotations

from torch import fx, nn

from pipeline.torch_worker.native import fxutil
from pipeline.torch_worker.native.context import PassContext
from pipeline.torch_worker.native.dropout import last_node_with
from pipeline.torch_worker.native.layers import tag

ACTIVITY = "tf2torch_activity"  # module.__dict__ key: the Keras layer whose output the module returns


def activity_outputs(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    if not ctx.activities:
        return []
    values = dict(ctx.values(gm)[0])  # the Identity computes its node's value too
    notes, done = [], 0
    nodes = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
    for activity in ctx.activities:
        node = None if activity.value is None else last_node_with(nodes, values, activity.value)
        if node is None:
            notes.append(f"{activity.layer}: no node of model.py computes its output (activity regularizer)")
            continue
        module = nn.Identity()
        module.__dict__[ACTIVITY] = activity.layer
        tag(module, f"{activity.layer}_output", {})
        name = fxutil.fresh_name(gm, f"{activity.layer}_output")
        gm.add_submodule(name, module)
        with gm.graph.inserting_after(node):
            call = gm.graph.call_module(name, (node,))
        node.replace_all_uses_with(call, delete_user_cb=lambda user, keep=call: user is not keep)
        nodes.insert(nodes.index(node) + 1, call)
        values[call.name] = values[node.name]
        done += 1
    gm.recompile()
    ctx.count("activity_outputs", done)
    return notes


def activity_modules(module: nn.Module) -> dict[str, str]:
    """Keras layer -> the name of model.py's module that returns its output."""
    return {m.__dict__[ACTIVITY]: name for name, m in module.named_modules() if ACTIVITY in m.__dict__}
