"""Write a torch model the ways PyTorch users export one, to test and benchmark intake.

Intake must take the files people really have, not files we shaped for it: the legacy ONNX
exporter (``dynamo=False``, which shares equal tensors through ``Identity`` nodes), the
dynamo exporter (the default since torch 2.9, which writes ``model.onnx`` plus
``model.onnx.data``, uploaded together as one archive), and ``torch.export`` archives.
"""

from __future__ import annotations

import contextlib
import logging
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

USER_FORMATS = ("onnx_legacy", "onnx_external_zip", "pt2")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def write_legacy_onnx(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """``torch.onnx.export(..., dynamo=False)`` at opset 17 with a dynamic batch axis."""
    with _quiet():
        torch.onnx.export(
            module.eval(), (example,), str(path), dynamo=False, opset_version=17,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )  # fmt: skip
    return path


def write_dynamo_onnx(module: nn.Module, example: torch.Tensor, directory: Path) -> Path:
    """``torch.onnx.export(..., dynamo=True)``: ``model.onnx`` and ``model.onnx.data``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.onnx"
    batch = {0: torch.export.Dim("batch", min=1, max=1024)}
    with _quiet():
        program = torch.onnx.export(
            module.eval(), (example,), dynamo=True, dynamic_shapes=(batch,), external_data=True
        )
        program.save(str(path), external_data=True)
    return path


def pack_onnx_archive(onnx_path: Path, path: Path, kind: str = "zip") -> Path:
    """The files of an ONNX export's folder packed into one ``.zip`` or ``.tar``."""
    files = sorted(onnx_path.parent.iterdir())
    if kind == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            for file in files:
                archive.write(file, f"model/{file.name}")
    else:
        with tarfile.open(path, "w") as archive:
            for file in files:
                archive.add(file, f"model/{file.name}")
    return path


def write_dynamo_onnx_archive(
    module: nn.Module, example: torch.Tensor, path: Path, kind: str = "zip"
) -> Path:
    """The dynamo export's files packed into one archive, as a user uploads them."""
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = write_dynamo_onnx(module, example, Path(scratch) / "model")
        return pack_onnx_archive(onnx_path, path, kind)


def write_pt2(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """``torch.export.save(torch.export.export(...))`` with a dynamic batch axis."""
    batch = {0: torch.export.Dim("batch", min=1, max=1024)}
    program = torch.export.export(module.eval(), (example,), dynamic_shapes=(batch,))
    torch.export.save(program, str(path))
    return path


WRITERS: dict[str, tuple[str, Callable[[nn.Module, torch.Tensor, Path], Path]]] = {
    "onnx_legacy": (".onnx", write_legacy_onnx),
    "onnx_external_zip": (".zip", write_dynamo_onnx_archive),
    "pt2": (".pt2", write_pt2),
}


def write_as(user_format: str, module: nn.Module, example: torch.Tensor, stem: Path) -> Path:
    """Write ``module`` in one of :data:`USER_FORMATS` next to ``stem`` (suffix added)."""
    suffix, writer = WRITERS[user_format]
    return writer(module, example, stem.with_suffix(suffix))
