"""The deployable ONNX file: the compression carried in standard ONNX, not dequantized.

``model.fp32.onnx`` is what the exporter writes: every weight float32, so a model that the
packed file stores in 4 bits per weight takes 32 here. This module rewrites it: each
compressed layer's float32 initializer is replaced by its codes (integers, codebook indices,
the kept weights of a pruned layer and their relative positions) and the standard operators
that rebuild the float weight from them (``onnx_decoders``). For each layer the smaller of
the dense form (every weight coded) and the sparse form (kept weights + positions) is kept.

The rewritten file is proven before it is handed out: onnxruntime decodes every replaced
weight and each must equal the torch weight exactly (``np.array_equal``); the model outputs
are then compared with torch by the caller.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import ModelProto, TensorProto, helper, numpy_helper
from torch import nn

from compression.deploy.compact_names import compact_names
from compression.deploy.onnx_decoders import (
    DOMAIN,
    FUNCTIONS,
    OPSET,
    Decoder,
    function_protos,
)
from compression.encoding import LayerEncoding, QuantizedWeights, SharedWeights
from compression.errors import ExportFailed
from compression.io.export import export_program
from compression.packed.layer_codec import index_bits, zero_index

WeightDecode = Literal["cast", "dequantize_linear"]
"""How integer layers become float: ``Cast(q) * scales`` (folded by onnxruntime when the
session starts), or ``DequantizeLinear`` (run on every inference by onnxruntime)."""


@dataclass(frozen=True)
class IntegerLayer:
    kind: str
    """quantized, shared or dense (pruned float32)."""
    form: str
    """dense (every weight coded), sparse (kept weights + positions, placed by the function
    ``scatter_gaps``) or sparse_inline (positions and a value per gap code, placed inline)."""
    storage: tuple[str, ...]
    """How each stream is held: uint4, int8, bits3 (bit-packed), float32."""
    bytes: int
    """Initializers and nodes that replaced the float32 initializer."""
    fp32_bytes: int


@dataclass(frozen=True)
class IntegerOnnxReport:
    layers: dict[str, IntegerLayer]
    float_layers: list[str]
    """Compressed layers whose weight the exported graph does not hold as one initializer
    (left float32; the file is correct, only bigger)."""
    weight_decode: WeightDecode


def export_fp32(module: nn.Module, example: torch.Tensor) -> ModelProto:
    """The float32 ONNX model at opset ``OPSET``, without exporter metadata (stack traces,
    source paths), with a dynamic batch dimension.

    A model with batch norm is exported unoptimized: the exporter's optimizer folds each
    batch norm into the convolution before it, so no conv weight in the file equals the torch
    weight its codes describe and every such conv would stay float32 in ``model.onnx``.
    onnxruntime folds the batch norm itself when it loads the (integer) model."""
    program = export_program(module, example)
    optimize = not any(
        isinstance(layer, nn.modules.batchnorm._BatchNorm) for layer in module.modules()
    )
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(
                program,
                (example,),
                dynamo=True,
                opset_version=OPSET,
                verbose=False,
                optimize=optimize,
            )
        model = onnx_program.model_proto
    except Exception as exc:
        raise ExportFailed(f"ONNX export failed: {exc}") from exc
    strip_metadata(model)
    return model


def strip_metadata(model: ModelProto) -> None:
    """Drop what the exporter records for debugging (per-node stack traces, namespaces, FX node
    text, inferred intermediate shapes, node names) and attributes at their default value.
    None of it changes what the model computes; on a small model it is a fifth of the file."""
    graph = model.graph
    del model.metadata_props[:]
    del graph.metadata_props[:]  # the exported program's signature, as text
    del graph.value_info[:]
    graph.doc_string = model.doc_string = ""
    for value in [*graph.input, *graph.output]:
        del value.metadata_props[:]
        value.doc_string = ""
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = node.name = ""
        if node.domain in ("", "ai.onnx"):
            defaults = _defaults(node.op_type, opset)
            kept = [a for a in node.attribute if not _at_default(node.op_type, a, defaults)]
            del node.attribute[:]
            node.attribute.extend(kept)
    for initializer in graph.initializer:
        del initializer.metadata_props[:]


def _defaults(op_type: str, opset: int) -> dict[str, object]:
    try:
        schema = onnx.defs.get_schema(op_type, opset)
    except onnx.defs.SchemaError:
        return {}
    return {
        name: helper.get_attribute_value(attribute.default_value)
        for name, attribute in schema.attributes.items()
        if attribute.default_value.type
    }


def _at_default(op_type: str, attribute: onnx.AttributeProto, defaults: dict) -> bool:
    """Schema defaults, plus those the operator text states: unit strides and dilations, zero
    pads, and a convolution's kernel shape (read from its weight)."""
    value = helper.get_attribute_value(attribute)
    if attribute.name in defaults:
        return value == defaults[attribute.name]
    if attribute.name in ("strides", "dilations"):
        return all(v == 1 for v in value)
    if attribute.name == "pads":
        return all(v == 0 for v in value)
    return op_type == "Conv" and attribute.name == "kernel_shape"


def integer_onnx(
    fp32: ModelProto,
    module: nn.Module,
    encodings: Mapping[str, LayerEncoding],
    masks: Mapping[str, torch.Tensor],
    weight_decode: WeightDecode = "cast",
) -> tuple[ModelProto, IntegerOnnxReport]:
    """Rewrite ``fp32`` (exported from ``module``) so every layer with an encoding or a mask
    is stored by its codes; proves each decoded weight equals the torch weight. Values are
    renamed short (``compact_names``); the graph's inputs and outputs keep their names.

    The two halves, ``rewrite_integer`` and ``finish_integer``, let a caller drop ``fp32``
    between them, as ``deliverables`` does: the check decodes every weight in onnxruntime."""
    return finish_integer(rewrite_integer(fp32, module, encodings, masks, weight_decode), module)


@dataclass(frozen=True)
class Rewritten:
    """An integer model not yet checked: the layers' replaced initializers (layer -> tensor
    name) still carry their exported names."""

    model: ModelProto
    replaced: dict[str, str]
    report: IntegerOnnxReport


def rewrite_integer(
    fp32: ModelProto,
    module: nn.Module,
    encodings: Mapping[str, LayerEncoding],
    masks: Mapping[str, torch.Tensor],
    weight_decode: WeightDecode = "cast",
) -> Rewritten:
    """The rewrite of ``integer_onnx``, checked as ONNX but not yet decoded."""
    initializers = {init.name: init for init in fp32.graph.initializer}
    template = _without_initializers(fp32)
    # Layer by layer the smallest form is kept; a model-local function is paid once per
    # model, so the choice is made twice (functions charged to the first layer that uses
    # them, and functions taken as paid) and the smaller model is kept.
    model, replaced, report = min(
        (
            _rewrite(template, module, encodings, masks, weight_decode, initializers, prepaid)
            for prepaid in (frozenset(), frozenset(FUNCTIONS))
        ),
        key=lambda rewrite: rewrite[0].ByteSize(),
    )
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ExportFailed(f"the integer ONNX model is not valid ONNX: {exc}") from exc
    return Rewritten(model, replaced, report)


def finish_integer(rewritten: Rewritten, module: nn.Module) -> tuple[ModelProto, IntegerOnnxReport]:
    """Prove every decoded weight equals ``module``'s (the rewrite took an initializer for a
    layer only where it equals that weight exactly), then give values short names."""
    _check_weights(rewritten.model, rewritten.replaced, module)
    compact_names(rewritten.model)
    return rewritten.model, rewritten.report


def _without_initializers(model: ModelProto) -> ModelProto:
    """A copy of ``model`` without its graph's initializers. A rewrite starts from it and adds
    only the initializers it keeps: starting from a full copy and deleting the replaced ones
    would not free them (protobuf keeps a message's removed parts until the message goes),
    and VGG-11-BN's two rewrites then held 0.6 GiB of float32 weights they had dropped."""
    copy = ModelProto()
    _copy_fields(model, copy, skip="graph")
    _copy_fields(model.graph, copy.graph, skip="initializer")
    return copy


def _copy_fields(source: Any, target: Any, skip: str) -> None:
    for field, value in source.ListFields():
        if field.name == skip:
            continue
        if field.is_repeated:
            getattr(target, field.name).extend(value)
        elif field.message_type is not None:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


def _rewrite(
    template: ModelProto,
    module: nn.Module,
    encodings: Mapping[str, LayerEncoding],
    masks: Mapping[str, torch.Tensor],
    weight_decode: WeightDecode,
    initializers: Mapping[str, TensorProto],
    prepaid: frozenset[str],
) -> tuple[ModelProto, dict[str, str], IntegerOnnxReport]:
    """The model (``template`` with the ``initializers`` it keeps) with each layer in its
    smallest form, costing the functions in ``prepaid`` as already present; also the replaced
    initializers (layer -> name) and the report."""
    model = ModelProto()
    model.CopyFrom(template)
    graph = model.graph
    functions: set[str] = set()
    decoders, layers, float_layers, replaced = [], {}, [], {}
    wanted = set(encodings) | set(masks)
    for name in [name for name, _ in module.named_modules() if name in wanted]:
        weight = module.get_submodule(name).weight.detach().cpu().to(torch.float32)
        target = _initializer_of(initializers, f"{name}.weight", weight.numpy())
        if target is None:
            float_layers.append(name)
            continue
        layer = _LayerCodes(weight, encodings.get(name), masks.get(name), weight_decode)
        present = functions | prepaid
        candidates = [
            build(Decoder(f"{name}", set(present)), target.name) for build in layer.builders()
        ]
        sizes = [_size(decoder, present) for decoder in candidates]
        best = min(range(len(candidates)), key=sizes.__getitem__)
        if sizes[best] >= target.ByteSize():  # the float32 initializer is smaller
            continue
        decoder = candidates[best]
        functions |= {node.op_type for node in decoder.nodes if node.domain == DOMAIN}
        decoders.append(decoder)
        replaced[name] = target.name
        layers[name] = IntegerLayer(
            layer.kind, layer.forms[best], tuple(decoder.storage), sizes[best], 4 * weight.numel()
        )
    kept = [init for name, init in initializers.items() if name not in replaced.values()]
    graph.initializer.extend(kept + [init for d in decoders for init in d.initializers])
    nodes = [node for d in decoders for node in d.nodes] + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    if functions:
        model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
        model.functions.extend(function_protos(functions))
    return model, replaced, IntegerOnnxReport(layers, float_layers, weight_decode)


def _size(decoder: Decoder, present: set[str]) -> int:
    new = decoder.functions - present
    return (
        sum(node.ByteSize() for node in decoder.nodes)
        + sum(init.ByteSize() for init in decoder.initializers)
        + sum(function.ByteSize() for function in function_protos(new))
    )


def _initializer_of(
    initializers: Mapping[str, TensorProto], name: str, weight: np.ndarray
) -> TensorProto | None:
    """The initializer holding exactly ``weight``: by its parameter name, else by content."""
    candidates = [initializers[name]] if name in initializers else []
    candidates += [init for key, init in initializers.items() if key != name]
    for init in candidates:
        same_kind = tuple(init.dims) == weight.shape and init.data_type == TensorProto.FLOAT
        if same_kind and np.array_equal(numpy_helper.to_array(init), weight):
            return init
    return None


class _LayerCodes:
    """A layer's weight as codes, and the decoders that may store it."""

    def __init__(
        self,
        weight: torch.Tensor,
        encoding: LayerEncoding | None,
        mask: torch.Tensor | None,
        weight_decode: WeightDecode,
    ) -> None:
        self.weight = weight.numpy()
        self.shape = list(weight.shape)
        self.keep = None if mask is None else mask.detach().cpu().reshape(-1).numpy()
        self.encoding = encoding
        self.weight_decode = weight_decode
        self.kind = (
            "shared" if isinstance(encoding, SharedWeights)
            else "quantized" if isinstance(encoding, QuantizedWeights) else "dense"
        )  # fmt: skip
        self.forms: list[str] = []

    def builders(self) -> list:
        builders = []
        if self.kind != "dense":
            builders.append(self._dense)
            self.forms.append("dense")
        if self.keep is not None:
            builders += [self._sparse, self._sparse_inline]
            self.forms += ["sparse", "sparse_inline"]
        return builders

    # --- dense: every weight coded ---------------------------------------------------------

    def _dense(self, decoder: Decoder, output: str) -> Decoder:
        keep = self.keep if self.keep is not None else np.ones(self.weight.size, dtype=bool)
        if isinstance(self.encoding, QuantizedWeights):
            values = np.where(keep, self.encoding.values.reshape(-1).cpu().numpy(), 0)
            codes, dtype = decoder.signed(values, self.encoding.bits, self.shape)
            self._scale(decoder, codes, dtype, output)
        else:
            assert isinstance(self.encoding, SharedWeights)
            codebook = self.encoding.codebook.detach().cpu().to(torch.float32).numpy()
            zero = zero_index(self.encoding.codebook)
            if zero is None and not keep.all():
                codebook, zero = np.append(codebook, np.float32(0.0)), codebook.size
            indices = np.where(keep, self.encoding.indices.reshape(-1).cpu().numpy(), zero or 0)
            codes = decoder.codes(indices, index_bits(codebook.size), self.shape)
            decoder.op("Gather", [decoder.floats(codebook), codes], output)
        return decoder

    # --- sparse: kept weights and their positions ------------------------------------------

    def _sparse(self, decoder: Decoder, output: str) -> Decoder:
        assert self.keep is not None
        keep = self.keep
        if not keep.any():  # everything pruned
            decoder.op("ConstantOfShape", [decoder.int64s(self.shape)], output)
            return decoder
        gaps, step, _ = decoder.gaps(np.flatnonzero(keep))
        if isinstance(self.encoding, QuantizedWeights):
            values = self.encoding.values.reshape(-1).cpu().numpy()[keep]
            codes, _ = decoder.signed(values, self.encoding.bits, [values.size])
            kept = decoder.op("Cast", [codes], to=TensorProto.FLOAT)
        elif isinstance(self.encoding, SharedWeights):
            codebook = self.encoding.codebook.detach().cpu().to(torch.float32).numpy()
            indices = self.encoding.indices.reshape(-1).cpu().numpy()[keep]
            codes = decoder.codes(indices, index_bits(codebook.size))
            kept = decoder.op("Gather", [decoder.floats(codebook), codes])
        else:
            kept = decoder.floats(self.weight.reshape(-1)[keep])
        arguments = [gaps, kept, decoder.int64(step), decoder.int64s(self.shape)]
        if isinstance(self.encoding, QuantizedWeights):
            levels = decoder.op("scatter_gaps", arguments)
            self._scale(decoder, levels, TensorProto.FLOAT, output)
        else:
            decoder.op("scatter_gaps", arguments, output)
        return decoder

    def _sparse_inline(self, decoder: Decoder, output: str) -> Decoder:
        """Positions decoded inline (no function); the value stream has an entry per gap
        code, a filler's being a zero (a zero level, or the codebook's zero entry, else any
        index masked by ``Where``), so the values line up with the positions."""
        assert self.keep is not None
        keep = self.keep
        if not keep.any():
            return self._sparse(decoder, output)
        codebook = zero = None
        if isinstance(self.encoding, QuantizedWeights):
            value_bits = self.encoding.bits
        elif isinstance(self.encoding, SharedWeights):
            codebook = self.encoding.codebook.detach().cpu().to(torch.float32).numpy()
            zero, value_bits = zero_index(self.encoding.codebook), index_bits(codebook.size)
        else:
            value_bits = 32

        def value_bytes(count: int) -> int:
            return 4 * count if value_bits == 32 else decoder.stream_bytes(count, value_bits)

        gaps, step, codes = decoder.gaps(np.flatnonzero(keep), value_bytes)
        slots = codes != 0
        origin = decoder.int64(0)
        filler = decoder.op("Equal", [gaps, origin])
        advance = decoder.op("Where", [filler, decoder.int64(step), gaps])
        ends = decoder.op("CumSum", [advance, origin])
        positions = decoder.op("Sub", [ends, decoder.int64(1)])
        if isinstance(self.encoding, QuantizedWeights):
            aligned = np.zeros(codes.size, dtype=np.int64)
            aligned[slots] = self.encoding.values.reshape(-1).cpu().numpy()[keep]
            levels, _ = decoder.signed(aligned, value_bits, [codes.size])
            values = decoder.op("Cast", [levels], to=TensorProto.FLOAT)
        elif codebook is not None:
            assert isinstance(self.encoding, SharedWeights)
            aligned = np.full(codes.size, zero or 0, dtype=np.int64)
            aligned[slots] = self.encoding.indices.reshape(-1).cpu().numpy()[keep]
            indices = decoder.codes(aligned, value_bits)
            values = decoder.op("Gather", [decoder.floats(codebook), indices])
            if zero is None:
                nothing = decoder.tensor(TensorProto.FLOAT, [], np.float32(0).tobytes())
                values = decoder.op("Where", [filler, nothing, values])
        else:
            aligned = np.zeros(codes.size, dtype=np.float32)
            aligned[slots] = self.weight.reshape(-1)[keep]
            values = decoder.floats(aligned)
        zeros = decoder.op("ConstantOfShape", [decoder.int64s([self.weight.size])])
        flat = decoder.op("ScatterElements", [zeros, positions, values], axis=0)
        if isinstance(self.encoding, QuantizedWeights):
            levels = decoder.op("Reshape", [flat, decoder.int64s(self.shape)])
            self._scale(decoder, levels, TensorProto.FLOAT, output)
        else:
            decoder.op("Reshape", [flat, decoder.int64s(self.shape)], output)
        return decoder

    def _scale(self, decoder: Decoder, levels: str, dtype: int, output: str) -> None:
        """Integer levels (any type) times the per-output-channel scales."""
        assert isinstance(self.encoding, QuantizedWeights)
        scales = self.encoding.scales.detach().cpu().to(torch.float32).numpy()
        if self.weight_decode == "dequantize_linear":
            integer = TensorProto.INT8 if self.encoding.bits <= 8 else TensorProto.INT16
            if dtype not in (TensorProto.INT4, TensorProto.INT8, TensorProto.INT16):
                levels = decoder.op("Cast", [levels], to=integer)
            decoder.op("DequantizeLinear", [levels, decoder.floats(scales)], output, axis=0)
            return
        if dtype != TensorProto.FLOAT:
            levels = decoder.op("Cast", [levels], to=TensorProto.FLOAT)
        column = [len(scales)] + [1] * (len(self.shape) - 1)
        decoder.op("Mul", [levels, decoder.floats(scales, column)], output)


def _check_weights(model: ModelProto, outputs: Mapping[str, str], module: nn.Module) -> None:
    """Run onnxruntime on the decoders of the weights (layer -> tensor name), a layer at a
    time (a wide layer's decoding holds several int64 copies of its codes); each must equal
    the torch weight (which the float32 initializer it replaced equals), element for
    element."""
    if not outputs:
        return
    probe = _decoders_only(model, set(outputs.values()))
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = False  # what one layer's decoding used is freed, not kept
    options.enable_mem_pattern = False
    try:
        session = onnxruntime.InferenceSession(
            probe.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        feeds = {
            value.name: np.zeros([d if isinstance(d, int) else 1 for d in value.shape], np.float32)
            for value in session.get_inputs()
        }
    except Exception as exc:
        raise ExportFailed(f"onnxruntime cannot run the integer ONNX model: {exc}") from exc
    del probe
    for layer, tensor in outputs.items():
        try:
            (decoded,) = session.run([tensor], feeds)
        except Exception as exc:
            raise ExportFailed(f"onnxruntime cannot run the integer ONNX model: {exc}") from exc
        expected = module.get_submodule(layer).weight.detach().cpu().to(torch.float32).numpy()
        if decoded.shape != expected.shape or not np.array_equal(decoded, expected):
            raise ExportFailed(
                f"the integer ONNX model decodes layer {layer!r} to other values than its "
                "weight; refusing to hand it out"
            )
        del decoded, expected


def _decoders_only(model: ModelProto, outputs: set[str]) -> ModelProto:
    """The part of ``model`` that computes ``outputs`` (the decoded weights): their nodes,
    codes and functions, without the float layers or the rest of the graph. A copy of the whole
    model beside a session of it cost VGG-11-BN a gigabyte; this costs the codes."""
    needed, nodes = set(outputs), []
    for node in reversed(model.graph.node):
        if needed.intersection(node.output):
            nodes.append(node)
            needed.update(name for name in node.input if name)
    graph = helper.make_graph(
        list(reversed(nodes)),
        "decoders",
        [value for value in model.graph.input if value.name in needed],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        [init for init in model.graph.initializer if init.name in needed],
    )
    probe = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    probe.functions.extend(model.functions)
    return probe
