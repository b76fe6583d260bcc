"""Turn hard-coded flattening reshapes into ``torch.flatten(x, 1)``.

Exporters write ``reshape(x, [-1, 128])`` with the channel count baked into a constant.
After filters are pruned the constant is wrong and the model stops running; a flatten
from dimension 1 stays right for any number of channels.
"""

from __future__ import annotations

import math

import torch
from torch import fx
from torch.fx.passes.shape_prop import ShapeProp

RESHAPE_FUNCTIONS = {
    torch.reshape,
    torch.ops.aten.view.default,
    torch.ops.aten.reshape.default,
    torch.ops.aten._unsafe_view.default,
}
RESHAPE_METHODS = {"view", "reshape"}
RESHAPE_MODULE_TYPES = {"OnnxReshape"}


def _is_reshape(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in RESHAPE_FUNCTIONS
    if node.op == "call_method":
        return node.target in RESHAPE_METHODS
    if node.op == "call_module":
        return type(gm.get_submodule(str(node.target))).__name__ in RESHAPE_MODULE_TYPES
    return False


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def normalize_flattens(gm: fx.GraphModule, example: torch.Tensor) -> fx.GraphModule:
    """Replace every reshape that flattens all non-batch dims by ``torch.flatten(x, 1)``."""
    ShapeProp(gm).propagate(example)
    changed = False
    for node in list(gm.graph.nodes):
        if not _is_reshape(gm, node) or not isinstance(node.args[0], fx.Node):
            continue
        source, result = _shape(node.args[0]), _shape(node)
        if source is None or result is None or len(source) < 3 or len(result) != 2:
            continue
        if result != (source[0], math.prod(source[1:])):
            continue
        with gm.graph.inserting_before(node):
            flat = gm.graph.call_function(torch.flatten, (node.args[0], 1))
        flat.meta = dict(node.meta)
        node.replace_all_uses_with(flat)
        gm.graph.erase_node(node)
        changed = True
    if changed:
        gm.graph.eliminate_dead_code()
        gm.delete_all_unused_submodules()
        gm.recompile()
    return gm
