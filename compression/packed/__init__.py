"""The packed model file: a compressed model at its real size on disk (a 4-bit layer takes 4
bits per weight), readable back bit-exact. The byte layout is in docs/packed-format.md."""

from compression.packed.bitpack import pack_bits, unpack_bits
from compression.packed.reader import load_packed
from compression.packed.writer import LayerReport, PackedReport, save_packed

__all__ = [
    "LayerReport",
    "PackedReport",
    "load_packed",
    "pack_bits",
    "save_packed",
    "unpack_bits",
]
