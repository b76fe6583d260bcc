"""Write a compressed model as one packed file and account for every byte of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from compression.encoding import LayerEncoding
from compression.errors import ExportFailed
from compression.packed.architecture import write_architecture
from compression.packed.container import PREFIX, assemble
from compression.packed.header import LayerKind
from compression.packed.layer_codec import encode_layer

ARCHITECTURE = "architecture"
"""The section holding the deflated torch.export archive; always the first one."""


@dataclass(frozen=True)
class LayerReport:
    kind: LayerKind
    sparse: bool
    bits: int | None
    payload_bytes: int
    """All of the layer's sections: mask, codebook or scales, codes or values."""
    fp32_bytes: int
    """The same weight as plain float32."""


@dataclass(frozen=True)
class PackedReport:
    total_bytes: int
    """The file's size: prefix + header + every section."""
    prefix_bytes: int
    header_bytes: int
    section_bytes: dict[str, int]
    layers: dict[str, LayerReport]
    fp32_bytes: int
    """Every parameter and floating buffer of the model as float32: the uncompressed size."""

    @property
    def ratio(self) -> float:
        """How many times smaller than float32 the packed file is."""
        return self.fp32_bytes / self.total_bytes


def save_packed(
    module: nn.Module,
    example: torch.Tensor,
    path: str | Path,
    encodings: Mapping[str, LayerEncoding],
    masks: Mapping[str, torch.Tensor],
) -> PackedReport:
    """Pack ``module`` whose named layers carry encodings and/or keep-masks; ``example`` is an
    input batch of at least 2 samples for torch.export."""
    names = _packed_layers(module, encodings, masks)
    coded = [
        encode_layer(name, _weight(module, name), encodings.get(name), masks.get(name))
        for name in names
    ]
    sections = [(ARCHITECTURE, write_architecture(module, example, names))]
    for _, layer_sections in coded:
        sections.extend(layer_sections)
    data = assemble([entry for entry, _ in coded], sections)
    Path(path).write_bytes(data)
    section_bytes = {name: len(payload) for name, payload in sections}
    return PackedReport(
        total_bytes=len(data),
        prefix_bytes=PREFIX.size,
        header_bytes=len(data) - PREFIX.size - sum(section_bytes.values()),
        section_bytes=section_bytes,
        layers={
            entry.name: LayerReport(
                kind=entry.kind,
                sparse=entry.sparse,
                bits=entry.bits,
                payload_bytes=sum(section_bytes[section] for section in entry.sections.values()),
                fp32_bytes=4 * entry.count,
            )
            for entry, _ in coded
        },
        fp32_bytes=4 * sum(tensor.numel() for tensor in _float_tensors(module)),
    )


def _packed_layers(
    module: nn.Module, encodings: Mapping[str, LayerEncoding], masks: Mapping[str, torch.Tensor]
) -> list[str]:
    """Layers with an encoding or a mask, in the model's module order."""
    wanted = set(encodings) | set(masks)
    names = [name for name, _ in module.named_modules() if name in wanted]
    unknown = sorted(wanted - set(names))
    if unknown:
        raise ExportFailed(f"cannot pack unknown layers {unknown}: the model has no such modules")
    return names


def _weight(module: nn.Module, name: str) -> torch.Tensor:
    weight = getattr(module.get_submodule(name), "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise ExportFailed(f"cannot pack layer {name!r}: it has no weight tensor")
    return weight


def _float_tensors(module: nn.Module) -> list[torch.Tensor]:
    tensors = [*module.parameters(), *module.buffers()]
    return [tensor for tensor in tensors if tensor.is_floating_point()]
