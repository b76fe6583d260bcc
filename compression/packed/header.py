"""The header of a packed file: how the architecture and each layer are coded, and how long
each of their sections is.

A pydantic schema, so a reader gets one validation step (types, required fields, no unknown
keys) before trusting any length taken from a file. Sections carry no offsets: they follow
each other in the order the header names them (``section_order``), so a reader can only
find them where the writer put them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

LayerKind = Literal["dense", "shared", "quantized"]
"""dense: float32 weights (pruned only); shared: codebook + indices; quantized: integers."""

Role = Literal["codebook", "scales", "codes", "values"]
"""What a layer section holds besides its positions: the float32 codebook or per-channel
scales, the codes, or float32 weight values."""

ROLES: tuple[Role, ...] = ("codebook", "scales", "codes", "values")
"""The order of a layer's sections in the file (after its positions, when sparse)."""

Coding = Literal["raw", "deflate", "lzma"]
Packing = Literal["bits", "bytes"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stream(Strict):
    """One section: ``length`` bytes in the file, stored as ``coding`` says; code streams are
    bit-packed or, before compression, one code per byte (``packing``)."""

    length: int = Field(ge=0)
    coding: Coding = "raw"
    packing: Packing = "bits"


class Positions(Strict):
    """Where a sparse layer's kept weights are: a stream of ``count`` gap codes of ``bits``
    bits (docs/packed-format.md, relative index)."""

    bits: int = Field(ge=1, le=8)
    count: int = Field(ge=0)
    stream: Stream


class LayerEntry(Strict):
    """How one layer's weight (``<name>.weight``, float32) is stored."""

    name: str
    kind: LayerKind
    shape: tuple[NonNegativeInt, ...]
    kept: int = Field(ge=0, description="weights stored: all of them unless positions are given")
    bits: int | None = Field(None, ge=1, le=16, description="bits per code; None for dense")
    codebook_size: int | None = Field(None, ge=1, le=1 << 16)
    positions: Positions | None = Field(None, description="present exactly when stored sparse")
    streams: dict[Role, Stream]

    @property
    def count(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count

    @property
    def sparse(self) -> bool:
        return self.positions is not None


class Architecture(Strict):
    """``graph``: the compact JSON graph (its own tensors follow in the ``tensors`` section);
    ``pt2``: a deflated torch.export archive that carries its tensors itself."""

    format: Literal["graph", "pt2"]
    size: int = Field(ge=0, description="bytes once decoded")
    stream: Stream


class Header(Strict):
    architecture: Architecture
    tensors: Stream | None = None
    layers: list[LayerEntry]


def section_order(header: Header) -> list[tuple[str, Stream]]:
    """Every section as (name, stream), in file order."""
    sections = [("architecture", header.architecture.stream)]
    if header.tensors is not None:
        sections.append(("tensors", header.tensors))
    for layer in header.layers:
        if layer.positions is not None:
            sections.append((f"{layer.name}.positions", layer.positions.stream))
        sections += [
            (f"{layer.name}.{role}", layer.streams[role]) for role in ROLES if role in layer.streams
        ]
    return sections
