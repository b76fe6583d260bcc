"""Load a ``torch.export`` archive (.pt2) without running any code from the file.

``torch.export.load`` unpickles some members with ``weights_only=False`` (pickled weights,
constants, sample inputs, a fallback) and would load AOTInductor shared libraries. Before
handing the archive to torch we refuse compiled code and opaque objects, and require every
pickled member to load under ``weights_only=True``; a stream that the restricted unpickler
accepts only references tensor-rebuilding functions, so torch's own load of it is harmless.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import PurePosixPath

import torch
from torch import fx

from compression.errors import CompressionError, InvalidModel, UnsupportedFormat
from compression.io.fx_flatten import normalize_flattens
from compression.io.fx_lift import lift_modules
from compression.io.loaded import LoadedModel
from compression.io.probe import probe_classifier

MAX_EXPANDED_BYTES = 8 * 1024**3
"""An archive that expands beyond this is refused before anything is read (zip bombs)."""


def check_archive_safety(archive: zipfile.ZipFile) -> None:
    """Refuse anything in a .pt2 that torch would execute or unpickle unrestricted, and
    archives that would expand beyond MAX_EXPANDED_BYTES."""
    expanded = sum(info.file_size for info in archive.infolist())
    if expanded > MAX_EXPANDED_BYTES:
        raise InvalidModel(
            f"the archive would expand to {expanded} bytes, more than {MAX_EXPANDED_BYTES}"
        )
    for name in archive.namelist():
        path = PurePosixPath(name)
        if "aotinductor" in path.parts:
            raise InvalidModel(
                f".pt2 member {name!r} is compiled AOTInductor code, which is never loaded; "
                "upload a plain torch.export.save() archive"
            )
        if path.name.startswith(("custom_obj_", "opaque_obj_")):
            raise InvalidModel(
                f".pt2 member {name!r} is an opaque Python object that would have to be "
                "unpickled; export a model whose constants are plain tensors"
            )
    for name in _pickled_members(archive):
        try:
            torch.load(io.BytesIO(archive.read(name)), weights_only=True)
        except Exception as exc:
            raise InvalidModel(
                f".pt2 member {name!r} is a pickle that holds more than plain tensors; "
                "it was not loaded"
            ) from exc


def _pickled_members(archive: zipfile.ZipFile) -> Iterator[str]:
    """Members that torch.export.load would hand to an unpickler."""
    for name in archive.namelist():
        path = PurePosixPath(name)
        folder = path.parent.name
        if folder == "sample_inputs" or (
            folder in ("weights", "constants") and path.suffix == ".pt"
        ):
            yield name
        elif folder in ("weights", "constants") and path.name.endswith("_config.json"):
            config = json.loads(archive.read(name))
            for entry in config.get("config", {}).values():
                if entry.get("use_pickle"):
                    yield str(path.parent / entry["path_name"])


def _input_shape(gm: fx.GraphModule) -> tuple[int, ...]:
    placeholders = [node for node in gm.graph.nodes if node.op == "placeholder"]
    if len(placeholders) != 1:
        raise InvalidModel(
            f"the exported model takes {len(placeholders)} inputs; exactly one input tensor "
            "(a batch of samples) is supported"
        )
    value = placeholders[0].meta.get("val")
    if value is None:
        raise InvalidModel("the exported graph does not record its input shape")
    dims = tuple(value.shape[1:])
    if not all(isinstance(dim, int) for dim in dims):
        raise InvalidModel(
            "only the batch dimension may be dynamic; export with fixed sample dimensions"
        )
    return dims


def load_exported(
    source: str | bytes, what: str, bad_zip: type[CompressionError] = UnsupportedFormat
) -> fx.GraphModule:
    """A vetted torch.export archive as a plain GraphModule with its layers lifted into
    modules; ``what`` names the archive in error messages."""

    def stream() -> str | io.BytesIO:
        return io.BytesIO(source) if isinstance(source, bytes) else source

    try:
        with zipfile.ZipFile(stream()) as archive:
            check_archive_safety(archive)
    except zipfile.BadZipFile as exc:
        raise bad_zip(f"{what} is not a valid zip archive") from exc
    try:
        gm = torch.export.load(stream()).module()
    except Exception as exc:
        raise InvalidModel(f"torch.export could not load {what}: {exc}") from exc
    return fx.GraphModule(lift_modules(gm), gm.graph)  # a plain GraphModule: eval() works


def load_pt2(path: str) -> LoadedModel:
    """Load an ExportedProgram archive and lift it into a module-based graph."""
    gm = load_exported(path, "the .pt2 file")
    input_shape = _input_shape(gm)
    loaded = LoadedModel(gm.eval(), input_shape, probe_classifier(gm, input_shape), "pt2")
    normalize_flattens(gm, loaded.example_input())
    return loaded
