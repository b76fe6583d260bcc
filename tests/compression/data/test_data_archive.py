from __future__ import annotations

import io
import stat
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from compression.data import load_image_archive
from compression.errors import InvalidDataset, ShapeMismatch, UnsafeArchive, UnsupportedFormat
from compression.intake_limits import IntakeLimits

STEEL = (51, 102, 255)  # scales to exactly (0.2, 0.4, 1.0)
RED = (255, 0, 0)


@pytest.fixture
def members(make_png) -> dict[str, bytes]:
    """Two classes under one top folder, in unsorted order, with files to skip."""
    return {
        "pets/dog/z.png": make_png(STEEL, size=(5, 3)),
        "pets/cat/b.png": make_png(RED, size=(2, 2)),
        "pets/cat/a.PNG": make_png(RED, size=(7, 9)),
        "pets/README.md": b"# my pets",
        "pets/.DS_Store": b"\x00\x00\x00\x01Bud1",
        "__MACOSX/pets/cat/._a.png": b"\x00\x05\x16\x07",
    }


def expected_rgb() -> torch.Tensor:
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 2, 3)
    steel = (torch.tensor(STEEL, dtype=torch.float32) / 255).view(3, 1, 1).expand(3, 2, 3)
    return torch.stack([red, red, steel])


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "tar"])
def test_image_folders_decode_to_exact_tensors(members, make_zip, make_tar, kind):
    if kind == "zip":
        path = make_zip(members)
    else:
        path = make_tar(members, name=f"data.{kind}", mode="w:gz" if kind == "tar.gz" else "w")
    dataset = load_image_archive(path, (3, 2, 3))
    assert dataset.classes == ("cat", "dog")
    assert dataset.y.tolist() == [0, 0, 1]
    assert dataset.x.dtype == torch.uint8  # kept uint8 until a batch is formed
    assert dataset.x.shape == (3, 3, 2, 3)
    assert dataset.x[2, :, 0, 0].tolist() == list(STEEL)
    (x, y), *rest = list(dataset.batches(8))
    assert not rest and x.dtype == torch.float32 and y.tolist() == [0, 0, 1]
    assert torch.equal(x, expected_rgb())
    assert x[2, :, 0, 0].tolist() == pytest.approx([0.2, 0.4, 1.0], abs=1e-7)


def test_grayscale_without_top_folder(make_zip, make_png):
    path = make_zip(
        {
            "b/1.png": make_png(120, size=(3, 3), mode="L"),
            "a/1.png": make_png((0, 0, 0)),
            "a/2.jpg": _jpeg((255, 255, 255)),
        }
    )
    dataset = load_image_archive(path, (1, 4, 4))
    assert dataset.classes == ("a", "b")
    assert dataset.y.tolist() == [0, 0, 1]
    assert dataset.x.shape == (3, 1, 4, 4)
    x = dataset.samples(torch.arange(3))
    assert torch.equal(x[0], torch.zeros(1, 4, 4))
    assert torch.equal(x[1], torch.ones(1, 4, 4))
    assert torch.equal(x[2], torch.full((1, 4, 4), np.float32(120) / np.float32(255)))


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="JPEG", quality=100)
    return buffer.getvalue()


def test_dot_prefixed_tar_names_are_normalised_and_duplicates_refused(make_tar, make_png):
    path = make_tar({"./cat/a.png": make_png(RED), "./dog/b.png": make_png(RED)})
    assert load_image_archive(path, (3, 2, 2)).classes == ("cat", "dog")
    path = make_tar({"cat/a.png": make_png(RED), "./cat/a.png": make_png(STEEL)}, "twice.tar")
    with pytest.raises(InvalidDataset, match=r"'cat/a\.png' appears twice"):
        load_image_archive(path, (3, 2, 2))


@pytest.mark.parametrize("name", ["../evil.png", "cat/../../evil.png", "/etc/evil.png", "C:/x.png"])
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_traversal_and_absolute_paths_are_unsafe(make_zip, make_tar, make_png, kind, name):
    members = {"cat/a.png": make_png(RED), name: make_png(RED)}
    path = make_zip(members) if kind == "zip" else make_tar(members)
    with pytest.raises(UnsafeArchive, match=r"absolute path|outside the archive") as caught:
        load_image_archive(path, (3, 2, 2))
    assert caught.value.code == "unsafe_archive"


@pytest.mark.parametrize(
    ("member_type", "kind"),
    [
        (tarfile.SYMTYPE, "symbolic link"),
        (tarfile.LNKTYPE, "hard link"),
        (tarfile.CHRTYPE, "device or special file"),
        (tarfile.FIFOTYPE, "device or special file"),
    ],
)
def test_tar_links_and_devices_are_unsafe(tmp_path, make_png, member_type, kind):
    path = tmp_path / "data.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        image = make_png(RED)
        info = tarfile.TarInfo("cat/a.png")
        info.size = len(image)
        archive.addfile(info, io.BytesIO(image))
        link = tarfile.TarInfo("cat/b.png")
        link.type = member_type
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    with pytest.raises(UnsafeArchive, match=rf"'cat/b\.png' is a {kind}"):
        load_image_archive(path, (3, 2, 2))


def test_zip_symlink_is_unsafe(tmp_path, make_png):
    path = tmp_path / "data.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("cat/a.png", make_png(RED))
        link = zipfile.ZipInfo("cat/b.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafeArchive, match=r"'cat/b\.png' is a symbolic link"):
        load_image_archive(path, (3, 2, 2))


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_too_many_members_is_unsafe(make_zip, make_tar, make_png, kind):
    members = {f"cat/{i}.png": make_png(RED) for i in range(3)}
    path = make_zip(members) if kind == "zip" else make_tar(members)
    assert load_image_archive(path, (3, 2, 2), IntakeLimits(max_archive_members=3)).num_samples == 3
    with pytest.raises(UnsafeArchive, match="more than 2 members"):
        load_image_archive(path, (3, 2, 2), IntakeLimits(max_archive_members=2))


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_zip_bomb_is_stopped_by_declared_size(make_zip, make_tar, kind):
    members = {"cat/a.png": bytes(10 * 1024 * 1024)}
    path = make_zip(members) if kind == "zip" else make_tar(members)
    assert path.stat().st_size < 100_000
    with pytest.raises(UnsafeArchive, match="more than 1048576 bytes"):
        load_image_archive(path, (3, 2, 2), IntakeLimits(max_archive_expanded_bytes=1024 * 1024))


def test_zip_member_larger_than_declared_is_unsafe(tmp_path, make_png):
    path = tmp_path / "data.zip"
    image = make_png(RED, size=(64, 64))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("cat/a.png", image)
    raw = bytearray(path.read_bytes())
    local, central = raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")
    small = (10).to_bytes(4, "little")
    raw[local + 22 : local + 26] = small  # uncompressed size in the local header
    raw[central + 24 : central + 28] = small  # ...and in the central directory
    path.write_bytes(bytes(raw))
    with pytest.raises(UnsafeArchive, match="does not match its declared size"):
        load_image_archive(path, (3, 2, 2))


def test_oversized_tar_header_records_are_stopped(tmp_path, make_png):
    path = tmp_path / "data.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as archive:
        image = make_png(RED)
        info = tarfile.TarInfo("cat/a.png")
        info.size = len(image)
        info.pax_headers = {"comment": "x" * 200_000}
        archive.addfile(info, io.BytesIO(image))
    with pytest.raises(UnsafeArchive, match="decompresses to more data"):
        load_image_archive(
            path, (3, 2, 2), IntakeLimits(max_archive_members=1, max_archive_expanded_bytes=1000)
        )


def test_image_with_too_many_pixels_is_refused_before_decoding(make_zip, make_png):
    path = make_zip({"cat/a.png": make_png(RED, size=(6, 4))})
    with pytest.raises(
        UnsafeArchive, match=r"an image \(6x4\) is 24, above the limit max_image_pixels"
    ):
        load_image_archive(path, (3, 2, 2), IntakeLimits(max_image_pixels=23))
    assert load_image_archive(path, (3, 2, 2), IntakeLimits(max_image_pixels=24)).num_samples == 1


@pytest.mark.parametrize(
    "data",
    [b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "gif"],
    ids=["text", "truncated-png", "gif-named-png"],
)
def test_undecodable_member_is_named(make_zip, make_png, data):
    if data == "gif":
        buffer = io.BytesIO()
        Image.new("RGB", (2, 2)).save(buffer, format="GIF")
        data = buffer.getvalue()
    path = make_zip({"cat/a.png": make_png(RED), "cat/broken.png": data})
    with pytest.raises(InvalidDataset, match=r"'cat/broken\.png' is not a readable") as caught:
        load_image_archive(path, (3, 2, 2))
    assert caught.value.code == "invalid_dataset"


def test_archive_without_images_is_invalid(make_zip):
    path = make_zip({"README.md": b"hi", "__MACOSX/cat/._a.png": b"x", "cat/.hidden.png": b"x"})
    with pytest.raises(InvalidDataset, match="no images"):
        load_image_archive(path, (3, 2, 2))


@pytest.mark.parametrize(
    "names",
    [["a.png"], ["cat/a.png", "top/dog/b.png"], ["x/cat/a.png", "y/dog/b.png"], ["a/b/c/d.png"]],
    ids=["no-class-folder", "mixed-depth", "two-top-folders", "too-deep"],
)
def test_images_outside_class_folders_are_invalid(make_zip, make_png, names):
    path = make_zip({name: make_png(RED) for name in names})
    with pytest.raises(InvalidDataset, match=r"Expected images at class_name/image\.png"):
        load_image_archive(path, (3, 2, 2))


@pytest.mark.parametrize("shape", [(4, 2, 2), (2, 2), (3, 2, 2, 2)])
def test_model_shapes_images_cannot_feed(make_zip, make_png, shape):
    path = make_zip({"cat/a.png": make_png(RED)})
    with pytest.raises(ShapeMismatch, match=r"C = 1 or 3") as caught:
        load_image_archive(path, shape)
    assert caught.value.code == "shape_mismatch"


@pytest.mark.parametrize("content", [b"just text", b"\x1f\x8b" + b"\x00" * 40])
def test_not_an_archive_or_damaged(tmp_path, content):
    path = tmp_path / "data.tar.gz"
    path.write_bytes(content)
    with pytest.raises(UnsupportedFormat) as caught:
        load_image_archive(path, (3, 2, 2))
    assert caught.value.code == "unsupported_format"
