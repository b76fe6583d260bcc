"""Write a compressed model as one packed file and account for every byte of it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from compression.encoding import LayerEncoding
from compression.errors import ExportFailed
from compression.packed.architecture import write_architecture
from compression.packed.bitpack import packed_size
from compression.packed.container import PREFIX, assemble
from compression.packed.graph_architecture import Inexpressible, write_graph
from compression.packed.header import Architecture, Header, LayerKind, Stream, section_order
from compression.packed.layer_codec import encode_layer
from compression.packed.stream_coding import encode_bytes


@dataclass(frozen=True)
class LayerReport:
    kind: LayerKind
    sparse: bool
    bits: int | None
    payload_bytes: int
    """All of the layer's sections: positions, codebook or scales, codes or values."""
    fp32_bytes: int
    """The same weight as plain float32."""
    gap_bits: int | None = None
    """Bits per position code when sparse."""


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
    architecture: str = "graph"
    """How the architecture is stored: the compact ``graph`` or a ``pt2`` archive."""
    plain_bytes: int = 0
    """The same file with every section stored raw (no deflate or LZMA): what the codes take
    at their bit widths, to show what entropy coding gained."""

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
    entropy: bool = True,
    progress: Callable[[float], None] | None = None,
) -> PackedReport:
    """Pack ``module`` whose named layers carry encodings and/or keep-masks; ``example`` is an
    input batch of at least 2 samples for torch.export (only its shape is used). ``entropy``
    off stores every section plain (to see what entropy coding gains). ``progress(fraction)``
    hears of each layer coded, by weights (coding is most of the time; one wide layer can
    take seconds)."""
    names = _packed_layers(module, encodings, masks)
    sizes = [_weight(module, name).numel() for name in names]
    total, done = max(sum(sizes), 1), 0
    coded = []
    for name, size in zip(names, sizes, strict=True):
        weight = _weight(module, name)
        coded.append(encode_layer(name, weight, encodings.get(name), masks.get(name), entropy))
        done += size
        if progress is not None:
            progress(0.9 * done / total)  # the architecture and the file follow
    architecture, tensors, front, plain_tensors = _architecture(module, example, names, entropy)
    header = Header(
        architecture=architecture, tensors=tensors, layers=[entry for entry, _ in coded]
    )
    payloads = front + [payload for _, layer_payloads in coded for payload in layer_payloads]
    data = assemble(header, payloads)
    del payloads
    Path(path).write_bytes(data)
    if progress is not None:
        progress(1.0)
    section_bytes = {name: stream.length for name, stream in section_order(header)}
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
                payload_bytes=sum(len(payload) for payload in layer_payloads),
                fp32_bytes=4 * entry.count,
                gap_bits=entry.positions.bits if entry.positions else None,
            )
            for entry, layer_payloads in coded
        },
        fp32_bytes=4 * sum(tensor.numel() for tensor in _float_tensors(module)),
        architecture=architecture.format,
        plain_bytes=len(data) - sum(section_bytes.values()) + _plain_size(header, plain_tensors),
    )


def _architecture(
    module: nn.Module, example: torch.Tensor, packed: list[str], entropy: bool
) -> tuple[Architecture, Stream | None, list[bytes], int]:
    """The compact graph and its tensors when the model fits that form, else a pt2 archive;
    returns the header entries, their payloads and the tensor section's plain length."""
    try:
        text, tensors = write_graph(module, example, packed)
    except Inexpressible:
        archive = write_architecture(module, example, packed)
        stream = Stream(length=len(archive))
        return Architecture(format="pt2", size=len(archive), stream=stream), None, [archive], 0
    stream, payload = encode_bytes(text)  # JSON: always worth deflating
    tensor_stream, tensor_payload = encode_bytes(tensors, entropy)
    architecture = Architecture(format="graph", size=len(text), stream=stream)
    return architecture, tensor_stream, [payload, tensor_payload], len(tensors)


def _plain_size(header: Header, plain_tensors: int) -> int:
    """The sections' bytes with every stream stored raw (the architecture as written)."""
    total = header.architecture.stream.length + plain_tensors
    for entry in header.layers:
        if entry.positions is not None:
            total += packed_size(entry.positions.count, entry.positions.bits)
        total += 4 * (entry.codebook_size or 0) + 4 * entry.shape[0] * (entry.kind == "quantized")
        total += 4 * entry.kept if entry.bits is None else packed_size(entry.kept, entry.bits)
    return total


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
