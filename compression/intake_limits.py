"""How much a user's file may make the engine allocate, checked before anything is allocated.

Files of a few bytes can declare gigabytes: a zip member that inflates a thousandfold, an ONNX
input of 1x16384x16384, architecture arguments asking for a 16000-wide MLP, a PNG header of
13000x13000 pixels. Every size derived from user data is compared with one of these limits
*before* the memory it implies is touched, and a refusal names the limit and its value, so
the operator knows which knob to turn. The service fills them from its settings (same names);
the engine never reads settings itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from compression.errors import CompressionError, LimitExceeded, UnsafeArchive


@dataclass(frozen=True)
class IntakeLimits:
    """Bounds on what an uploaded model or dataset may expand to."""

    max_archive_expanded_bytes: int = 2 * 1024**3
    """Uncompressed bytes of all members of one archive (.pt2, model .zip/.tar, dataset)."""
    max_archive_members: int = 100_000
    """Members of one archive."""
    max_compression_ratio: float = 200.0
    """Uncompressed / compressed size of one member (or of a compressed tar stream)."""
    max_metadata_bytes: int = 64 * 1024**2
    """One JSON member of a .pt2 (the graph, a weights config), parsed whole into memory."""
    max_input_elements: int = 4 * 1024**2
    """Elements of one input sample, e.g. 3 x 1024 x 1024 is 3145728."""
    max_model_parameters: int = 150_000_000
    """Parameters of a built-in architecture, counted before it is built."""
    max_image_pixels: int = 4096 * 4096
    """Pixels of one image of an image-folder dataset, read from its header."""
    max_decoded_dataset_bytes: int = 4 * 1024**3
    """The decoded samples of a dataset (float32) held in memory."""


COMPRESSION_RATIO_FLOOR_BYTES = 1024**2
"""Members smaller than this are never refused for their ratio: tiny files (a config of
zeros, an empty bias) compress arbitrarily well and cannot hurt."""


def check(
    limits: IntakeLimits,
    name: str,
    value: float,
    what: str,
    error: type[CompressionError] = LimitExceeded,
) -> None:
    """Refuse ``value`` (described by ``what``) when it exceeds the limit called ``name``."""
    limit = getattr(limits, name)
    if value > limit:
        raise error(
            f"{what} is {value:,}, above the limit {name} = {limit:,}; "
            "upload something smaller or ask the operator to raise the limit"
        )


def check_ratio(max_ratio: float, expanded: int, compressed: int, what: str) -> None:
    """Refuse a member that inflates more than ``max_ratio`` (``max_compression_ratio``) times."""
    if expanded <= COMPRESSION_RATIO_FLOOR_BYTES:
        return
    ratio = expanded / max(compressed, 1)
    if ratio > max_ratio:
        raise UnsafeArchive(
            f"{what} inflates {ratio:,.0f} times ({compressed:,} to {expanded:,} bytes), above "
            f"the limit max_compression_ratio = {max_ratio:,}; this is how "
            "decompression bombs look"
        )


DEFAULT_LIMITS = IntakeLimits()
