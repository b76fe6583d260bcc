"""Standard ONNX subgraphs that rebuild a compressed layer's float weight from its codes.

Every subgraph reads only initializers, so onnxruntime computes it once when the session
is created (constant folding) and runs the model at float32 speed afterwards; the file holds
only the codes. Pieces:

- integer streams: 4/8/16-bit codes as UINT4/UINT8/UINT16 (or INT4/INT8/INT16) initializers,
  read with ``Cast``; other widths bit-packed exactly as in the packed format (a UINT8
  initializer) and unpacked by the model-local function ``unpack_bits`` (BitShift,
  BitwiseAnd, ReduceSum), whichever takes fewer bytes, as long as onnxruntime folds the
  unpacking (``FOLD_LIMIT_BYTES``);
- quantized layers: ``Cast(q) * scales`` per output channel, or ``DequantizeLinear`` (axis 0)
  on request: onnxruntime never folds a DequantizeLinear on a weight (it keeps QDQ groups
  intact), so that form decodes the weight on every run (about 8x slower at batch 1 on a
  ResNet-20; benchmarks/results/deployable_onnx.md);
- codebook layers: ``Gather(codebook, indices)``;
- sparse layers: gap codes (the packed format's relative index) turned into positions by
  ``CumSum``, and the kept values placed by ``ScatterElements``: either in the model-local
  function ``scatter_gaps`` (fillers carry no value; about 550 bytes once per model), or
  inline with a value stream aligned to the gap codes (a filler's value is a zero, as in Deep
  Compression: a few more codes, eleven fewer nodes), whichever is smaller for the layer.

Model-local functions are standard ONNX (IR 8+); onnxruntime inlines them. They live in the
domain ``DOMAIN`` so they cannot clash with operators.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from onnx import FunctionProto, NodeProto, TensorProto, helper

from compression.packed.bitpack import pack_bits
from compression.packed.relative_index import MAX_GAP_BITS, encode_gaps, filler_step, gap_count

OPSET = 21
DOMAIN = "xaic.decode"
NATIVE_UNSIGNED = {4: TensorProto.UINT4, 8: TensorProto.UINT8, 16: TensorProto.UINT16}
NATIVE_SIGNED = {4: TensorProto.INT4, 8: TensorProto.INT8, 16: TensorProto.INT16}


def _constant(name: str, dtype: int, values: Sequence[int], dims: Sequence[int]) -> NodeProto:
    return helper.make_node(
        "Constant", [], [name], value=helper.make_tensor("", dtype, list(dims), list(values))
    )


def _unpack_bits() -> FunctionProto:
    """unpack_bits(d: uint8[B], s: int64[2] = [n, bits]) -> int64[n]: the little-endian bit
    stream of the packed format read as n codes of ``bits`` bits. Value names are one letter
    (they are stored in the file): the stream's bits (b, f, u), their n x bits grid (g), the
    place values 2**0 .. 2**(bits-1) (p) and the codes (c)."""
    n = helper.make_node
    body = [
        _constant("k", TensorProto.UINT8, range(8), [8]),
        _constant("o", TensorProto.UINT8, [1], []),
        _constant("m", TensorProto.INT64, [-1], [1]),
        _constant("z", TensorProto.INT64, [0], [1]),
        _constant("j", TensorProto.INT64, [0], []),
        _constant("i", TensorProto.INT64, [1], []),
        _constant("t", TensorProto.INT64, [2], []),
        n("Unsqueeze", ["d", "m"], ["a"]),
        n("BitShift", ["a", "k"], ["h"], direction="RIGHT"),
        n("BitwiseAnd", ["h", "o"], ["b"]),
        n("Reshape", ["b", "m"], ["f"]),
        n("ReduceProd", ["s"], ["e"], keepdims=1),
        n("Slice", ["f", "z", "e"], ["u"]),
        n("Reshape", ["u", "s"], ["r"]),
        n("Cast", ["r"], ["g"], to=TensorProto.INT64),
        n("Gather", ["s", "i"], ["q"]),
        n("Range", ["j", "q", "i"], ["x"]),
        n("Pow", ["t", "x"], ["p"]),
        n("Mul", ["g", "p"], ["y"]),
        n("ReduceSum", ["y", "m"], ["c"], keepdims=0),
    ]
    return helper.make_function(
        DOMAIN, "unpack_bits", ["d", "s"], ["c"], body, [helper.make_opsetid("", OPSET)]
    )


def _scatter_gaps() -> FunctionProto:
    """scatter_gaps(g: int64[m], v: float[kept], s: int64, h: int64[r]) -> float[h]: zeros of
    shape h with the values v at the positions the gap codes g name (code 0 is a filler that
    moves s positions: the packed format's relative index).

    Every code is scattered, fillers into one spare element past the end that is then cut
    off, because onnxruntime does not constant-fold ``Compress`` (its output size depends on
    the data), and a weight decoded on every run would make the model slower than float32.
    Kept positions are distinct, so the additive scatter writes each value once."""
    n = helper.make_node
    body = [
        _constant("z", TensorProto.INT64, [0], []),
        _constant("o", TensorProto.INT64, [1], []),
        _constant("y", TensorProto.INT64, [0], [1]),
        n("Equal", ["g", "z"], ["f"]),
        n("Where", ["f", "s", "g"], ["a"]),
        n("CumSum", ["a", "z"], ["e"]),
        n("Sub", ["e", "o"], ["p"]),
        n("ReduceProd", ["h"], ["c"], keepdims=1),
        n("Where", ["f", "c", "p"], ["q"]),
        n("Not", ["f"], ["k"]),
        n("Cast", ["k"], ["i"], to=TensorProto.INT64),
        n("CumSum", ["i", "z"], ["j"]),
        n("Sub", ["j", "o"], ["r"]),
        n("Gather", ["v", "r"], ["u"]),
        n("Add", ["c", "o"], ["d"]),
        n("ConstantOfShape", ["d"], ["b"]),
        n("ScatterElements", ["b", "q", "u"], ["x"], axis=0, reduction="add"),
        n("Slice", ["x", "y", "c"], ["t"]),
        n("Reshape", ["t", "h"], ["w"]),
    ]
    return helper.make_function(
        DOMAIN, "scatter_gaps", ["g", "v", "s", "h"], ["w"], body,
        [helper.make_opsetid("", OPSET)],
    )  # fmt: skip


FUNCTIONS = {"unpack_bits": _unpack_bits, "scatter_gaps": _scatter_gaps}
CALL_BYTES = 64
FOLD_LIMIT_BYTES = 1 << 28
"""The largest n x bits int64 grid ``unpack_bits`` may build (n codes). onnxruntime did not
fold the unpacking of VGG-11-BN's 50M-weight 5-bit layer (a 2.0 GB grid), so model.onnx
unpacked it on every run: 15-55 s and 8.6 GB RSS per batch-1 inference. A layer beyond the
limit is stored at its native width (int8 for 5-7 bits: a third more bytes), which folds
to a plain Cast when the session starts."""
"""About what a call node and its two small initializers take, for choosing a form."""


def function_bytes(name: str) -> int:
    return len(FUNCTIONS[name]().SerializeToString())


def _native_width(bits: int) -> int:
    return next(width for width in NATIVE_UNSIGNED if bits <= width)


def _raw(values: np.ndarray, width: int, signed: bool) -> bytes:
    """Little-endian raw data of an integer tensor; 4-bit elements two per byte, the first
    in the low nibble (the ONNX layout)."""
    flat = values.reshape(-1).astype(np.int64)
    if width == 4:
        nibbles = (flat & 0xF).astype(np.uint8)
        if nibbles.size % 2:
            nibbles = np.append(nibbles, np.uint8(0))
        return (nibbles[0::2] | (nibbles[1::2] << 4)).tobytes()
    dtype = {(8, False): "<u1", (8, True): "<i1", (16, False): "<u2", (16, True): "<i2"}
    return flat.astype(dtype[(width, signed)]).tobytes()


@dataclass
class Decoder:
    """Builds the nodes and initializers that compute one layer's weight (named ``output``);
    its own names start with ``prefix``."""

    prefix: str
    functions: set[str]
    """Model-local functions the model already has (updated as this decoder uses more)."""
    nodes: list[NodeProto] = field(default_factory=list)
    initializers: list[TensorProto] = field(default_factory=list)
    storage: list[str] = field(default_factory=list)
    """How each stream is stored ("uint4", "int8", "bits3", "float32"), for the report."""
    _count: int = 0

    def fresh(self, hint: str = "t") -> str:
        self._count += 1
        return f"{self.prefix}.{hint}{self._count}"

    def tensor(self, dtype: int, dims: Sequence[int], raw: bytes) -> str:
        name = self.fresh("c")
        self.initializers.append(helper.make_tensor(name, dtype, list(dims), raw, raw=True))
        return name

    def int64s(self, values: Sequence[int]) -> str:
        return self.tensor(TensorProto.INT64, [len(values)], np.asarray(values, "<i8").tobytes())

    def int64(self, value: int) -> str:
        return self.tensor(TensorProto.INT64, [], np.asarray(value, "<i8").tobytes())

    def floats(self, values: np.ndarray, dims: Sequence[int] | None = None) -> str:
        array = np.asarray(values, dtype="<f4")
        self.storage.append("float32")
        return self.tensor(TensorProto.FLOAT, dims or list(array.shape), array.tobytes())

    def op(self, op_type: str, inputs: Sequence[str], output: str | None = None, **attrs) -> str:
        output = output or self.fresh()
        domain = DOMAIN if op_type in FUNCTIONS else ""
        if domain:
            self.functions.add(op_type)
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], domain=domain, **attrs))
        return output

    # --- integer streams ---------------------------------------------------------------------

    def codes(self, codes: np.ndarray, bits: int, dims: Sequence[int] | None = None) -> str:
        """Non-negative codes below ``2**bits`` as an int64 tensor of shape ``dims`` (flat by
        default), stored in whichever form takes fewer bytes."""
        dims = list(dims) if dims is not None else [codes.size]
        width = _native_width(bits)
        if width == bits or native_bytes(codes.size, bits) <= self.packed_cost(codes.size, bits):
            self.storage.append(f"uint{width}")
            stored = self.tensor(NATIVE_UNSIGNED[width], dims, _raw(codes, width, signed=False))
            return self.op("Cast", [stored], to=TensorProto.INT64)
        self.storage.append(f"bits{bits}")
        data = pack_bits(torch.from_numpy(np.asarray(codes, dtype=np.int64).reshape(-1)), bits)
        stored = self.tensor(TensorProto.UINT8, [len(data)], data)
        flat = self.op("unpack_bits", [stored, self.int64s([codes.size, bits])])
        return flat if len(dims) == 1 else self.op("Reshape", [flat, self.int64s(dims)])

    def packed_cost(self, count: int, bits: int) -> float:
        """Bytes of the bit-packed form; infinite past ``FOLD_LIMIT_BYTES`` (never chosen)."""
        if count * bits * 8 > FOLD_LIMIT_BYTES:
            return math.inf
        extra = 0 if "unpack_bits" in self.functions else function_bytes("unpack_bits")
        return math.ceil(count * bits / 8) + CALL_BYTES + extra

    def signed(self, values: np.ndarray, bits: int, dims: Sequence[int]) -> tuple[str, int]:
        """Integers in ``[-max_level, max_level]``: an INT4/INT8/INT16 initializer, or bit-packed
        offset-binary codes when that is smaller; returns the tensor and its element type."""
        width = _native_width(bits)
        level = 2 ** (bits - 1) - 1
        if width == bits or native_bytes(values.size, bits) <= self.packed_cost(values.size, bits):
            self.storage.append(f"int{width}")
            raw = _raw(values, width, signed=True)
            return self.tensor(NATIVE_SIGNED[width], dims, raw), NATIVE_SIGNED[width]
        codes = self.codes(values.reshape(-1).astype(np.int64) + level, bits, dims)
        return self.op("Sub", [codes, self.int64(level)]), TensorProto.INT64

    def stream_bytes(self, count: int, bits: int) -> int:
        """What ``codes`` or ``signed`` would take for ``count`` codes of ``bits`` bits."""
        native = native_bytes(count, bits)
        packed = self.packed_cost(count, bits)
        return native if _native_width(bits) == bits or native <= packed else int(packed)

    def gaps(
        self, positions: np.ndarray, aligned_values: Callable[[int], int] | None = None
    ) -> tuple[str, int, np.ndarray]:
        """The relative index of ``positions`` at its cheapest width: (int64 codes, step,
        the codes as numbers). With ``aligned_values`` (the bytes of a value stream with one
        entry per code, fillers included) the width minimizes both streams together."""
        costs = {}
        for bits in range(1, MAX_GAP_BITS + 1):
            count = gap_count(positions, bits)
            costs[bits] = self.stream_bytes(count, bits)
            if aligned_values is not None:
                costs[bits] += aligned_values(count)
        bits = min(costs, key=lambda b: (costs[b], b))
        codes = encode_gaps(positions, bits)
        return self.codes(codes, bits), filler_step(bits), codes


def native_bytes(count: int, bits: int) -> int:
    return math.ceil(count * _native_width(bits) / 8)


def function_protos(names: set[str]) -> list[FunctionProto]:
    return [FUNCTIONS[name]() for name in sorted(names)]
