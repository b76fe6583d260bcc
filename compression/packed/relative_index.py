"""Sparse positions as gaps between kept weights: Deep Compression's relative index.

A pruned layer stores only its kept weights, so a reader must learn where they sit. A bitmap
costs one bit per weight however few are kept; the distance from one kept weight to the next
costs a few bits per *kept* weight. With ``bits``-bit gaps, code ``g`` in ``1 .. 2**bits - 1``
means "the next kept weight is ``g`` positions after the previous one" (the first counts from
position -1), and code 0 is a filler that moves ``2**bits - 1`` positions without keeping
anything, for gaps too long for one code. Fillers carry no weight value (Deep Compression
stores a zero weight there instead; leaving it out saves a code per filler).

Decoding is a prefix sum, so the same stream is decoded by numpy here and by standard ONNX
operators (``CumSum``, ``Compress``) in the integer ONNX file. With ``bits = 1`` the stream is
the keep bitmap up to its last kept weight, so the bitmap is one of the choices, not lost.
"""

from __future__ import annotations

import numpy as np

MAX_GAP_BITS = 8


def filler_step(bits: int) -> int:
    """How far a filler (code 0) moves: the longest gap one code can say."""
    return (1 << bits) - 1


def _distances(positions: np.ndarray) -> np.ndarray:
    return np.diff(positions, prepend=-1)


def gap_count(positions: np.ndarray, bits: int) -> int:
    """Codes the gap stream of ``positions`` takes at ``bits`` bits: one per kept weight plus
    the fillers."""
    fillers = (_distances(positions) - 1) // filler_step(bits)
    return int(positions.size + fillers.sum())


def encode_gaps(positions: np.ndarray, bits: int) -> np.ndarray:
    """The gap codes (int64) of strictly increasing flat ``positions``."""
    if not 1 <= bits <= MAX_GAP_BITS:
        raise ValueError(f"gap bits must be in 1..{MAX_GAP_BITS}, got {bits}")
    positions = np.asarray(positions, dtype=np.int64)
    distances = _distances(positions)
    if distances.size and int(distances.min()) < 1:
        raise ValueError("positions must be strictly increasing and non-negative")
    step = filler_step(bits)
    fillers = (distances - 1) // step
    codes = np.zeros(int(positions.size + fillers.sum()), dtype=np.int64)
    codes[np.cumsum(fillers + 1) - 1] = distances - fillers * step
    return codes


def decode_gaps(codes: np.ndarray, bits: int) -> np.ndarray:
    """The flat positions a gap stream names (the inverse of ``encode_gaps``)."""
    codes = np.asarray(codes, dtype=np.int64)
    advance = np.where(codes == 0, filler_step(bits), codes)
    return (np.cumsum(advance) - 1)[codes != 0]


def best_gap_bits(positions: np.ndarray) -> int:
    """The gap width whose stream takes the fewest bits (the narrower one on a tie)."""
    costs = {bits: bits * gap_count(positions, bits) for bits in range(1, MAX_GAP_BITS + 1)}
    return min(costs, key=lambda bits: (costs[bits], bits))
