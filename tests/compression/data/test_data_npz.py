from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from compression.data import fit_to_model, load_npz
from compression.errors import InvalidDataset, ShapeMismatch, UnsafeArchive, UnsupportedFormat
from compression.intake_limits import IntakeLimits


class MkdirOnUnpickle:
    """A pickle payload: unpickling it creates a folder, a visible side effect."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


def test_round_trip_keeps_values_and_sets_dtypes(make_npz):
    x = np.arange(24, dtype=np.uint8).reshape(2, 3, 2, 2)
    y = np.array([1, 0], dtype=np.int32)
    dataset = load_npz(make_npz(x=x, y=y))
    assert dataset.x.dtype == torch.uint8  # images: uint8 until a batch is formed
    assert dataset.y.dtype == torch.int64
    assert torch.equal(dataset.x, torch.arange(24, dtype=torch.uint8).reshape(2, 3, 2, 2))
    expected = torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2) / 255
    assert torch.equal(dataset.samples(slice(None)), expected)
    assert dataset.y.tolist() == [1, 0]
    assert dataset.classes == ("0", "1")
    assert dataset.sample_shape == (3, 2, 2)


def test_class_names_and_features_from_file_object(make_npz):
    x = np.array([[0.5, -1.0], [2.0, 3.25], [1.0, 1.0]], dtype=np.float64)
    path = make_npz(x=x, y=np.array([2, 0, 1]), classes=np.array(["cat", "dog", "emu"]))
    with open(path, "rb") as fh:
        dataset = load_npz(fh)
    assert dataset.x.tolist() == [[0.5, -1.0], [2.0, 3.25], [1.0, 1.0]]
    assert dataset.y.tolist() == [2, 0, 1]
    assert dataset.classes == ("cat", "dog", "emu")


def test_three_dimensional_x_is_kept_and_fits_either_model(make_npz):
    x = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    dataset = load_npz(make_npz(x=x, y=np.array([0, 1])))
    assert dataset.x.shape == (2, 2, 2)
    as_image = fit_to_model(dataset, (1, 2, 2), num_classes=2)
    assert as_image.x.shape == (2, 1, 2, 2)
    assert torch.equal(as_image.x[:, 0], torch.from_numpy(x))
    assert fit_to_model(dataset, (2, 2), num_classes=2) is dataset
    with pytest.raises(ShapeMismatch):
        fit_to_model(dataset, (4, 1), num_classes=2)


def test_object_array_is_refused_without_running_its_pickle(make_npz, tmp_path):
    marker = tmp_path / "payload_ran"
    evil = np.array([MkdirOnUnpickle(marker)], dtype=object)
    path = make_npz(x=evil, y=np.array([0]))
    with pytest.raises(UnsupportedFormat) as caught:
        load_npz(path)
    assert caught.value.code == "unsupported_format"
    assert "'x'" in caught.value.message
    assert not marker.exists()
    # Control: the payload is live, so the assertion above is not vacuous.
    np.load(path, allow_pickle=True)["x"]
    assert marker.is_dir()


@pytest.mark.parametrize(
    ("arrays", "fragment"),
    [
        ({"x": np.zeros((2, 3))}, "no array 'y'"),
        ({"y": np.zeros(2, dtype=np.int64)}, "no array 'x'"),
        ({"x": np.zeros((2, 3)), "y": np.array([0.0, 1.0])}, "integer class labels"),
        ({"x": np.zeros((2, 3)), "y": np.array([0, -1])}, "found -1"),
        ({"x": np.array([[0.0, np.nan]]), "y": np.array([0])}, "1 NaN and 0 infinite"),
        ({"x": np.array([[np.inf, -np.inf]]), "y": np.array([0])}, "0 NaN and 2 infinite"),
        ({"x": np.array([[1e300]]), "y": np.array([0])}, "0 NaN and 1 infinite"),
        ({"x": np.zeros((3, 2)), "y": np.array([0, 1])}, "3 samples but 2 labels"),
        ({"x": np.zeros((0, 2)), "y": np.zeros(0, dtype=np.int64)}, "no samples"),
        ({"x": np.zeros((2, 1, 1, 1, 1)), "y": np.array([0, 1])}, "got (2, 1, 1, 1, 1)"),
        ({"x": np.array([["a"], ["b"]]), "y": np.array([0, 1])}, "integers or floats"),
        ({"x": np.zeros((2, 2)), "y": np.array([[0], [1]])}, "shape (N,)"),
        (
            {"x": np.zeros((2, 2)), "y": np.array([0, 2]), "classes": np.array(["a", "b"])},
            "Label 2 has no class name",
        ),
        (
            {"x": np.zeros((1, 2)), "y": np.array([0]), "classes": np.array([1, 2])},
            "classes must be a 1-D array of strings",
        ),
    ],
    ids=[
        "missing-y",
        "missing-x",
        "float-labels",
        "negative-labels",
        "nan",
        "inf",
        "overflows-float32",
        "wrong-y-length",
        "empty",
        "five-dims",
        "string-x",
        "2d-y",
        "label-without-name",
        "numeric-classes",
    ],
)
def test_bad_arrays_are_invalid_datasets(make_npz, arrays, fragment):
    with pytest.raises(InvalidDataset) as caught:
        load_npz(make_npz(**arrays))
    assert caught.value.code == "invalid_dataset"
    assert fragment in caught.value.message


def test_text_file_is_not_an_npz(tmp_path):
    path = tmp_path / "data.npz"
    path.write_text("x,y\n1,0\n")
    with pytest.raises(UnsupportedFormat, match=r"not an \.npz") as caught:
        load_npz(path)
    assert caught.value.code == "unsupported_format"


def test_plain_pickle_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "data.npz"
    path.write_bytes(pickle.dumps({"x": MkdirOnUnpickle(marker)}))
    with pytest.raises(UnsupportedFormat, match=r"not an \.npz"):
        load_npz(path)
    assert not marker.exists()


def test_single_npy_array_is_not_an_npz(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(UnsupportedFormat, match=r"single \.npy array"):
        load_npz(path)


def test_zip_member_that_is_not_npy_is_refused(tmp_path):
    path = tmp_path / "data.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", np.lib.format.MAGIC_PREFIX + b"garbage")
        archive.writestr("y", b"raw bytes")
    with pytest.raises(UnsupportedFormat, match="Array 'x' cannot be read safely"):
        load_npz(path)


def test_npz_expanding_beyond_the_limit_is_unsafe(make_npz):
    path = make_npz(x=np.zeros((100, 10)), y=np.zeros(100, dtype=np.int64))
    with pytest.raises(UnsafeArchive, match="above the 1000 byte limit") as caught:
        load_npz(path, IntakeLimits(max_archive_expanded_bytes=1000))
    assert caught.value.code == "unsafe_archive"


def test_header_claiming_a_huge_array_is_unsafe(tmp_path):
    member = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**13,)}
    np.lib.format.write_array_header_1_0(member, header)
    member.write(np.zeros(4, dtype=np.float32).tobytes())
    path = tmp_path / "data.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", member.getvalue())
    with pytest.raises(UnsafeArchive, match="far larger than the file holds"):
        load_npz(path)
