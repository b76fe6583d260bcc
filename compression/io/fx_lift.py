"""Lift functional aten calls of an exported graph back into ``nn.Module`` instances.

``torch.export.load(f).module()`` gives a GraphModule of functional aten calls. Pruning
(torch-pruning finds layers by module type) and attribution (captum hooks nonlinearity
modules) both need real modules, so this pass rewrites each supported call into a module
that owns the same Parameter objects.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn

aten = torch.ops.aten

Args = dict[str, Any]


def _bind(node: fx.Node) -> Args:
    """Name every argument of an aten call by its schema, filling in defaults."""
    schema = node.target._schema  # type: ignore[union-attr]
    bound: Args = {}
    for index, argument in enumerate(schema.arguments):
        if index < len(node.args):
            bound[argument.name] = node.args[index]
        elif argument.name in node.kwargs:
            bound[argument.name] = node.kwargs[argument.name]
        elif argument.has_default_value():
            bound[argument.name] = argument.default_value
    return bound


def _rank(node: fx.Node) -> int:
    return node.meta["val"].dim()


def _conv(args: Args, tensors: dict[str, torch.Tensor], spatial: int) -> nn.Module:
    weight = tensors["weight"]
    conv_type = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[spatial]
    groups = int(args["groups"])
    padding = args["padding"]
    module = conv_type(
        weight.shape[1] * groups,
        weight.shape[0],
        tuple(weight.shape[2:]),
        stride=tuple(args["stride"]),
        padding=padding if isinstance(padding, str) else tuple(padding),
        dilation=tuple(args["dilation"]),
        groups=groups,
        bias=tensors.get("bias") is not None,
    )
    _adopt(module, tensors, ("weight", "bias"))
    return module


def _convolution(args: Args, tensors: dict[str, torch.Tensor], spatial: int) -> nn.Module | None:
    if args["transposed"]:
        return None
    return _conv(args, tensors, spatial)


def _linear(args: Args, tensors: dict[str, torch.Tensor], spatial: int) -> nn.Module:
    weight = tensors["weight"]
    module = nn.Linear(weight.shape[1], weight.shape[0], bias=tensors.get("bias") is not None)
    _adopt(module, tensors, ("weight", "bias"))
    return module


def _batch_norm(args: Args, tensors: dict[str, torch.Tensor], spatial: int) -> nn.Module | None:
    if args.get("training") or "running_mean" not in tensors:
        return None
    norm_type = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
    module = norm_type[spatial](
        tensors["running_mean"].shape[0],
        eps=float(args["eps"]),
        momentum=float(args["momentum"]),
        affine=tensors.get("weight") is not None,
    )
    _adopt(module, tensors, ("weight", "bias", "running_mean", "running_var"))
    return module


def _adopt(module: nn.Module, tensors: dict[str, torch.Tensor], names: tuple[str, ...]) -> None:
    """Make the new module own the graph's existing tensors (no copies)."""
    for name in names:
        tensor = tensors.get(name)
        if tensor is None:
            continue
        if name in module._parameters:
            parameter = tensor if isinstance(tensor, nn.Parameter) else nn.Parameter(tensor)
            module._parameters[name] = parameter
        else:
            module._buffers[name] = tensor


def _pool(kind: str) -> Callable[[Args, dict[str, torch.Tensor], int], nn.Module]:
    def build(args: Args, tensors: dict[str, torch.Tensor], spatial: int) -> nn.Module:
        kernel = tuple(args["kernel_size"])
        stride = tuple(args["stride"]) or kernel
        padding = tuple(args["padding"]) if isinstance(args["padding"], list) else args["padding"]
        if kind == "max":
            pool_type = {1: nn.MaxPool1d, 2: nn.MaxPool2d}[spatial]
            return pool_type(
                kernel, stride, padding, tuple(args["dilation"]), ceil_mode=args["ceil_mode"]
            )
        pool_type = {1: nn.AvgPool1d, 2: nn.AvgPool2d}[spatial]
        extra = {"divisor_override": args["divisor_override"]} if spatial == 2 else {}
        return pool_type(
            kernel,
            stride,
            padding,
            ceil_mode=args["ceil_mode"],
            count_include_pad=args["count_include_pad"],
            **extra,
        )

    return build


def _adaptive_avg(args: Args, tensors: dict[str, torch.Tensor], spatial: int) -> nn.Module:
    pool_type = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}[spatial]
    return pool_type(tuple(int(size) for size in args["output_size"]))


def _simple(factory: Callable[[Args], nn.Module]) -> Callable[..., nn.Module]:
    return lambda args, tensors, spatial: factory(args)


def _hardtanh(args: Args) -> nn.Module:
    low, high = float(args["min_val"]), float(args["max_val"])
    return nn.ReLU6() if (low, high) == (0.0, 6.0) else nn.Hardtanh(low, high)


LIFTERS: dict[Any, Callable[[Args, dict[str, torch.Tensor], int], nn.Module | None]] = {
    aten.conv1d.default: _conv,
    aten.conv2d.default: _conv,
    aten.conv1d.padding: _conv,
    aten.conv2d.padding: _conv,
    aten.convolution.default: _convolution,
    aten.linear.default: _linear,
    aten.batch_norm.default: _batch_norm,
    aten._native_batch_norm_legit_no_training.default: _batch_norm,
    aten.max_pool1d.default: _pool("max"),
    aten.max_pool2d.default: _pool("max"),
    aten.avg_pool1d.default: _pool("avg"),
    aten.avg_pool2d.default: _pool("avg"),
    aten.adaptive_avg_pool1d.default: _adaptive_avg,
    aten.adaptive_avg_pool2d.default: _adaptive_avg,
    aten.relu.default: _simple(lambda a: nn.ReLU()),
    aten.relu_.default: _simple(lambda a: nn.ReLU()),
    aten.gelu.default: _simple(lambda a: nn.GELU(approximate=a["approximate"])),
    aten.silu.default: _simple(lambda a: nn.SiLU()),
    aten.sigmoid.default: _simple(lambda a: nn.Sigmoid()),
    aten.tanh.default: _simple(lambda a: nn.Tanh()),
    aten.hardswish.default: _simple(lambda a: nn.Hardswish()),
    aten.hardsigmoid.default: _simple(lambda a: nn.Hardsigmoid()),
    aten.hardtanh.default: _simple(_hardtanh),
    aten.leaky_relu.default: _simple(lambda a: nn.LeakyReLU(float(a["negative_slope"]))),
    aten.elu.default: _simple(lambda a: nn.ELU(float(a["alpha"]))),
    aten.dropout.default: _simple(lambda a: nn.Identity()),
}

TENSOR_ARGUMENTS = ("weight", "bias", "running_mean", "running_var")


def lift_modules(gm: fx.GraphModule) -> fx.GraphModule:
    """Rewrite supported aten calls into module calls, in place, and return the module."""
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and node.target == "_guards_fn":
            gm.graph.erase_node(node)
            continue
        lifter = LIFTERS.get(node.target) if node.op == "call_function" else None
        if lifter is None:
            continue
        args = _bind(node)
        tensor_nodes = {
            name: args[name] for name in TENSOR_ARGUMENTS if isinstance(args.get(name), fx.Node)
        }
        if any(tensor.op != "get_attr" for tensor in tensor_nodes.values()):
            continue  # computed weights cannot become a module's parameters
        tensors = {name: _fetch(gm, tensor.target) for name, tensor in tensor_nodes.items()}
        data = args.get("input", args.get("self"))
        module = lifter(args, tensors, _rank(data) - 2)
        if module is None or not _only_first_output_used(node):
            continue
        name = _place(gm, module, tensor_nodes, node.name)
        _replace_with_module_call(gm, node, name, data)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def _only_first_output_used(node: fx.Node) -> bool:
    if node.target is not aten._native_batch_norm_legit_no_training.default:
        return True
    return all(user.target is operator.getitem and user.args[1] == 0 for user in node.users)


def _fetch(gm: fx.GraphModule, target: str) -> torch.Tensor:
    owner, _, attribute = target.rpartition(".")
    return getattr(gm.get_submodule(owner), attribute)


def _place(
    gm: fx.GraphModule, module: nn.Module, tensor_nodes: dict[str, fx.Node], fallback: str
) -> str:
    """Install the module where its weights already live, so layer names match the source."""
    owners = {str(node.target).rpartition(".")[0] for node in tensor_nodes.values()}
    if len(owners) == 1:
        (owner,) = owners
        existing = gm.get_submodule(owner) if owner else None
        if type(existing) is type(module):
            return owner  # the same weights called twice: one module, used twice
        if existing is not None and not isinstance(existing, LIFTED_TYPES):
            parent, _, child = owner.rpartition(".")
            setattr(gm.get_submodule(parent), child, module)
            return owner
    name = fallback
    while hasattr(gm, name):
        name += "_"
    gm.add_submodule(name, module)
    return name


LIFTED_TYPES = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm)


def _replace_with_module_call(gm: fx.GraphModule, node: fx.Node, name: str, data: fx.Node) -> None:
    with gm.graph.inserting_before(node):
        call = gm.graph.call_module(name, (data,))
    call.meta = dict(node.meta)
    if node.target is aten._native_batch_norm_legit_no_training.default:
        for user in list(node.users):  # getitem(..., 0): the normalized output
            user.replace_all_uses_with(call)
            gm.graph.erase_node(user)
    else:
        node.replace_all_uses_with(call)
    gm.graph.erase_node(node)
