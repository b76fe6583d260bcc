"""One layer's weight as packed sections, and back.

Kinds: ``shared`` stores a float32 codebook and bit-packed indices (``index_bits`` each);
``quantized`` stores float32 per-channel scales and bit-packed integers in offset binary
(``value + max_level``, so codes are non-negative); ``dense`` (a pruned layer with no
encoding) stores float32 weights.

The sparse rule: a masked layer is stored sparse -- a 1-bit-per-weight keep bitmap plus the
codes of the kept weights only -- when that is smaller than coding every weight, or when no
code decodes to exactly +0.0 (a shared layer whose codebook lacks +0.0). Otherwise every
weight is coded and pruned weights get the zero code, so the mask is implied by the weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from compression.encoding import LayerEncoding, QuantizedWeights, SharedWeights
from compression.errors import ExportFailed, InvalidModel
from compression.packed.bitpack import MAX_BITS, pack_bits, packed_size, unpack_bits
from compression.packed.header import LayerEntry, Role

FLOAT32 = np.dtype("<f4")
Sections = list[tuple[str, bytes]]


def encode_layer(
    name: str,
    weight: torch.Tensor,
    encoding: LayerEncoding | None,
    mask: torch.Tensor | None,
) -> tuple[LayerEntry, Sections]:
    """Code one layer's weight and prove the code decodes to it bit for bit; the sections
    come in the order the header lists them."""
    _check_inputs(name, weight, encoding, mask)
    weight = weight.detach().cpu()
    fixed: dict[Role, bytes] = {}
    if isinstance(encoding, SharedWeights):
        kind, bits, codebook_size = "shared", encoding.index_bits, encoding.codebook.numel()
        fixed["codebook"] = _floats(encoding.codebook)
        codes, zero = encoding.indices.reshape(-1).cpu(), _zero_index(encoding.codebook)
    elif isinstance(encoding, QuantizedWeights):
        kind, bits, codebook_size = "quantized", encoding.bits, None
        fixed["scales"] = _floats(encoding.scales)
        codes = encoding.values.reshape(-1).cpu() + encoding.max_level
        zero = encoding.max_level
    else:
        kind, bits, codebook_size = "dense", None, None
        codes, zero = weight.reshape(-1), 0.0
    count = weight.numel()
    keep = None if mask is None else mask.reshape(-1).cpu()
    kept = count if keep is None else int(keep.sum())
    sparse = keep is not None and (
        zero is None or packed_size(count, 1) + _stored_size(kept, bits) < _stored_size(count, bits)
    )
    payload = dict(fixed)
    if sparse:
        payload["mask"] = pack_bits(keep, 1)
        codes = codes[keep]
    elif keep is not None:
        codes = torch.where(keep, codes, zero)
    payload["codes" if bits is not None else "values"] = (
        _floats(codes) if bits is None else pack_bits(codes, bits)
    )
    entry = LayerEntry(
        name=name,
        kind=kind,
        shape=tuple(weight.shape),
        dtype="float32",
        count=count,
        kept=kept if sparse else count,
        sparse=sparse,
        bits=bits,
        codebook_size=codebook_size,
        sections={role: f"{name}.{role}" for role in payload},
    )
    sections = [(entry.sections[role], data) for role, data in payload.items()]
    if not torch.equal(decode_layer(entry, dict(sections)), weight):
        raise ExportFailed(
            f"cannot pack layer {name!r}: its weight is not its encoding's dequantize() with "
            "pruned weights exactly 0, so the file would not reproduce the model"
        )
    return entry, sections


def decode_layer(entry: LayerEntry, sections: dict[str, bytes]) -> torch.Tensor:
    """Rebuild the float32 weight; every length and code is checked against the header."""
    data = _layer_sections(entry, sections)
    keep = None
    if entry.sparse:
        keep = unpack_bits(data["mask"], 1, entry.count).bool()
        if int(keep.sum()) != entry.kept:
            raise InvalidModel(
                f"packed layer {entry.name!r}: its mask keeps {int(keep.sum())} weights, "
                f"the header says {entry.kept}"
            )
    stored = _stored_levels(entry, data)
    levels = stored
    if keep is not None:
        levels = torch.zeros(entry.count, dtype=stored.dtype)
        levels[keep] = stored
    weight = _dequantize(entry, data, levels.view(entry.shape))
    return weight if keep is None else torch.where(keep.view(entry.shape), weight, 0.0)


def _stored_levels(entry: LayerEntry, data: dict[Role, bytes]) -> torch.Tensor:
    """The stored weights as float32 values (dense), indices (shared) or integers."""
    if entry.bits is None:
        return _read_floats(data["values"])
    codes = unpack_bits(data["codes"], entry.bits, entry.kept)
    limit = entry.codebook_size if entry.kind == "shared" else 2**entry.bits - 1
    if codes.numel() and int(codes.max()) >= limit:
        raise InvalidModel(
            f"packed layer {entry.name!r} holds code {int(codes.max())}, outside [0, {limit})"
        )
    return codes if entry.kind == "shared" else codes - (2 ** (entry.bits - 1) - 1)


def _dequantize(entry: LayerEntry, data: dict[Role, bytes], levels: torch.Tensor) -> torch.Tensor:
    if entry.kind == "shared":
        return SharedWeights(_read_floats(data["codebook"]), levels).dequantize()
    if entry.kind == "quantized":
        assert entry.bits is not None
        return QuantizedWeights(entry.bits, _read_floats(data["scales"]), levels).dequantize()
    return levels


def _layer_sections(entry: LayerEntry, sections: dict[str, bytes]) -> dict[Role, bytes]:
    """The layer's sections by role, once the entry is consistent and every length right."""
    problem = _entry_problem(entry) or _missing(entry, sections) or _wrong_length(entry, sections)
    if problem:
        raise InvalidModel(f"packed layer {entry.name!r} is corrupt: {problem}")
    return {role: sections[name] for role, name in entry.sections.items()}


def _entry_problem(entry: LayerEntry) -> str | None:
    if not entry.shape or math.prod(entry.shape) != entry.count:
        return f"shape {list(entry.shape)} does not hold {entry.count} weights"
    if entry.kept > entry.count or (not entry.sparse and entry.kept != entry.count):
        return f"it stores {entry.kept} of {entry.count} weights"
    if (entry.bits is None) != (entry.kind == "dense"):
        return f"a {entry.kind} layer with bits {entry.bits}"
    if (entry.codebook_size is None) != (entry.kind != "shared") or (
        entry.codebook_size is not None and entry.bits != _index_bits(entry.codebook_size)
    ):
        return f"a {entry.kind} layer with codebook size {entry.codebook_size}, bits {entry.bits}"
    roles = set(_expected_lengths(entry))
    if set(entry.sections) != roles:
        return f"sections {sorted(entry.sections)}, expected {sorted(roles)}"
    return None


def _missing(entry: LayerEntry, sections: dict[str, bytes]) -> str | None:
    missing = sorted(set(entry.sections.values()) - set(sections))
    return f"it names missing sections {missing}" if missing else None


def _wrong_length(entry: LayerEntry, sections: dict[str, bytes]) -> str | None:
    wrong = [
        f"section {role} has {len(sections[entry.sections[role]])} bytes, expected {length}"
        for role, length in _expected_lengths(entry).items()
        if len(sections[entry.sections[role]]) != length
    ]
    return "; ".join(wrong) or None


def _expected_lengths(entry: LayerEntry) -> dict[Role, int]:
    lengths: dict[Role, int] = {}
    if entry.sparse:
        lengths["mask"] = packed_size(entry.count, 1)
    if entry.kind == "shared":
        lengths["codebook"] = FLOAT32.itemsize * (entry.codebook_size or 0)
    if entry.kind == "quantized":
        lengths["scales"] = FLOAT32.itemsize * entry.shape[0]
    lengths["codes" if entry.bits is not None else "values"] = _stored_size(entry.kept, entry.bits)
    return lengths


def _stored_size(count: int, bits: int | None) -> int:
    return FLOAT32.itemsize * count if bits is None else packed_size(count, bits)


def _index_bits(codebook_size: int) -> int:
    """``SharedWeights.index_bits`` from the size alone: ceil(log2 k), at least 1."""
    return max(1, (codebook_size - 1).bit_length())


def _zero_index(codebook: torch.Tensor) -> int | None:
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
