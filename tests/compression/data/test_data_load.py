from __future__ import annotations

import zipfile

import numpy as np
import pytest

from compression.data import load_dataset
from compression.errors import InvalidDataset, UnsupportedFormat


def test_npz_is_recognised_by_content(make_npz):
    path = make_npz(name="upload.bin", x=np.ones((2, 3)), y=np.array([0, 1]))
    dataset = load_dataset(path, (3,))
    assert dataset.x.tolist() == [[1.0, 1.0, 1.0]] * 2
    assert dataset.classes == ("0", "1")


def test_zip_with_only_x_is_read_as_npz(tmp_path):
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w") as archive, archive.open("x.npy", "w") as member:
        np.save(member, np.ones((2, 3)))
    with pytest.raises(InvalidDataset, match="no array 'y'"):
        load_dataset(path, (3,))


@pytest.mark.parametrize(("name", "mode"), [("upload", "w:gz"), ("upload.zip", "w:bz2")])
def test_tar_archives_are_recognised_by_content(make_tar, make_png, name, mode):
    path = make_tar({"cat/a.png": make_png((255, 0, 0)), "dog/b.png": make_png(0)}, name, mode)
    dataset = load_dataset(path, (3, 2, 2))
    assert dataset.classes == ("cat", "dog")
    assert dataset.x.shape == (2, 3, 2, 2)


def test_image_zip_is_recognised(make_zip, make_png):
    dataset = load_dataset(make_zip({"cat/a.png": make_png(0)}, "upload.npz"), (1, 3, 3))
    assert dataset.classes == ("cat",)
    assert dataset.x.shape == (1, 1, 3, 3)


@pytest.mark.parametrize("content", [b"x,y\n1,0\n", b"", b"PK\x03\x04broken"])
def test_unknown_or_damaged_files_list_accepted_formats(tmp_path, content):
    path = tmp_path / "upload.csv"
    path.write_bytes(content)
    with pytest.raises(UnsupportedFormat, match=r"\.npz .* \.tar\.gz") as caught:
        load_dataset(path, (3,))
    assert caught.value.code == "unsupported_format"
