"""The architecture section: a torch.export archive of the model with its packed weights
zeroed, deflated so those zeros cost almost nothing, and read back under pt2 intake's rules.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import fx, nn

from compression.errors import InvalidModel
from compression.intake_limits import DEFAULT_LIMITS
from compression.io.export import export_pt2
from compression.io.pt2_intake import load_exported

PACKED_LIMITS = dataclasses.replace(DEFAULT_LIMITS, max_compression_ratio=float("inf"))
"""The section deflates zeroed weights about a thousandfold by design, so inflation is not a
sign of a bomb here; its total size stays bounded."""


def write_architecture(module: nn.Module, example: torch.Tensor, zeroed: Iterable[str]) -> bytes:
    """Export a copy of ``module`` whose ``zeroed`` layers' weights are all zero."""
    blank = copy.deepcopy(module)
    with torch.no_grad():
        for name in zeroed:
            blank.get_submodule(name).weight.zero_()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "architecture.pt2"
        export_pt2(blank, torch.zeros_like(example), path)  # no user data in the file
        return _deflate(path.read_bytes())


def _deflate(archive: bytes) -> bytes:
    """Rewrite a zip with every member deflated (torch.export.save stores them raw).

    torch.export writes a random ``serialization_id``; it is replaced by a digest of the
    archive's other members, so the same model always packs to the same bytes (and size).
    """
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(archive)) as source,
        zipfile.ZipFile(out, "w") as target,
    ):
        members = [(info, source.read(info)) for info in source.infolist()]
        digest = hashlib.sha256()
        for info, data in members:
            if not info.filename.endswith(SERIALIZATION_ID):
                digest.update(info.filename.encode() + data)
        for info, data in members:
            if info.filename.endswith(SERIALIZATION_ID):
                data = digest.hexdigest()[: len(data)].encode()
            member = zipfile.ZipInfo(info.filename, info.date_time)
            target.writestr(member, data, zipfile.ZIP_DEFLATED, compresslevel=9)
    return out.getvalue()


SERIALIZATION_ID = ".data/serialization_id"


def read_architecture(archive: bytes, weights: Mapping[str, torch.Tensor]) -> fx.GraphModule:
    """Load the archive as ``load_pt2`` does (vetted, never unpickled unrestricted, layers
    lifted into modules) and put in the layers' weights."""
    gm = load_exported(
        archive, "the packed architecture section", PACKED_LIMITS, bad_zip=InvalidModel
    )
    with torch.no_grad():
        for name, weight in weights.items():
            _weight(gm, name, weight.shape).copy_(weight)
    return gm


def _weight(gm: fx.GraphModule, layer: str, shape: torch.Size) -> torch.Tensor:
    try:
        weight = gm.get_parameter(f"{layer}.weight")
    except AttributeError as exc:
        raise InvalidModel(f"the packed architecture has no layer {layer!r}") from exc
    if weight.shape != shape:
        raise InvalidModel(
            f"packed layer {layer!r} has shape {list(shape)}, but the architecture's weight "
            f"has shape {list(weight.shape)}"
        )
    return weight
