"""Load an ONNX classifier as a torch module through onnx2torch.

onnx2torch imports torchvision for two detection operators (NonMaxSuppression, RoiAlign),
and torchvision cannot be installed beside every torch build. Those two converter modules
are replaced by empty ones before onnx2torch is imported, so models using them are refused
as unsupported operators instead of breaking the import.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import types
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper, version_converter

from compression.data.sniff import sniff
from compression.errors import (
    InvalidModel,
    UnsupportedFormat,
    UnsupportedOperator,
    is_out_of_memory,
)
from compression.intake_limits import DEFAULT_LIMITS, IntakeLimits
from compression.intake_limits import check as check_limit
from compression.io.fx_flatten import normalize_flattens
from compression.io.loaded import LoadedModel
from compression.io.onnx_archive import HOW_TO_PACK, external_tensors, read_onnx_archive
from compression.io.onnx_constants import fold_constant_holders
from compression.io.onnx_offload import Weights, check, offload, restore
from compression.io.probe import probe_classifier

TORCHVISION_CONVERTERS = ("nms", "roialign")
CONVERTIBLE_OPSET = 17
"""Highest default-domain opset for which onnx2torch 1.5 has converters of every common op."""

WHAT_TO_DO = (
    "Export the classifier without that operator (leave pre- and post-processing out of the "
    "graph; conv, linear, norm, pooling, activations, add, mul and concat all convert), or "
    "upload it as a torch.export archive instead: "
    "torch.export.save(torch.export.export(model, (example,)), 'model.pt2')"
)


def _import_onnx2torch() -> Any:
    if importlib.util.find_spec("torchvision") is None:
        for name in TORCHVISION_CONVERTERS:
            sys.modules.setdefault(f"onnx2torch.node_converters.{name}", types.ModuleType(name))
    import onnx2torch
    import onnx2torch.converter
    from onnx2torch.node_converters import registry

    # Shapes are inferred before the weights go back into the proto (see onnx_offload);
    # onnx2torch's own pass would serialise and copy the weighted model twice more.
    onnx2torch.converter.safe_shape_inference = _shapes_already_inferred
    return onnx2torch, registry


def _shapes_already_inferred(model: onnx.ModelProto, **_: Any) -> onnx.ModelProto:
    return model


def _read(path: str, weights: Weights, limits: IntakeLimits) -> onnx.ModelProto:
    """The model of a plain ``.onnx`` file, or of an archive holding it with its data files,
    checked, with its large tensors' values in ``weights``."""
    if sniff(path) is not None:
        proto = read_onnx_archive(path, limits, weights)
    else:
        try:
            proto = onnx.load(path, load_external_data=False)
        except Exception as exc:
            if is_out_of_memory(exc):  # the task's memory limit, not a bad file
                raise
            raise UnsupportedFormat(f"the file is not a readable ONNX model: {exc}") from exc
        if any(True for _ in external_tensors(proto)):
            raise InvalidModel(
                "the ONNX model keeps its weights in external data files (torch.onnx.export "
                f"writes model.onnx and model.onnx.data); upload them together: {HOW_TO_PACK}"
            )
        offload(proto, weights)
    if not proto.graph.node:
        raise InvalidModel("the ONNX model has an empty graph")
    try:
        check(proto, weights)
    except onnx.checker.ValidationError as exc:
        raise InvalidModel(f"the ONNX model is invalid: {str(exc).splitlines()[0]}") from exc
    fold_constant_holders(proto, weights)
    return proto


def _opset(proto: onnx.ModelProto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _node_label(node: onnx.NodeProto, index: int) -> str:
    op = f"{node.domain}.{node.op_type}" if node.domain else node.op_type
    return f"{op} (node {node.name or f'#{index}'!r})"


def _unconvertible(proto: onnx.ModelProto, registry: Any) -> list[str]:
    """The operators onnx2torch has no converter for, each with the first node using it."""
    opsets = {o.domain or "": o.version for o in proto.opset_import}
    missing: dict[str, str] = {}
    for index, node in enumerate(proto.graph.node):
        try:
            registry.get_converter(node.op_type, opsets.get(node.domain or "", 1), node.domain)
        except NotImplementedError:
            missing.setdefault(node.op_type, _node_label(node, index))
    return [missing[op] for op in sorted(missing)]


def _relax_reshapes(proto: onnx.ModelProto) -> None:
    """``allowzero=1`` only differs from 0 when the target shape holds a 0; clear it otherwise."""
    reshapes = [node for node in proto.graph.node if node.op_type == "Reshape"]
    targets = {node.input[1] for node in reshapes}
    constants = {
        t.name: numpy_helper.to_array(t) for t in proto.graph.initializer if t.name in targets
    }
    for node in reshapes:
        shape = constants.get(node.input[1])
        for attribute in node.attribute:
            if attribute.name == "allowzero" and shape is not None and np.all(shape != 0):
                attribute.i = 0


def _convertible(proto: onnx.ModelProto, registry: Any) -> onnx.ModelProto:
    """Convert to an opset onnx2torch reads, refusing operators it cannot convert."""
    if _unconvertible(proto, registry) and _opset(proto) > CONVERTIBLE_OPSET:
        try:
            proto = version_converter.convert_version(proto, CONVERTIBLE_OPSET)
        except Exception as exc:
            if is_out_of_memory(exc):  # the task's memory limit, not a bad file
                raise
            raise UnsupportedOperator(
                f"the model uses opset {_opset(proto)} and could not be converted to opset "
                f"{CONVERTIBLE_OPSET}: {exc}"
            ) from exc
    missing = _unconvertible(proto, registry)
    if missing:
        raise UnsupportedOperator(
            f"the model uses operators the engine cannot convert: {', '.join(missing)} at "
            f"opset {_opset(proto)}. {WHAT_TO_DO}"
        )
    _relax_reshapes(proto)
    return proto


def _input_shape(proto: onnx.ModelProto) -> tuple[int, ...]:
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [value for value in proto.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise InvalidModel(
            f"the ONNX model has {len(inputs)} inputs; exactly one input tensor is supported"
        )
    dims = inputs[0].type.tensor_type.shape.dim[1:]
    if not dims or any(not dim.HasField("dim_value") for dim in dims):
        raise InvalidModel(
            "only the batch dimension of the ONNX input may be dynamic; export with fixed "
            "sample dimensions"
        )
    return tuple(int(dim.dim_value) for dim in dims)


def _conversion_error(proto: onnx.ModelProto, error: Exception) -> UnsupportedOperator:
    """Name the first node onnx2torch cannot convert, by converting the nodes one by one."""
    from onnx2torch.node_converters import get_converter
    from onnx2torch.onnx_graph import OnnxGraph

    graph = OnnxGraph(proto.graph)
    opsets = {o.domain: o.version for o in proto.opset_import}
    culprit, reason = "an unidentified node", f"{type(error).__name__}: {error}"
    nodes = zip(proto.graph.node, graph.nodes.values(), strict=True)
    for index, (node, onnx_node) in enumerate(nodes):
        try:
            converter = get_converter(
                domain=onnx_node.domain, operation_type=onnx_node.operation_type,
                version=opsets[onnx_node.domain],
            )  # fmt: skip
            converter(onnx_node, graph)
        except Exception as exc:
            if is_out_of_memory(exc):  # the task's memory limit, not a bad file
                raise
            culprit, reason = _node_label(node, index), f"{type(exc).__name__}: {exc}"
            break
    return UnsupportedOperator(
        f"the ONNX model could not be converted at {culprit}: {reason}. {WHAT_TO_DO}"
    )


def load_onnx(path: str, limits: IntakeLimits = DEFAULT_LIMITS) -> LoadedModel:
    """Read, check, convert and probe an ONNX classifier."""
    onnx2torch, registry = _import_onnx2torch()
    weights: Weights = {}
    proto = _read(path, weights, limits)
    input_shape = _input_shape(proto)
    check_limit(
        limits, "max_input_elements", math.prod(input_shape), "the elements of one input sample"
    )
    proto = onnx.shape_inference.infer_shapes(_convertible(proto, registry))
    restore(proto, weights)
    try:
        gm = onnx2torch.convert(proto)
    except Exception as exc:
        if is_out_of_memory(exc):  # the task's memory limit, not a bad file
            raise
        raise _conversion_error(proto, exc) from exc
    del proto
    loaded = LoadedModel(gm.eval(), input_shape, probe_classifier(gm, input_shape), "onnx")
    normalize_flattens(gm, loaded.example_input())
    return loaded
