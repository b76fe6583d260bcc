"""Pack small non-negative integers into a dense bit stream, and back.

A 4-bit layer must take 4 bits per weight on disk, not a byte, so codes are packed with no
padding between them. Bit order is little-endian throughout: value ``i`` occupies stream bits
``[i * bits, (i + 1) * bits)``, least significant bit first, and stream bit ``j`` is bit
``j % 8`` (counting from the least significant) of byte ``j // 8``. The whole stream is thus
one little-endian integer, and only the last byte carries zero padding.
"""

from __future__ import annotations

import numpy as np
import torch

MAX_BITS = 16

CHUNK = 1 << 16
"""Values handled per numpy step: bounds the temporary bit arrays to a few MiB. A multiple of
8, so every chunk but the last starts and ends on a byte boundary."""


def packed_size(count: int, bits: int) -> int:
    """Bytes that ``count`` values of ``bits`` bits take: ceil(count * bits / 8)."""
    return (count * bits + 7) // 8


def pack_bits(values: torch.Tensor, bits: int) -> bytes:
    """Pack non-negative integers below ``2**bits`` (any shape, read row-major)."""
    _check_bits(bits)
    if values.is_floating_point() or values.is_complex():
        raise ValueError(f"pack_bits takes integers or booleans, not {values.dtype}")
    flat = values.detach().reshape(-1).cpu()
    low, high = (int(flat.min()), int(flat.max())) if flat.numel() else (0, 0)
    if low < 0 or high >= 1 << bits:
        raise ValueError(
            f"values must lie in [0, {(1 << bits) - 1}] to fit {bits} bits; got [{low}, {high}]"
        )
    shifts = np.arange(bits, dtype=np.uint32)
    chunks = [  # converted a chunk at a time: a wide layer's codes as int64 are gigabytes
        np.packbits(
            (flat[start : start + CHUNK].numpy().astype(np.uint32)[:, None] >> shifts) & 1,
            bitorder="little",
        )
        for start in range(0, flat.numel(), CHUNK)
    ]
    return b"".join(chunk.tobytes() for chunk in chunks)


def unpack_bits(data: bytes, bits: int, count: int) -> torch.Tensor:
    """Read ``count`` values of ``bits`` bits back as a flat int64 tensor."""
    _check_bits(bits)
    if len(data) != packed_size(count, bits):
        raise ValueError(
            f"{count} values of {bits} bits take {packed_size(count, bits)} bytes, got {len(data)}"
        )
    stream = np.frombuffer(data, dtype=np.uint8)
    weights = np.left_shift(1, np.arange(bits, dtype=np.int64))
    out = np.empty(count, dtype=np.int64)
    for start in range(0, count, CHUNK):
        size = min(CHUNK, count - start)
        first = start * bits // 8
        chunk = stream[first : first + packed_size(size, bits)]
        chunk_bits = np.unpackbits(chunk, count=size * bits, bitorder="little")
        out[start : start + size] = chunk_bits.reshape(size, bits).astype(np.int64) @ weights
    return torch.from_numpy(out)


def _check_bits(bits: int) -> None:
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in 1..{MAX_BITS}, got {bits}")
