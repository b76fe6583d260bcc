"""Entropy coding of one section, chosen by size: stored, deflate or LZMA.

Bit packing gives every code the same width; the codes are rarely equally likely (gaps of a
pruned layer are mostly short, k-means indices crowd the middle clusters, quantized weights
sit near zero), so a general-purpose entropy coder often takes another 10-30% off. Which one
wins depends on the stream, so every candidate is tried and the smallest is kept, with the
plain stream as the fallback: a section never gets bigger than its bit-packed form.

Code streams can also be laid out one code per byte before compressing ("bytes"), which
helps LZMA and deflate on widths that do not divide 8. Both compressors run raw (no
container headers: a few bytes matter on a small model) with fixed settings written down in
docs/packed-format.md, and decoding is bounded by the length the header implies, so a
hostile section cannot expand beyond it.
"""

from __future__ import annotations

import lzma
import zlib

import numpy as np
import torch

from compression.errors import InvalidModel
from compression.packed.bitpack import pack_bits, packed_size, unpack_bits
from compression.packed.header import Coding, Stream

LZMA_DICT_BYTES = 1 << 24
"""Raw LZMA2 with a dictionary of at most 16 MiB, for writing and reading alike (the preset
only changes how hard the writer searches, not what a reader needs)."""


def _lzma_filters(size: int) -> list[dict[str, int]]:
    """LZMA2 with the smallest power-of-two dictionary (4 KiB to 16 MiB) that holds ``size``
    bytes: a dictionary larger than the data finds no more matches, so the stream is the same,
    but the encoder's match finder is sized by it (a 16 MiB one took about 40 ms to set up for
    every few-KB section, most of a small model's packing time)."""
    dictionary = min(LZMA_DICT_BYTES, max(1 << 12, 1 << max(size - 1, 1).bit_length()))
    return [{"id": lzma.FILTER_LZMA2, "dict_size": dictionary}]


LARGE_BYTES = 4 << 20
"""Streams beyond this are only deflated, at its default level: LZMA codes about 1 MB/s of
float weights for a few percent over deflate."""

DEFLATE_WINDOW = -15
"""Raw deflate (no zlib header or checksum), 32 KiB window."""


def _compress(data: bytes, coding: Coding) -> bytes:
    if coding == "deflate":
        level = 6 if len(data) > LARGE_BYTES else 9
        compressor = zlib.compressobj(level, zlib.DEFLATED, DEFLATE_WINDOW)
        return compressor.compress(data) + compressor.flush()
    if coding == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_lzma_filters(len(data)))
    return data


def _decompress(data: bytes, coding: Coding, size: int, what: str) -> bytes:
    """Undo ``_compress``, refusing output that is not exactly ``size`` bytes."""
    if coding == "raw":
        out, complete = data, True
    else:
        try:
            if coding == "deflate":
                inflater = zlib.decompressobj(DEFLATE_WINDOW)
                out = inflater.decompress(data, size + 1)
                complete = (
                    inflater.eof and not inflater.unconsumed_tail and not inflater.unused_data
                )
            else:
                unpacker = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=_lzma_filters(size))
                out = unpacker.decompress(data, size + 1)
                complete = unpacker.eof and not unpacker.unused_data
        except (zlib.error, lzma.LZMAError) as exc:
            raise InvalidModel(f"packed {what} does not decompress ({coding}): {exc}") from exc
    if len(out) != size or not complete:
        raise InvalidModel(
            f"packed {what} decodes to {len(out)}{'' if complete else '+'} bytes, expected {size}"
        )
    return out


SAMPLE_BYTES = 1 << 16
"""Streams longer than four samples are first compressed as four evenly spread samples of
this size; only the best compressor, and only if it saves over 3% there, runs on the whole
stream (LZMA on tens of MB of float weights takes a minute and saves little)."""


def _codings(plain: bytes) -> list[Coding]:
    """The compressors worth running on ``plain`` in full."""
    if len(plain) <= 4 * SAMPLE_BYTES:
        return ["deflate", "lzma"]
    codings: list[Coding] = ["deflate"] if len(plain) > LARGE_BYTES else ["deflate", "lzma"]
    step = (len(plain) - SAMPLE_BYTES) // 3
    sample = b"".join(plain[i * step : i * step + SAMPLE_BYTES] for i in range(4))
    sizes = {coding: len(_compress(sample, coding)) for coding in codings}
    best = min(sizes, key=sizes.__getitem__)
    return [best] if sizes[best] < 0.97 * len(sample) else []


def _smallest(candidates: list[tuple[Stream, bytes]]) -> tuple[Stream, bytes]:
    """The shortest candidate; the earlier one on a tie (plain forms come first)."""
    return min(candidates, key=lambda candidate: len(candidate[1]))


def encode_bytes(data: bytes, entropy: bool = True) -> tuple[Stream, bytes]:
    """A byte section (float32 values, the architecture) in its smallest coding (stored as
    is when ``entropy`` is off)."""
    candidates = [
        (Stream(length=len(coded), coding=coding), coded)
        for coding in ["raw", *(_codings(data) if entropy else [])]
        for coded in [_compress(data, coding)]
    ]
    return _smallest(candidates)


def decode_bytes(stream: Stream, data: bytes, size: int, what: str) -> bytes:
    if stream.packing != "bits":
        raise InvalidModel(f"packed {what} is not a code stream but says packing 'bytes'")
    return _decompress(data, stream.coding, size, what)


def encode_codes(
    codes: torch.Tensor | np.ndarray, bits: int, entropy: bool = True
) -> tuple[Stream, bytes]:
    """Codes below ``2**bits`` in their smallest coding (bit-packed, or a byte per code);
    bit-packed as is when ``entropy`` is off."""
    values = torch.as_tensor(codes).reshape(-1)
    layouts = {"bits": pack_bits(values, bits)}
    if bits < 8 and entropy:
        layouts["bytes"] = values.to(torch.uint8).numpy().tobytes()
    candidates = [
        (Stream(length=len(coded), coding=coding, packing=packing), coded)
        for packing, plain in layouts.items()
        for coding in (["raw"] if packing == "bits" else []) + (_codings(plain) if entropy else [])
        for coded in [_compress(plain, coding)]
    ]
    return _smallest(candidates)


def decode_codes(stream: Stream, data: bytes, bits: int, count: int, what: str) -> torch.Tensor:
    """The ``count`` codes of a stream as int64; a byte-per-code stream must hold no code of
    more than ``bits`` bits."""
    if stream.packing == "bits":
        plain = _decompress(data, stream.coding, packed_size(count, bits), what)
        return unpack_bits(plain, bits, count)
    if bits >= 8 or stream.coding == "raw":
        raise InvalidModel(f"packed {what}: a byte per code only for compressed codes under 8 bits")
    plain = _decompress(data, stream.coding, count, what)
    codes = torch.from_numpy(np.frombuffer(plain, dtype=np.uint8).astype(np.int64))
    if codes.numel() and int(codes.max()) >= 1 << bits:
        raise InvalidModel(f"packed {what} holds code {int(codes.max())}, wider than {bits} bits")
    return codes
