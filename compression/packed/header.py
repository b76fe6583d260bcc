"""The JSON header of a packed file: where every section lies and how each layer is coded.

A pydantic schema, so a reader gets one validation step (types, required fields, no unknown
keys) before trusting any offset or length taken from a file.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

LayerKind = Literal["dense", "shared", "quantized"]
"""dense: float32 weights (pruned only); shared: codebook + indices; quantized: integers."""

Role = Literal["mask", "codebook", "scales", "codes", "values"]
"""What a layer section holds: the keep bitmap, float32 codebook or per-channel scales,
bit-packed codes, or float32 weight values."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Section(Strict):
    """A byte range of the payload; ``offset`` counts from the first byte after the header."""

    name: str
    offset: int = Field(ge=0)
    length: int = Field(ge=0)


class LayerEntry(Strict):
    """How one layer's weight is stored; ``sections`` maps each role to a section name."""

    name: str
    kind: LayerKind
    shape: tuple[NonNegativeInt, ...]
    dtype: Literal["float32"]
    count: int = Field(ge=0, description="weights in the layer: the product of shape")
    kept: int = Field(ge=0, description="weights stored: count, or the mask's ones if sparse")
    sparse: bool = Field(description="a 1-bit mask section says which weights are stored")
    bits: int | None = Field(None, ge=1, le=16, description="bits per code; None for dense")
    codebook_size: int | None = Field(None, ge=1, le=1 << 16)
    sections: dict[Role, str]


class Header(Strict):
    sections: list[Section]
    layers: list[LayerEntry]
