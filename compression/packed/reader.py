"""Read a packed file back into a runnable model, bit-exact with the one that was packed."""

from __future__ import annotations

from pathlib import Path

from torch import fx

from compression.errors import InvalidModel
from compression.packed.architecture import read_architecture
from compression.packed.container import parse
from compression.packed.graph_architecture import read_graph, tensor_bytes_declared
from compression.packed.header import Header
from compression.packed.layer_codec import decode_layer
from compression.packed.stream_coding import decode_bytes

MAX_DECODED_BYTES = 8 * 1024**3
"""A file whose header promises more decoded data than this is refused before decoding
(compressed sections could otherwise expand far beyond the file's size)."""


def load_packed(path: str | Path) -> fx.GraphModule:
    """Validate the file, decode every packed layer, and build the architecture around them.

    Raises ``InvalidModel`` on a truncated, corrupt or unsafe file; nothing in it is unpickled
    beyond plain tensors (and only for a ``pt2`` architecture, after vetting).
    """
    header, sections = parse(Path(path).read_bytes())
    names = [entry.name for entry in header.layers]
    if len(set(names)) != len(names):
        raise InvalidModel("packed file describes a layer twice")
    _check_declared_size(header)
    payloads = [data for _, data in sections]
    architecture = header.architecture
    text = decode_bytes(
        architecture.stream, payloads.pop(0), architecture.size, "architecture"
    )  # JSON or zip
    tensors = None
    if (architecture.format == "graph") != (header.tensors is not None):
        raise InvalidModel("packed file has a tensor section exactly when its graph needs one")
    if header.tensors is not None:
        declared = tensor_bytes_declared(text)
        if declared > MAX_DECODED_BYTES:
            raise InvalidModel(f"packed tensors would decode to {declared} bytes")
        tensors = decode_bytes(header.tensors, payloads.pop(0), declared, "tensors")
    weights = {}
    for entry in header.layers:
        count = len(entry.streams) + (entry.positions is not None)
        weights[entry.name] = decode_layer(entry, payloads[:count])
        del payloads[:count]
    if tensors is not None:
        return read_graph(text, tensors, weights)
    return read_architecture(text, weights).eval()


def _check_declared_size(header: Header) -> None:
    """Refuse a header that promises more than MAX_DECODED_BYTES of decoded data."""
    total = header.architecture.size
    for entry in header.layers:
        total += 8 * entry.count + (entry.positions.count if entry.positions else 0)
    if total > MAX_DECODED_BYTES:
        raise InvalidModel(
            f"packed file would decode to about {total} bytes, more than {MAX_DECODED_BYTES}"
        )
