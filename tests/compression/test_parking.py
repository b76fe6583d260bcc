"""Parking: a module's state moves into a file mapping, values and objects unchanged."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import torch

from compression import Spec, compress
from compression.data import Dataset
from compression.io import LoadedModel
from compression.parking import PARKED, park


def _mapped_file(pointer: int) -> str:
    """The path of the mapping of this process that holds address ``pointer`` ("" if none)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(bound, 16) for bound in fields[0].split("-"))
        if start <= pointer < end:
            return fields[5] if len(fields) == 6 else ""
    raise AssertionError(f"{pointer:#x} is in no mapping")


def _tied_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Flatten(),
        torch.nn.Linear(8 * 6 * 6, 8 * 6 * 6), torch.nn.Linear(8 * 6 * 6, 8 * 6 * 6),
    )  # fmt: skip
    model[4].weight = model[3].weight
    model[1].running_mean.uniform_()  # buffers travel too
    model[1].register_buffer("scratch", torch.arange(5.0), persistent=False)  # not in state_dict
    return model.eval()


def test_a_parked_module_keeps_its_objects_and_values_in_a_file_mapping(tmp_path: Path) -> None:
    model = _tied_model()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
    objects = [*model.parameters(), *model.buffers()]
    values = [tensor.detach().clone() for tensor in objects]
    assert park(model, tmp_path)
    assert [*model.parameters(), *model.buffers()] == objects  # the same objects
    assert model[4].weight is model[3].weight  # still tied
    assert all(parameter.requires_grad for parameter in model.parameters())
    for tensor, value in zip(objects, values, strict=True):
        assert torch.equal(tensor, value)
        if tensor.numel():
            assert _mapped_file(tensor.data_ptr()).endswith(f"{tmp_path}/{PARKED}")
    shutil.rmtree(tmp_path)  # a mapped file outlives its name
    with torch.no_grad():
        assert torch.equal(model(x), expected)


def test_a_module_without_state_is_not_parked(tmp_path: Path) -> None:
    assert not park(torch.nn.ReLU(), tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_job_delivering_onnx_parks_the_callers_model_for_its_report(
    trained_digits_cnn: LoadedModel, digits: Dataset, tmp_path: Path
) -> None:
    """Parked before the export, unchanged in value after: the report reads it later."""
    model = copy.deepcopy(trained_digits_cnn)
    x = digits.x[:16]
    with torch.no_grad():
        expected = model.module(x)
    spec = Spec.model_validate(
        {"steps": [{"type": "prune_filters", "ratio": 0.25}], "evaluation": {"latency_repeats": 3}}
    )
    compress(model, digits, spec, onnx_dir=tmp_path)
    for parameter in model.module.parameters():
        assert _mapped_file(parameter.data_ptr()).endswith(PARKED + " (deleted)")
    with torch.no_grad():
        assert torch.equal(model.module(x), expected)


def test_a_park_that_cannot_write_leaves_the_module_as_it_was(tmp_path: Path) -> None:
    model = _tied_model()
    objects = [*model.parameters(), *model.buffers()]
    pointers = [tensor.data_ptr() for tensor in objects]
    assert not park(model, tmp_path / "missing folder")  # torch.save cannot open the file
    assert [tensor.data_ptr() for tensor in objects] == pointers
