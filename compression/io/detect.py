"""Tell model formats apart by content, never by file name, and refuse the unsafe ones."""

from __future__ import annotations

import struct
import zipfile
from enum import StrEnum
from pathlib import PurePosixPath

from compression.data.sniff import sniff
from compression.errors import UnsupportedFormat

ACCEPTED = (
    "accepted formats: a torch.export archive (.pt2, torch.export.save), an ONNX file "
    "(.onnx, or a .zip/.tar of the .onnx with its external data files), or safetensors "
    "weights with the name of a built-in architecture"
)


class ModelFormat(StrEnum):
    PT2 = "pt2"
    ONNX = "onnx"
    SAFETENSORS = "safetensors"


def detect_model_format(path: str) -> ModelFormat:
    """Classify the file; pickles and TorchScript are refused here, before anything loads."""
    with open(path, "rb") as handle:
        head = handle.read(16)
        handle.seek(0, 2)
        size = handle.tell()
    if head.startswith(b"PK\x03\x04"):
        return _zip_format(path)
    if sniff(path) is not None:
        return ModelFormat.ONNX  # a tar of an ONNX model and its external data files
    if head[:1] == b"\x80":
        raise UnsupportedFormat(_pickle_message("a pickled file (torch.save, legacy format)"))
    if _is_safetensors(head, size):
        return ModelFormat.SAFETENSORS
    return ModelFormat.ONNX


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (header_length,) = struct.unpack("<Q", head[:8])
    return 2 <= header_length <= size - 8 and head[8:9] == b"{"


def _zip_format(path: str) -> ModelFormat:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [PurePosixPath(name) for name in archive.namelist()]
    except zipfile.BadZipFile as exc:
        raise UnsupportedFormat(
            f"the file looks like a zip archive but is corrupt; {ACCEPTED}"
        ) from exc
    if any(name.parent.name == "models" and name.suffix == ".json" for name in names):
        return ModelFormat.PT2
    if any(name.suffix.lower() == ".onnx" for name in names):
        return ModelFormat.ONNX  # an ONNX model with its external data files
    if any("code" in name.parts or name.name == "constants.pkl" for name in names):
        raise UnsupportedFormat(
            "TorchScript archives are not accepted: loading one runs code from the file. "
            "Export with torch.export.save(torch.export.export(model, (example,)), 'model.pt2') "
            "or torch.onnx.export instead"
        )
    if any(name.name == "data.pkl" for name in names):
        raise UnsupportedFormat(_pickle_message("a pickled torch.save checkpoint"))
    raise UnsupportedFormat(f"unrecognised zip archive; {ACCEPTED}")


def _pickle_message(what: str) -> str:
    return (
        f"the file is {what}; pickles are never loaded because unpickling runs code. "
        "Upload the model as .pt2 (torch.export.save) or ONNX, or save the weights with "
        "safetensors.torch.save_file(model.state_dict(), 'model.safetensors') and name a "
        "built-in architecture"
    )
