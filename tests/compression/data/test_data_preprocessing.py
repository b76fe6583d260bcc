"""Images become the input real models expect: fit, channel order, normalization, uint8
until a batch is formed, and archives too big to decode at once streamed a batch at a time."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from compression.data import archive, load_dataset
from compression.data.encoded_images import EncodedImages
from compression.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from compression.errors import InvalidDataset, InvalidSpec
from jobspec import Preprocessing

RED, BLUE = (255, 0, 0), (0, 0, 255)


def striped_png(width: int = 8, height: int = 4) -> bytes:
    """Left quarter red, the rest blue: a center crop keeps only blue, a squash keeps red."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 4] = RED
    pixels[:, width // 4 :] = BLUE
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def imagenet(rgb: tuple[int, int, int]) -> torch.Tensor:
    values = [(c / 255 - m) / s for c, m, s in zip(rgb, IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    return torch.tensor(values, dtype=torch.float32)


def test_resize_center_crop_and_imagenet_normalization(make_zip):
    path = make_zip({"0/a.png": striped_png()})
    options = Preprocessing(normalize="imagenet", resize=4)
    dataset = load_dataset(path, (3, 4, 4), preprocessing=options)
    assert dataset.x.dtype == torch.uint8
    x = dataset.samples(slice(None))
    assert x.shape == (1, 3, 4, 4)
    # shorter side already 4: the 8x4 image is cropped to its middle 4 columns, all blue
    assert torch.allclose(x[0, :, :, :], imagenet(BLUE).view(3, 1, 1).expand(3, 4, 4), atol=1e-6)
    squashed = load_dataset(path, (3, 4, 4)).samples(slice(None))
    assert squashed[0, 0, 0, 0] > 0.5 > squashed[0, 2, 0, 0]  # a plain resize keeps red


def test_bgr_and_explicit_mean_std(make_zip):
    path = make_zip({"0/a.png": striped_png(4, 4)})
    options = Preprocessing(
        channel_order="bgr", normalize={"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.25, 0.5]}
    )
    x = load_dataset(path, (3, 4, 4), preprocessing=options).samples(slice(None))
    assert x[0, :, 0, 0].tolist() == [-1.0, -2.0, 1.0]  # red read as B, G, R
    assert x[0, :, 0, 3].tolist() == [1.0, -2.0, -1.0]


def test_integer_folders_are_model_class_indices(make_zip, make_png):
    path = make_zip({"7/a.png": make_png(RED), "3/b.png": make_png(RED), "12/c.png": make_png(RED)})
    dataset = load_dataset(path, (3, 2, 2))
    assert dataset.y.tolist() == [3, 7, 12]  # numeric, not "12" < "3"
    assert len(dataset.classes) == 13


def test_class_list_maps_folders_to_model_order(make_zip, make_png):
    members = {"classes.txt": b"tench\ngoldfish\nshark\n", "shark/a.png": make_png(RED),
               "tench/b.png": make_png(RED)}  # fmt: skip
    dataset = load_dataset(make_zip(members), (3, 2, 2))
    assert dataset.classes == ("tench", "goldfish", "shark")
    assert dataset.y.tolist() == [0, 2]
    members["eel/c.png"] = make_png(RED)
    with pytest.raises(InvalidDataset, match=r"\['eel'\] are not listed in classes\.txt"):
        load_dataset(make_zip(members, name="more.zip"), (3, 2, 2))


def test_uint8_npz_channels_last_is_fitted_like_images(make_npz):
    pixels = np.zeros((2, 4, 8, 3), np.uint8)
    pixels[:, :, :2] = RED
    pixels[:, :, 2:] = BLUE
    path = make_npz(x=pixels, y=np.array([0, 1]))
    dataset = load_dataset(path, (3, 4, 4), preprocessing=Preprocessing(normalize="imagenet",
                                                                        resize=4))  # fmt: skip
    assert dataset.x.dtype == torch.uint8 and dataset.x.shape == (2, 3, 4, 4)
    x = dataset.samples(slice(None))
    assert torch.allclose(x, imagenet(BLUE).view(1, 3, 1, 1).expand(2, 3, 4, 4), atol=1e-6)


def test_float_npz_refuses_image_preprocessing(make_npz):
    path = make_npz(x=np.zeros((2, 3, 4, 4), np.float32), y=np.array([0, 1]))
    assert load_dataset(path, (3, 4, 4)).x.dtype == torch.float32
    with pytest.raises(InvalidSpec, match="float samples, which are used as they are"):
        load_dataset(path, (3, 4, 4), preprocessing=Preprocessing(normalize="imagenet"))


def test_big_archives_stay_encoded_and_stream_the_same_batches(make_zip, monkeypatch):
    rng = np.random.default_rng(0)
    members = {}
    for index in range(10):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (6, 6, 3), np.uint8)).save(buffer, format="PNG")
        members[f"{index % 3}/{index}.png"] = buffer.getvalue()
    path = make_zip(members)
    options = Preprocessing(normalize="imagenet")
    eager = load_dataset(path, (3, 6, 6), preprocessing=options)
    monkeypatch.setattr(archive, "DECODED_IN_MEMORY_BYTES", 3 * 6 * 6 * 9)  # 9 images fit
    lazy = load_dataset(path, (3, 6, 6), preprocessing=options)
    assert isinstance(lazy.x, EncodedImages) and isinstance(eager.x, torch.Tensor)
    assert torch.equal(lazy.y, eager.y)
    for (a, ya), (b, yb) in zip(lazy.batches(4), eager.batches(4), strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)
    picked = torch.tensor([7, 2, 5])
    assert torch.equal(lazy.subset(picked).samples(slice(None)), eager.samples(picked))
    assert torch.allclose(lazy.mean_sample(3), eager.samples(slice(None)).mean(0, keepdim=True))
