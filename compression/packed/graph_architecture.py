"""The architecture as a compact graph: a few hundred bytes instead of a torch.export archive.

A torch.export archive holds a verbose JSON program, version files and pickled constants;
deflated it is still about 6 KB, which caps a small model's packed ratio near 27x. What
``load_packed`` returns is only the exported graph with its layers lifted into modules
(``compression.io.fx_lift``), so this module writes exactly that: each module's type and
constructor arguments, each node's operator and arguments, and a table of the tensors that
are not packed layer weights (their bytes go to a section of their own).

Reading builds nothing from names it does not know: module types come from a fixed list of
``torch.nn`` classes, constructed on the meta device and checked against the tensor table
before any memory is allocated; operators are ``aten`` overloads without side effects (the
same operators a torch.export archive may name) or a few ``operator`` functions; arguments
are JSON literals. Nothing is unpickled or executed. A model this format cannot describe is
written with the ``pt2`` architecture instead (``architecture.py``).
"""

from __future__ import annotations

import inspect
import json
import math
import operator
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from compression.errors import InvalidModel
from compression.io.export import export_program
from compression.io.fx_lift import lift_modules

MODULE_TYPES: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (
        nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d,
        nn.BatchNorm3d, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
        nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU,
        nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.LeakyReLU, nn.ELU,
        nn.Identity, nn.Flatten,
    )
}  # fmt: skip
"""The modules ``fx_lift`` creates (and a few plain ones): nothing else is ever built."""

OPERATOR_FUNCTIONS = {
    f"operator.{name}": getattr(operator, name)
    for name in ("getitem", "add", "sub", "mul", "floordiv", "truediv", "mod", "neg", "pow")
}
"""Python operators that appear in exported graphs on symbolic sizes and multi-outputs."""

DTYPES: dict[str, torch.dtype] = {
    str(dtype).removeprefix("torch."): dtype
    for dtype in (
        torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
        torch.int16, torch.int8, torch.uint8, torch.bool,
    )
}  # fmt: skip
SKIPPED_ARGUMENTS = {"self", "device", "dtype", "args", "kwargs"}


class Inexpressible(Exception):
    """The model holds something the compact graph cannot describe (use the pt2 form)."""


# --- writing -------------------------------------------------------------------------------


GRAPH_CACHE_SIZE = 16
"""Graph descriptions kept per process, by structure. A sweep writes one packed file per
point, and for weight pruning, sharing and quantization every point has the original
model's structure; exporting it again took most of a point's time."""


@dataclass(frozen=True)
class _Described:
    text: bytes
    sources: tuple[str | bytes, ...]
    """Per tensor of the description, the name of the module tensor whose bytes it holds, or
    the bytes themselves for a tensor that lifting created (a batch norm's fresh
    ``num_batches_tracked``), which are the same for every model of the structure."""


_DESCRIBED: OrderedDict[tuple, _Described] = OrderedDict()


def _structure(module: nn.Module, example: torch.Tensor, packed: frozenset[str]) -> tuple:
    """What the description depends on, short of attribute values: module tree and types,
    every tensor's name, dtype and shape, the input's shape and the packed layers. Anything
    else (a stride, a flag read in ``forward``) is caught by the bit-for-bit check."""
    return (
        tuple((name, type(child)) for name, child in module.named_modules()),
        tuple(
            (name, tensor.dtype, tuple(tensor.shape))
            for name, tensor in module.state_dict(keep_vars=True).items()
        ),
        tuple(example.shape), example.dtype, tuple(sorted(packed)),
    )  # fmt: skip


def write_graph(
    module: nn.Module, example: torch.Tensor, packed: Iterable[str]
) -> tuple[bytes, bytes]:
    """The graph description (UTF-8 JSON) and the tensor section (every parameter and buffer
    except the weights of ``packed`` layers, in the description's order).

    A model with the structure of one described before reuses that description with its own
    tensors, and is exported afresh only if the reused graph does not reproduce it.
    Raises ``Inexpressible`` when the model is beyond the format, or when the graph read back
    does not reproduce ``module`` bit for bit on a zero batch of ``example``'s shape.
    """
    packed = frozenset(packed)
    key = _structure(module, example, packed)
    known = _DESCRIBED.get(key)
    if known is not None:
        state = module.state_dict(keep_vars=True)
        data = b"".join(
            source if isinstance(source, bytes) else _tensor_bytes(state[source])
            for source in known.sources
        )
        if _reproduces(known.text, data, module, example, packed, state):
            _DESCRIBED.move_to_end(key)
            return known.text, data
    text, data, sources = _describe(module, example, packed)
    _DESCRIBED[key] = _Described(text, sources)
    while len(_DESCRIBED) > GRAPH_CACHE_SIZE:
        _DESCRIBED.popitem(last=False)
    return text, data


def _describe(
    module: nn.Module, example: torch.Tensor, packed: frozenset[str]
) -> tuple[bytes, bytes, tuple[str | bytes, ...]]:
    """Export, lift and describe ``module``; ``sources`` says where each described tensor's
    bytes come from (``_Described``)."""
    zeros = torch.zeros_like(example)
    try:  # torch.export only reads the model: no copy of its weights
        exported = export_program(module, zeros).module()
        lifted = fx.GraphModule(lift_modules(exported), exported.graph).eval()
    except Exception as exc:
        raise Inexpressible(f"the model does not export: {exc}") from exc
    weights = {f"{name}.weight" for name in packed}
    state = dict(lifted.named_parameters(remove_duplicate=False))
    parameters = set(state)
    state.update(lifted.named_buffers(remove_duplicate=False))
    missing = weights - set(state)
    if missing:
        raise Inexpressible(f"the lifted graph lacks {sorted(missing)}")
    tensors = [(name, tensor) for name, tensor in state.items() if name not in weights]
    description = {
        "modules": _modules(lifted),
        "nodes": _nodes(lifted, zeros),
        "tensors": [
            [name, _dtype_name(tensor.dtype), list(tensor.shape), int(name in parameters)]
            for name, tensor in tensors
        ],
    }
    text = json.dumps(description, separators=(",", ":")).encode()
    data = b"".join(_tensor_bytes(tensor) for _, tensor in tensors)
    if not _reproduces(text, data, module, example, packed, state):
        raise Inexpressible("the rebuilt graph does not reproduce the model")
    origin = {
        (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape)): name
        for name, tensor in module.state_dict(keep_vars=True).items()
    }
    sources = tuple(
        origin.get((tensor.data_ptr(), tensor.dtype, tuple(tensor.shape)), _tensor_bytes(tensor))
        for _, tensor in tensors
    )
    return text, data, sources


def _reproduces(
    text: bytes, data: bytes, module: nn.Module, example: torch.Tensor,
    packed: frozenset[str], weights: Mapping[str, torch.Tensor] | None = None,
) -> bool:  # fmt: skip
    """Whether the graph read back from ``text`` and ``data`` (with the packed layers'
    weights) computes exactly what ``module`` computes on a seeded random batch."""
    weights = module.state_dict(keep_vars=True) if weights is None else weights
    rebuilt = read_graph(text, data, {name: weights[f"{name}.weight"] for name in packed})
    probe = torch.rand(example.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return bool(torch.equal(rebuilt(probe), module.eval()(probe)))


def _modules(gm: fx.GraphModule) -> list[list[Any]]:
    called = [node.target for node in gm.graph.nodes if node.op == "call_module"]
    entries = []
    for name in dict.fromkeys(called):
        module = gm.get_submodule(name)
        type_name = type(module).__name__
        if MODULE_TYPES.get(type_name) is not type(module):
            raise Inexpressible(f"module {name!r} is a {type(module).__qualname__}")
        entries.append([name, type_name, _constructor_arguments(module)])
    return entries


def _constructor_arguments(module: nn.Module) -> dict[str, Any]:
    """The arguments that rebuild ``module`` (torch.nn keeps each under its own name); those
    at their default are left out when the module is rebuilt the same without them."""
    arguments = {}
    for parameter in inspect.signature(type(module).__init__).parameters.values():
        if parameter.name in SKIPPED_ARGUMENTS:
            continue
        value = getattr(module, parameter.name, parameter.default)
        if parameter.name == "bias" and not isinstance(value, bool):
            value = value is not None
        if value is inspect.Parameter.empty:
            raise Inexpressible(f"{type(module).__name__} keeps no {parameter.name!r}")
        arguments[parameter.name] = _encode(value, {})
        if _same(value, parameter.default):
            without = {key: item for key, item in arguments.items() if key != parameter.name}
            if _rebuilds(module, without):
                arguments = without
    if not _rebuilds(module, arguments):
        raise Inexpressible(f"a {type(module).__name__} is not rebuilt by its arguments")
    return arguments


def _rebuilds(module: nn.Module, arguments: dict[str, Any]) -> bool:
    try:
        with torch.device("meta"):
            return repr(type(module)(**_decode_arguments(arguments))) == repr(module)
    except TypeError:
        return False  # a required argument left out


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, tuple) and value and all(item == value[0] for item in value):
        value = value[0]  # (1, 1) may be the default 1
    return type(value) is type(default) and value == default


def _nodes(gm: fx.GraphModule, example: torch.Tensor) -> list[list[Any]]:
    with torch.no_grad():
        single = isinstance(gm(example), torch.Tensor)
    index = {node: position for position, node in enumerate(gm.graph.nodes)}
    entries = []
    for node in gm.graph.nodes:
        args, kwargs = node.args, dict(node.kwargs)
        if node.op == "output":
            if not single or len(args[0]) != 1:
                raise Inexpressible("only models with a single tensor output are described")
            args = (args[0][0],)
        entries.append([node.op, _target(node), _encode(list(args), index), _encode(kwargs, index)])
    return entries


def _target(node: fx.Node) -> str:
    if node.op != "call_function":
        return str(node.target)
    target = node.target
    if isinstance(target, torch._ops.OpOverload) and target.namespace == "aten":
        if target._schema.is_mutable:
            raise Inexpressible(f"operator {target} mutates its inputs")
        return f"aten.{target._schema.name.removeprefix('aten::')}.{target._overloadname}"
    for name, function in OPERATOR_FUNCTIONS.items():
        if target is function:
            return name
    raise Inexpressible(f"operator {target!r} is not an aten operator")


def _encode(value: Any, index: Mapping[fx.Node, int]) -> Any:
    """A JSON form of a node argument; tagged one-key objects for what JSON lacks."""
    if isinstance(value, fx.Node):
        return {"n": index[value]}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"f": str(value)}
    if isinstance(value, list):
        return [_encode(item, index) for item in value]
    if isinstance(value, tuple):
        return {"t": [_encode(item, index) for item in value]}
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {"d": {key: _encode(item, index) for key, item in value.items()}}
    if isinstance(value, torch.dtype):
        return {"dtype": _dtype_name(value)}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    if isinstance(value, (torch.memory_format, torch.layout)):
        return {type(value).__name__: str(value).removeprefix("torch.")}
    if isinstance(value, slice):
        return {"slice": [_encode(part, index) for part in (value.start, value.stop, value.step)]}
    raise Inexpressible(f"argument {value!r} of type {type(value).__name__}")


def _dtype_name(dtype: torch.dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise Inexpressible(f"tensors of {dtype} are not described")
    return name


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


# --- reading -------------------------------------------------------------------------------


def tensor_bytes_declared(text: bytes) -> int:
    """Bytes the tensor section must decode to, from the description alone."""
    return sum(size for *_, size in _tensor_table(_description(text)))


def read_graph(text: bytes, data: bytes, weights: Mapping[str, torch.Tensor]) -> fx.GraphModule:
    """Build the module graph the description names, fill in its tensors and the packed
    ``weights`` (layer name -> weight, taken as the layers' weights: shared, not copied), and
    refuse anything that does not fit exactly."""
    description = _description(text)
    root = nn.Module()
    for name, type_name, arguments in _entries(description, "modules", 3):
        cls = MODULE_TYPES.get(type_name) if isinstance(type_name, str) else None
        if cls is None or not isinstance(name, str) or not isinstance(arguments, dict):
            raise InvalidModel(f"packed architecture names an unknown module type {type_name!r}")
        try:
            with torch.device("meta"):
                module = cls(**_decode_arguments(arguments))
        except Exception as exc:
            raise InvalidModel(f"packed architecture cannot build module {name!r}: {exc}") from exc
        _install(root, name, module)
    table = _tensor_table(description)
    declared = {f"{layer}.weight": tuple(weight.shape) for layer, weight in weights.items()}
    declared.update({name: shape for name, _, shape, _, _ in table})
    for name, dtype, shape, is_parameter, _ in table:
        _ensure_tensor(root, name, dtype, shape, is_parameter)
    actual = {
        name: tuple(tensor.shape)
        for name, tensor in [*root.named_parameters(), *root.named_buffers()]
    }
    if actual != declared:
        wrong = sorted(set(actual.items()) ^ set(declared.items()))[:3]
        raise InvalidModel(f"packed architecture and its tensors disagree, e.g. {wrong}")
    root = root.to_empty(device="cpu")
    _fill(root, table, data, weights)
    graph = _graph(description)
    try:
        return fx.GraphModule(root, graph).eval()
    except (AttributeError, RuntimeError) as exc:
        raise InvalidModel(f"packed architecture graph does not fit its modules: {exc}") from exc


def _description(text: bytes) -> dict[str, Any]:
    try:
        description = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidModel(f"packed architecture is not valid JSON: {exc}") from exc
    if not isinstance(description, dict) or set(description) != {"modules", "nodes", "tensors"}:
        raise InvalidModel("packed architecture must name modules, nodes and tensors")
    return description


def _entries(description: dict[str, Any], key: str, width: int) -> list[list[Any]]:
    entries = description[key]
    if not isinstance(entries, list) or any(
        not isinstance(entry, list) or len(entry) != width for entry in entries
    ):
        raise InvalidModel(f"packed architecture {key} must be lists of {width} fields")
    return entries


def _tensor_table(description: dict[str, Any]) -> list[tuple[str, torch.dtype, tuple, bool, int]]:
    """(name, dtype, shape, is parameter, bytes) of every stored tensor."""
    table = []
    for name, dtype, shape, is_parameter in _entries(description, "tensors", 4):
        if (
            not isinstance(name, str)
            or dtype not in DTYPES
            or not isinstance(shape, list)
            or not all(isinstance(size, int) and size >= 0 for size in shape)
        ):
            raise InvalidModel(f"packed architecture has a malformed tensor entry {name!r}")
        element = torch.empty(0, dtype=DTYPES[dtype]).element_size()
        table.append(
            (name, DTYPES[dtype], tuple(shape), bool(is_parameter), element * math.prod(shape))
        )
    return table


def _install(root: nn.Module, name: str, module: nn.Module) -> None:
    *parents, leaf = name.split(".")
    owner = root
    for part in parents:
        if not hasattr(owner, part):
            owner.add_module(part, nn.Module())
        owner = getattr(owner, part)
        if type(owner) is not nn.Module and not isinstance(owner, tuple(MODULE_TYPES.values())):
            raise InvalidModel(f"packed architecture nests module {name!r} oddly")
    if not leaf or hasattr(owner, leaf):
        raise InvalidModel(f"packed architecture names module {name!r} twice or badly")
    owner.add_module(leaf, module)


def _ensure_tensor(
    root: nn.Module, name: str, dtype: torch.dtype, shape: tuple, is_parameter: bool
) -> None:
    """A tensor that no module creates itself (a constant of the graph) is added, on meta."""
    owner_name, _, attribute = name.rpartition(".")
    owner = root
    for part in owner_name.split(".") if owner_name else []:
        if not hasattr(owner, part):
            owner.add_module(part, nn.Module())
        owner = getattr(owner, part)
        if not isinstance(owner, nn.Module):
            raise InvalidModel(f"packed tensor {name!r} sits under a non-module")
    if attribute in owner._parameters or attribute in owner._buffers:
        return
    if not attribute or hasattr(owner, attribute):
        raise InvalidModel(f"packed tensor {name!r} collides with another attribute")
    tensor = torch.empty(shape, dtype=dtype, device="meta")
    if is_parameter:
        owner.register_parameter(
            attribute, nn.Parameter(tensor, requires_grad=tensor.is_floating_point())
        )
    else:
        owner.register_buffer(attribute, tensor)


def _fill(root: nn.Module, table: list, data: bytes, weights: Mapping[str, torch.Tensor]) -> None:
    offset = 0
    state = {**dict(root.named_parameters()), **dict(root.named_buffers())}
    with torch.no_grad():
        for name, dtype, shape, _, size in table:
            tensor = state[name]
            if tensor.dtype != dtype:
                raise InvalidModel(
                    f"packed tensor {name!r} is {dtype}, the module holds {tensor.dtype}"
                )
            chunk = bytearray(data[offset : offset + size])
            offset += size
            if size:
                tensor.copy_(torch.frombuffer(chunk, dtype=dtype).reshape(shape))
    for layer, weight in weights.items():  # taken, not copied: they are most of a model, and
        target = state[f"{layer}.weight"]  # the empty tensor they replace was never touched
        root.get_submodule(layer).weight = nn.Parameter(
            weight.detach().to(target.dtype), requires_grad=target.requires_grad
        )
    if offset != len(data):
        raise InvalidModel(f"packed tensor section has {len(data)} bytes, the table says {offset}")


def _graph(description: dict[str, Any]) -> fx.Graph:
    graph = fx.Graph()
    nodes: list[fx.Node] = []
    for op, target, args, kwargs in _entries(description, "nodes", 4):
        if op not in ("placeholder", "get_attr", "call_module", "call_function", "output"):
            raise InvalidModel(f"packed architecture has a node of kind {op!r}")
        if not isinstance(target, str):
            raise InvalidModel("packed architecture has a node without a target name")
        decoded_args = _decode(args, nodes)
        decoded_kwargs = _decode(kwargs, nodes) if kwargs else {}
        if not isinstance(decoded_args, list) or not isinstance(decoded_kwargs, dict):
            raise InvalidModel("packed architecture node arguments are malformed")
        function = _resolve(target) if op == "call_function" else target
        nodes.append(graph.create_node(op, function, tuple(decoded_args), decoded_kwargs))
    try:
        graph.lint()
    except Exception as exc:
        raise InvalidModel(f"packed architecture graph is not well formed: {exc}") from exc
    return graph


def _resolve(target: str) -> Any:
    if target in OPERATOR_FUNCTIONS:
        return OPERATOR_FUNCTIONS[target]
    namespace, _, rest = target.partition(".")
    packet_name, _, overload_name = rest.partition(".")
    try:
        if namespace != "aten":
            raise AttributeError(namespace)
        overload = getattr(getattr(torch.ops.aten, packet_name), overload_name or "default")
    except (AttributeError, RuntimeError) as exc:
        raise InvalidModel(f"packed architecture names an unknown operator {target!r}") from exc
    if not isinstance(overload, torch._ops.OpOverload) or overload._schema.is_mutable:
        raise InvalidModel(f"packed architecture names operator {target!r}, which is not allowed")
    return overload


def _decode(value: Any, nodes: list[fx.Node]) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_decode(item, nodes) for item in value]
    if not isinstance(value, dict) or len(value) != 1:
        raise InvalidModel(f"packed architecture has a malformed argument {value!r}")
    ((tag, inner),) = value.items()
    if tag in ("t", "slice") and not isinstance(inner, list):
        raise InvalidModel(f"packed architecture has a malformed argument {value!r}")
    if tag == "d" and not isinstance(inner, dict):
        raise InvalidModel(f"packed architecture has a malformed argument {value!r}")
    try:
        if tag == "n":
            if not isinstance(inner, int) or not 0 <= inner < len(nodes):
                raise ValueError(f"node {inner} is not an earlier node")
            return nodes[inner]
        if tag == "t":
            return tuple(_decode(inner, nodes))
        if tag == "d":
            return {str(key): _decode(item, nodes) for key, item in inner.items()}
        if tag == "f":
            return float({"inf": "inf", "-inf": "-inf", "nan": "nan"}[inner])
        if tag == "dtype":
            return DTYPES[inner]
        if tag == "device":
            return torch.device({"cpu": "cpu", "meta": "meta"}[inner])
        if tag in ("memory_format", "layout"):
            result = getattr(torch, str(inner))
            if not isinstance(result, (torch.memory_format, torch.layout)):
                raise ValueError(inner)
            return result
        if tag == "slice":
            return slice(*_decode(inner, nodes))
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise InvalidModel(f"packed architecture has a malformed argument {value!r}") from exc
    raise InvalidModel(f"packed architecture has an argument of unknown kind {tag!r}")


def _decode_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments: JSON lists become the tuples torch.nn stores."""
    decoded = _decode({"d": arguments}, [])
    return {
        key: tuple(value) if isinstance(value, list) else value for key, value in decoded.items()
    }
