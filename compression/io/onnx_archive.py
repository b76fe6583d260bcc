"""ONNX with external data, uploaded as one ``.zip`` or ``.tar`` of the model and its data files.

``torch.onnx.export(..., dynamo=True)`` (the default since torch 2.9) writes ``model.onnx`` and
``model.onnx.data``. Tensors name their data file by a path relative to the ``.onnx`` file, and
that path comes from the user: it is resolved strictly inside the archive, by name, with the
dataset archives' safety rules (no absolute paths, no ``..``, no links, bounded expansion). No
file is ever opened on disk by a name taken from the model.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Iterable
from pathlib import PurePosixPath

import onnx

from compression.data.members import read_files, safe_name
from compression.errors import InvalidModel, UnsafeArchive, UnsupportedFormat, is_out_of_memory
from compression.intake_limits import IntakeLimits
from compression.io.onnx_offload import Weights, take

MAX_ARCHIVE_MEMBERS = 1000
"""A model archive holds one .onnx file and its data files; anything near this is not one."""

HOW_TO_PACK = (
    "pack the .onnx file and its data files into one archive, e.g. "
    "`zip model.zip model.onnx model.onnx.data` or `tar cf model.tar model.onnx model.onnx.data`"
)


def _wanted(name: str) -> bool:
    path = PurePosixPath(name)
    return not any(part.startswith(".") or part == "__MACOSX" for part in path.parts)


def read_onnx_archive(path: str, limits: IntakeLimits, weights: Weights) -> onnx.ModelProto:
    """The one ``.onnx`` model of the archive; the value of every external tensor goes into
    ``weights`` (views into the archive's data files, see :mod:`onnx_offload`)."""
    members = min(MAX_ARCHIVE_MEMBERS, limits.max_archive_members)
    bounded = dataclasses.replace(limits, max_archive_members=members)
    files = dict(read_files(path, _wanted, bounded))
    models = sorted(name for name in files if name.lower().endswith(".onnx"))
    if len(models) != 1:
        found = ", ".join(models) if models else "none"
        raise InvalidModel(
            f"a model archive must hold exactly one .onnx file (found {found}); {HOW_TO_PACK}"
        )
    try:
        proto = onnx.load_model_from_string(files.pop(models[0]))
    except Exception as exc:
        if is_out_of_memory(exc):  # the task's memory limit, not a bad file
            raise
        raise UnsupportedFormat(f"{models[0]} in the archive is not a readable ONNX model") from exc
    folder = posixpath.dirname(models[0])
    for tensor in external_tensors(proto):
        _fill(tensor, folder, files, weights)
    return proto


def external_tensors(proto: onnx.ModelProto) -> Iterable[onnx.TensorProto]:
    """Initializers of the main graph kept in external files (the exporters put nothing else
    there; a Constant with external data is refused by onnx2torch as it stands)."""
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield tensor


def _fill(tensor: onnx.TensorProto, folder: str, files: dict[str, bytes], weights: Weights) -> None:
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    try:
        name = safe_name(posixpath.join(folder, location.replace("\\", "/")))
    except UnsafeArchive as exc:
        raise UnsafeArchive(
            f"tensor {tensor.name!r} points at {location!r}, outside the archive; data files "
            "must sit next to the .onnx file"
        ) from exc
    blob = files.get(name)
    if blob is None:
        raise InvalidModel(
            f"tensor {tensor.name!r} keeps its data in {location!r}, which the archive does not "
            f"hold; {HOW_TO_PACK}"
        )
    offset = int(info.get("offset", 0))
    length = int(info["length"]) if "length" in info else len(blob) - offset
    if offset < 0 or length < 0 or offset + length > len(blob):
        raise InvalidModel(
            f"tensor {tensor.name!r} reads bytes {offset}..{offset + length} of {location!r}, "
            f"which holds {len(blob)} bytes; the data file does not belong to this model"
        )
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.DEFAULT
    take(tensor, memoryview(blob)[offset : offset + length], weights)
