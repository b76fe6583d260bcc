"""Read a packed file back into a runnable model, bit-exact with the one that was packed."""

from __future__ import annotations

from pathlib import Path

from torch import fx

from compression.errors import InvalidModel
from compression.packed.architecture import read_architecture
from compression.packed.container import parse
from compression.packed.layer_codec import decode_layer
from compression.packed.writer import ARCHITECTURE


def load_packed(path: str | Path) -> fx.GraphModule:
    """Validate the file, decode every packed layer, and load the architecture around them.

    Raises ``InvalidModel`` on a truncated, corrupt or unsafe file; nothing in it is unpickled
    beyond plain tensors.
    """
    header, sections = parse(Path(path).read_bytes())
    if ARCHITECTURE not in sections:
        raise InvalidModel(f"packed file has no {ARCHITECTURE!r} section")
    names = [entry.name for entry in header.layers]
    if len(set(names)) != len(names):
        raise InvalidModel("packed file describes a layer twice")
    weights = {entry.name: decode_layer(entry, sections) for entry in header.layers}
    return read_architecture(sections[ARCHITECTURE], weights).eval()
