"""One layer's weight as packed sections, and back.

Kinds: ``shared`` stores a float32 codebook and ``index_bits``-bit indices; ``quantized``
stores float32 per-channel scales and integers in offset binary (``value + max_level``, so
codes are non-negative); ``dense`` (a pruned layer with no encoding) stores float32 weights.

A pruned layer is stored whichever way is smaller: **dense**, every weight coded with the
pruned ones at the zero code (possible when some code decodes to exactly +0.0), or
**sparse**, the kept weights' codes plus their positions as gaps (``relative_index``). Every
section is then entropy-coded where that pays (``stream_coding``).
"""

from __future__ import annotations

import numpy as np
import torch

from compression.encoding import LayerEncoding, QuantizedWeights, SharedWeights
from compression.errors import ExportFailed, InvalidModel
from compression.packed.bitpack import MAX_BITS
from compression.packed.header import ROLES, LayerEntry, Positions, Role, Stream
from compression.packed.relative_index import best_gap_bits, decode_gaps, encode_gaps
from compression.packed.stream_coding import decode_bytes, decode_codes, encode_bytes, encode_codes

FLOAT32 = np.dtype("<f4")
Coded = dict[str, tuple[Stream, bytes]]
"""A layer's coded sections by role ("positions" first when sparse)."""


def encode_layer(
    name: str,
    weight: torch.Tensor,
    encoding: LayerEncoding | None,
    mask: torch.Tensor | None,
    entropy: bool = True,
) -> tuple[LayerEntry, list[bytes]]:
    """Code one layer's weight and prove the code decodes to it; the payloads come in the
    order of ``header.section_order``. ``entropy`` off stores every section plain."""
    _check_inputs(name, weight, encoding, mask)
    weight = weight.detach().cpu()
    layer = LayerCodes.of(weight, encoding, entropy)
    keep = None if mask is None else mask.reshape(-1).cpu()
    fixed = {role: encode_bytes(_floats(values), entropy) for role, values in layer.fixed.items()}
    candidates = []
    if keep is None or layer.zero is not None or bool(keep.all()):
        codes = layer.codes if keep is None else torch.where(keep, layer.codes, layer.zero or 0)
        candidates.append((None, {**fixed, layer.role: layer.encode(codes)}))
    if keep is not None:
        positions = torch.nonzero(keep).reshape(-1).numpy()
        gap_bits = best_gap_bits(positions)
        gaps = encode_gaps(positions, gap_bits)
        stream, data = encode_codes(gaps, gap_bits, entropy)
        sparse = {**fixed, layer.role: layer.encode(layer.codes[keep])}
        sparse["positions"] = (stream, data)
        candidates.append((Positions(bits=gap_bits, count=gaps.size, stream=stream), sparse))
    positions, coded = min(candidates, key=lambda c: sum(len(d) for _, d in c[1].values()))
    entry = LayerEntry(
        name=name,
        kind=layer.kind,
        shape=tuple(weight.shape),
        kept=weight.numel() if positions is None else int(keep.sum()),
        bits=layer.bits,
        codebook_size=layer.codebook_size,
        positions=positions,
        streams={role: coded[role][0] for role in ROLES if role in coded},
    )
    payloads = ([coded["positions"][1]] if positions else []) + [
        coded[role][1] for role in ROLES if role in coded
    ]
    if not torch.equal(decode_layer(entry, payloads), weight):
        raise ExportFailed(
            f"cannot pack layer {name!r}: its weight is not its encoding's dequantize() with "
            "pruned weights exactly 0, so the file would not reproduce the model"
        )
    return entry, payloads


class LayerCodes:
    """A layer's weight as one code per weight, whatever its kind."""

    def __init__(
        self,
        kind: str,
        codes: torch.Tensor,
        bits: int | None,
        zero: int | float | None,
        fixed: dict[Role, torch.Tensor],
        codebook_size: int | None = None,
        entropy: bool = True,
    ) -> None:
        self.kind, self.codes, self.bits, self.zero = kind, codes, bits, zero
        self.fixed, self.codebook_size, self.entropy = fixed, codebook_size, entropy
        self.role: Role = "values" if bits is None else "codes"

    @classmethod
    def of(cls, weight: torch.Tensor, encoding: LayerEncoding | None, entropy: bool) -> LayerCodes:
        if isinstance(encoding, SharedWeights):
            codebook = encoding.codebook.detach().cpu().to(torch.float32)
            return cls(
                "shared", encoding.indices.reshape(-1).cpu(), encoding.index_bits,
                zero_index(codebook), {"codebook": codebook}, codebook.numel(), entropy,
            )  # fmt: skip
        if isinstance(encoding, QuantizedWeights):
            codes = encoding.values.reshape(-1).cpu().to(torch.int32) + encoding.max_level
            scales = encoding.scales.detach().cpu().to(torch.float32)
            return cls(
                "quantized", codes, encoding.bits, encoding.max_level, {"scales": scales},
                entropy=entropy,
            )  # fmt: skip
        return cls("dense", weight.reshape(-1), None, 0.0, {}, entropy=entropy)

    def encode(self, codes: torch.Tensor) -> tuple[Stream, bytes]:
        if self.bits is None:
            return encode_bytes(_floats(codes), self.entropy)
        return encode_codes(codes, self.bits, self.entropy)


def decode_layer(entry: LayerEntry, payloads: list[bytes]) -> torch.Tensor:
    """Rebuild the float32 weight from the layer's payloads (in file order); every length and
    code is checked against the header."""
    problem = _entry_problem(entry)
    if problem:
        raise InvalidModel(f"packed layer {entry.name!r} is corrupt: {problem}")
    sections = list(payloads)
    keep = None
    if entry.positions is not None:
        keep = _keep_mask(entry, sections.pop(0))
    data = {role: sections.pop(0) for role in ROLES if role in entry.streams}
    fixed = {
        role: _read_floats(_bytes(entry, role, data[role], 4 * length))
        for role, length in _fixed_lengths(entry).items()
    }
    stored = _stored_levels(entry, data)
    levels = stored
    if keep is not None:
        levels = torch.zeros(entry.count, dtype=stored.dtype)
        levels[keep] = stored
    levels = levels.view(entry.shape)
    if entry.kind == "shared":
        weight = SharedWeights(fixed["codebook"], levels).dequantize()
    elif entry.kind == "quantized":
        assert entry.bits is not None
        weight = QuantizedWeights(entry.bits, fixed["scales"], levels).dequantize()
    else:
        weight = levels
    return weight if keep is None else torch.where(keep.view(entry.shape), weight, 0.0)


def _keep_mask(entry: LayerEntry, data: bytes) -> torch.Tensor:
    assert entry.positions is not None
    what = f"layer {entry.name!r} positions"
    gaps = decode_codes(
        entry.positions.stream, data, entry.positions.bits, entry.positions.count, what
    )
    positions = decode_gaps(gaps.numpy(), entry.positions.bits)
    if positions.size != entry.kept or (positions.size and int(positions[-1]) >= entry.count):
        last = int(positions[-1]) if positions.size else None
        raise InvalidModel(
            f"packed layer {entry.name!r}: its positions name {positions.size} weights (last "
            f"{last}), the header says {entry.kept} of {entry.count}"
        )
    keep = torch.zeros(entry.count, dtype=torch.bool)
    keep[torch.from_numpy(positions)] = True
    return keep


def _stored_levels(entry: LayerEntry, data: dict[Role, bytes]) -> torch.Tensor:
    """The stored weights as float32 values (dense), indices (shared) or integers."""
    if entry.bits is None:
        return _read_floats(_bytes(entry, "values", data["values"], 4 * entry.kept))
    what = f"layer {entry.name!r} codes"
    codes = decode_codes(entry.streams["codes"], data["codes"], entry.bits, entry.kept, what)
    limit = entry.codebook_size if entry.kind == "shared" else 2**entry.bits - 1
    if codes.numel() and int(codes.max()) >= limit:
        raise InvalidModel(
            f"packed layer {entry.name!r} holds code {int(codes.max())}, outside [0, {limit})"
        )
    codes = codes.to(torch.int32)  # half the bytes of int64 beside a wide layer's weight
    return codes if entry.kind == "shared" else codes.sub_(2 ** (entry.bits - 1) - 1)


def _bytes(entry: LayerEntry, role: Role, data: bytes, size: int) -> bytes:
    return decode_bytes(entry.streams[role], data, size, f"layer {entry.name!r} {role}")


def _fixed_lengths(entry: LayerEntry) -> dict[Role, int]:
    """Float32 values in the codebook / scales section."""
    if entry.kind == "shared":
        return {"codebook": entry.codebook_size or 0}
    if entry.kind == "quantized":
        return {"scales": entry.shape[0]}
    return {}


def _entry_problem(entry: LayerEntry) -> str | None:
    if not entry.shape:
        return "its shape is empty"
    if entry.kept > entry.count or (not entry.sparse and entry.kept != entry.count):
        return f"it stores {entry.kept} of {entry.count} weights"
    if (entry.bits is None) != (entry.kind == "dense"):
        return f"a {entry.kind} layer with bits {entry.bits}"
    if (entry.codebook_size is None) != (entry.kind != "shared") or (
        entry.codebook_size is not None and entry.bits != index_bits(entry.codebook_size)
    ):
        return f"a {entry.kind} layer with codebook size {entry.codebook_size}, bits {entry.bits}"
    roles = {*_fixed_lengths(entry), "values" if entry.bits is None else "codes"}
    if set(entry.streams) != roles:
        return f"sections {sorted(entry.streams)}, expected {sorted(roles)}"
    return None


def index_bits(codebook_size: int) -> int:
    """``SharedWeights.index_bits`` from the size alone: ceil(log2 k), at least 1."""
    return max(1, (codebook_size - 1).bit_length())


def zero_index(codebook: torch.Tensor) -> int | None:
    """The index of a codebook entry that is exactly +0.0 (bit pattern 0), if any."""
    zeros = (codebook.detach().to(torch.float32).view(torch.int32) == 0).nonzero()
    return int(zeros[0]) if zeros.numel() else None


def _floats(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().to(torch.float32).numpy().astype(FLOAT32).tobytes()


def _read_floats(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(data, dtype=FLOAT32).astype(np.float32))


def _check_inputs(
    name: str, weight: torch.Tensor, encoding: LayerEncoding | None, mask: torch.Tensor | None
) -> None:
    """Refuse what the format cannot hold exactly, naming the layer."""
    shape = tuple(weight.shape)
    problems = []
    if weight.dtype != torch.float32:
        problems.append(f"weight is {weight.dtype}, only float32 is packed")
    if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != shape):
        problems.append(f"mask must be a bool tensor of shape {shape}")
    if isinstance(encoding, SharedWeights):
        if tuple(encoding.indices.shape) != shape or encoding.codebook.dim() != 1:
            problems.append(f"indices must have shape {shape} and the codebook one dimension")
        elif encoding.codebook.numel() == 0:
            problems.append("the codebook is empty")
        elif encoding.index_bits > MAX_BITS:
            problems.append(f"a codebook of {encoding.codebook.numel()} needs over 16 bits")
        elif not _within(encoding.indices, 0, encoding.codebook.numel() - 1):
            problems.append("indices fall outside the codebook")
    if isinstance(encoding, QuantizedWeights):
        if tuple(encoding.values.shape) != shape or encoding.scales.shape != (shape[0],):
            problems.append(f"values must have shape {shape} and scales ({shape[0]},)")
        elif not 1 <= encoding.bits <= MAX_BITS:
            problems.append(f"{encoding.bits} bits is outside 1..{MAX_BITS}")
        elif not _within(encoding.values, -encoding.max_level, encoding.max_level):
            problems.append(f"values exceed +-{encoding.max_level} for {encoding.bits} bits")
    if problems:
        raise ExportFailed(f"cannot pack layer {name!r}: " + "; ".join(problems))


def _within(values: torch.Tensor, low: int, high: int) -> bool:
    return values.numel() == 0 or low <= int(values.min()) <= int(values.max()) <= high
