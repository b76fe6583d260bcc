"""Every case of the hostile corpus, straight through the engine's intake: the expected
code, no payload run, and nothing allocated beyond the default limits (each case declares
gigabytes; the process would not get through the suite if one were allocated)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch

from compression.data import load_dataset
from compression.errors import CompressionError
from compression.io import load_model
from tests.hostile.conftest import corpus, genuine_pt2, marker
from tests.hostile.corpus import SAMPLE_INPUTS, WEIGHTS_CONFIG


@pytest.mark.parametrize("name", list(corpus()))
def test_hostile_file_is_refused_with_its_code(name: str, tmp_path: Path) -> None:
    case = corpus()[name]
    path = tmp_path / case.filename
    path.write_bytes(case.content)
    with pytest.raises(CompressionError) as refused:
        if case.kind == "models":
            args = case.fields.get("architecture_args")
            load_model(
                str(path),
                architecture=case.fields.get("architecture"),
                architecture_args=__import__("json").loads(args) if args else None,
            )
        else:
            load_dataset(str(path), (1, 4, 4))
    assert refused.value.code == case.code, refused.value.message
    assert not marker().exists(), "a payload ran"


@pytest.mark.parametrize(
    ("name", "member"),
    [
        ("pt2 with a repeated sample_inputs member, hostile copy first", SAMPLE_INPUTS),
        ("pt2 with a repeated weights config whose first copy says use_pickle", WEIGHTS_CONFIG),
    ],
)
def test_repeated_members_fool_one_reader_but_not_the_vetting(
    name: str, member: str, tmp_path: Path
) -> None:
    """The attack is real: torch's reader gets the hostile copy, zipfile the genuine one."""
    path = tmp_path / "dup.pt2"
    path.write_bytes(corpus()[name].content)
    genuine = zipfile.ZipFile(io.BytesIO(genuine_pt2()))
    expected = genuine.read(next(n for n in genuine.namelist() if n.endswith(member)))
    root = genuine.namelist()[0].split("/")[0]
    assert zipfile.ZipFile(path).read(f"{root}/{member}") == expected
    assert torch._C.PyTorchFileReader(str(path)).get_record(member) != expected


def test_the_genuine_archive_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "genuine.pt2"
    path.write_bytes(genuine_pt2())
    loaded = load_model(str(path))
    assert loaded.input_shape == (1, 8, 8) and loaded.num_classes == 3
