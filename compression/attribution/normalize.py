"""Rewrite a model so every nonlinearity is its own module instance.

DeepLIFT replaces the gradient of each nonlinearity by a multiplier, which implementations
(captum's and ours) attach to *modules*. A functional ``F.relu``, an aten call, a module
used twice (torchvision's ResNet reuses ``self.relu``) or an in-place activation would
silently fall back to the plain gradient. This pass turns each such call into a fresh module
of its own, so the rule can be applied at every nonlinearity.

The same holds for a product of two tensors that both depend on the input (a squeeze-excite
gate times its feature map, a gated linear unit): its gradient b * da + a * db does not
conserve relevance, so each such multiplication becomes a :class:`Product` module of its own
and gets DeepLIFT's product rule.

The conv, linear and normalisation layers of the result are the original module objects
(same names, same Parameters); only activation, pooling and product modules are new.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from compression.errors import UnsupportedOperator

ELEMENTWISE_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Mish,
)  # fmt: skip
"""Unary elementwise nonlinearities: the DeepLIFT Rescale rule applies to each."""

MAXPOOL_TYPES: tuple[type[nn.Module], ...] = (nn.MaxPool1d, nn.MaxPool2d)

RULE_TYPES = ELEMENTWISE_TYPES + MAXPOOL_TYPES


class Product(nn.Module):
    """``a * b`` where both factors depend on the input; a call of its own so that DeepLIFT's
    product rule (``rules.ProductRule``) can split the product's change between them."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a * b


def _module(kind: Callable[..., nn.Module]) -> Callable[[tuple, dict], nn.Module]:
    return lambda args, kwargs: kind()


def _leaky(args: tuple, kwargs: dict) -> nn.Module:
    slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
    return nn.LeakyReLU(float(slope))


def _gelu(args: tuple, kwargs: dict) -> nn.Module:
    return nn.GELU(approximate=kwargs.get("approximate", "none"))


def _hardtanh(args: tuple, kwargs: dict) -> nn.Module:
    low = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
    high = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
    return nn.Hardtanh(float(low), float(high))


def _max_pool(spatial: int) -> Callable[[tuple, dict], nn.Module]:
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")

    def build(args: tuple, kwargs: dict) -> nn.Module:
        bound = dict(zip(names, args[1:], strict=False)) | kwargs
        if bound.pop("return_indices", False):
            raise UnsupportedOperator("max pooling that returns indices is not supported")
        pool_type = nn.MaxPool1d if spatial == 1 else nn.MaxPool2d
        return pool_type(**bound)

    return build


FUNCTIONS: dict[Any, Callable[[tuple, dict], nn.Module]] = {
    F.relu: _module(nn.ReLU),
    torch.relu: _module(nn.ReLU),
    torch.relu_: _module(nn.ReLU),
    F.relu6: _module(nn.ReLU6),
    F.leaky_relu: _leaky,
    F.elu: _module(nn.ELU),
    F.gelu: _gelu,
    F.silu: _module(nn.SiLU),
    torch.sigmoid: _module(nn.Sigmoid),
    F.sigmoid: _module(nn.Sigmoid),
    torch.tanh: _module(nn.Tanh),
    F.tanh: _module(nn.Tanh),
    F.hardswish: _module(nn.Hardswish),
    F.hardsigmoid: _module(nn.Hardsigmoid),
    F.hardtanh: _hardtanh,
    F.softplus: _module(nn.Softplus),
    F.mish: _module(nn.Mish),
    F.max_pool1d: _max_pool(1),
    F.max_pool2d: _max_pool(2),
}
METHODS: dict[str, Callable[[tuple, dict], nn.Module]] = {
    "relu": _module(nn.ReLU),
    "relu_": _module(nn.ReLU),
    "sigmoid": _module(nn.Sigmoid),
    "tanh": _module(nn.Tanh),
}


def _fresh_copy(module: nn.Module) -> nn.Module:
    """A private, out-of-place copy of an activation or pooling module."""
    clone = copy.deepcopy(module)
    if hasattr(clone, "inplace"):
        clone.inplace = False
    return clone


def _graph_module(model: nn.Module) -> fx.GraphModule:
    if isinstance(model, fx.GraphModule):
        return fx.GraphModule(model, copy.deepcopy(model.graph))
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:
        raise UnsupportedOperator(
            "the model cannot be traced into a graph for attribution (data-dependent control "
            f"flow?): {str(exc).splitlines()[0]}"
        ) from exc


def normalize(model: nn.Module) -> fx.GraphModule:
    """A graph of ``model`` in which each nonlinearity call has its own module.

    New modules are named ``nonlinearity_<i>`` (activations, pooling) and ``product_<i>``
    (products of two input-dependent tensors) in execution order; ``gm.nonlinearities``
    lists them all: every module that needs a DeepLIFT rule.
    """
    gm = _graph_module(model)
    names: list[str] = []
    for node in list(gm.graph.nodes):
        module = _replacement(gm, node)
        if module is None:
            continue
        name = f"nonlinearity_{len(names)}"
        gm.add_submodule(name, module)
        with gm.graph.inserting_before(node):
            call = gm.graph.call_module(name, (node.args[0],))
        call.meta = dict(node.meta)
        node.replace_all_uses_with(call)
        gm.graph.erase_node(node)
        names.append(name)
    _merge_silu(gm)
    names += _isolate_products(gm)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    gm.nonlinearities = [name for name in names if hasattr(gm, name)]
    return gm


def _replacement(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        return _fresh_copy(module) if isinstance(module, RULE_TYPES) else None
    if node.op == "call_function" and node.target in FUNCTIONS:
        return FUNCTIONS[node.target](node.args, dict(node.kwargs))
    if node.op == "call_method" and node.target in METHODS:
        return METHODS[node.target](node.args, dict(node.kwargs))
    return None


MULTIPLY = {operator.mul, torch.mul, torch.ops.aten.mul.Tensor}


def _merge_silu(gm: fx.GraphModule) -> None:
    """``x * sigmoid(x)`` (how exporters write SiLU) becomes one SiLU, a unary nonlinearity."""
    for node in list(gm.graph.nodes):
        if len(node.args) != 2 or not _is_multiply(gm, node):
            continue
        left, right = node.args
        for data, gate in ((left, right), (right, left)):
            if _is_sole_sigmoid_of(gm, gate, data, node):
                gm.add_submodule(str(gate.target), nn.SiLU())
                node.replace_all_uses_with(gate)
                gm.graph.erase_node(node)
                break


def _is_sole_sigmoid_of(gm: fx.GraphModule, gate: object, data: object, user: fx.Node) -> bool:
    """``gate`` is sigmoid(data), used only by ``user``."""
    if not isinstance(gate, fx.Node) or gate.op != "call_module" or gate.users.keys() != {user}:
        return False
    return isinstance(gm.get_submodule(str(gate.target)), nn.Sigmoid) and gate.args[0] is data


def _input_dependent(gm: fx.GraphModule) -> set[fx.Node]:
    """Nodes whose value changes with the input (weights and constants do not)."""
    dependent: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder" or any(arg in dependent for arg in node.all_input_nodes):
            dependent.add(node)
    return dependent


def _isolate_products(gm: fx.GraphModule) -> list[str]:
    """Give each product of two input-dependent tensors a :class:`Product` module.

    A product with a weight or a constant is linear in the input and keeps its gradient.
    """
    dependent = _input_dependent(gm)
    names: list[str] = []
    for node in list(gm.graph.nodes):
        if len(node.args) != 2 or node.kwargs or not _is_multiply(gm, node):
            continue
        if not all(isinstance(arg, fx.Node) and arg in dependent for arg in node.args):
            continue
        name = f"product_{len(names)}"
        gm.add_submodule(name, Product())
        with gm.graph.inserting_before(node):
            call = gm.graph.call_module(name, tuple(node.args))
        call.meta = dict(node.meta)
        node.replace_all_uses_with(call)
        gm.graph.erase_node(node)
        names.append(name)
    return names


def _is_multiply(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in MULTIPLY
    if node.op == "call_method":
        return node.target == "mul"
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        return (
            type(module).__name__ == "OnnxBinaryMathOperation"
            and getattr(module, "math_op_function", None) is torch.mul
        )
    return False
