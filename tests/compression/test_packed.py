"""The packed file: exact bit packing, a bit-exact round trip, every byte accounted for, and
corrupt, truncated or hostile files refused with a clear message."""

from __future__ import annotations

import io
import math
import os
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from compression import zoo
from compression.encoding import QuantizedWeights, SharedWeights
from compression.errors import ExportFailed, InvalidModel
from compression.io import export_pt2, load_model
from compression.packed import LayerReport, PackedReport, load_packed, pack_bits, save_packed
from compression.packed.bitpack import CHUNK, unpack_bits
from compression.packed.container import FORMAT_VERSION, PREFIX, assemble, parse
from compression.packed.layer_codec import decode_layer, encode_layer

FC1_KEPT = 3276  # of 64 x 512 weights: 90% pruned
FC2_KEPT = 320  # of 10 x 64 weights: 50% pruned
CODEBOOK = torch.tensor([-0.1, -0.03, 0.02, 0.09])


# --- bit packing ---------------------------------------------------------------------------


@pytest.mark.parametrize("bits", range(1, 17))
@pytest.mark.parametrize("count", [0, 1, 1001, CHUNK + 13])
def test_bit_packing_round_trips_with_exact_length(bits: int, count: int) -> None:
    generator = torch.Generator().manual_seed(bits)
    values = torch.randint(0, 2**bits, (count,), generator=generator)
    values[: min(count, 2)] = torch.tensor([0, 2**bits - 1])[: min(count, 2)]
    data = pack_bits(values, bits)
    assert len(data) == math.ceil(count * bits / 8)
    assert torch.equal(unpack_bits(data, bits, count), values)


def test_bit_order_is_little_endian() -> None:
    # 2 bits: 1, 2, 3 -> 0b00_11_10_01; 3 bits: 5 | 6 << 3 | 7 << 6 = 0x1F5 crosses a byte
    assert pack_bits(torch.tensor([1, 2, 3]), 2) == bytes([0b00111001])
    assert pack_bits(torch.tensor([5, 6, 7]), 3) == bytes([0xF5, 0x01])
    assert pack_bits(torch.tensor([[True, False], [False, True]]), 1) == bytes([0b1001])


def test_bit_packing_refuses_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match=r"values must lie in \[0, 3\] to fit 2 bits"):
        pack_bits(torch.tensor([4]), 2)
    with pytest.raises(ValueError, match=r"bits must be in 1\.\.16, got 17"):
        pack_bits(torch.tensor([1]), 17)
    with pytest.raises(ValueError, match="3 values of 4 bits take 2 bytes, got 1"):
        unpack_bits(b"\x00", 4, 3)


# --- a hand-built compressed model ---------------------------------------------------------


def _kept(shape: tuple[int, ...], kept: int, seed: int) -> torch.Tensor:
    order = torch.randperm(math.prod(shape), generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(math.prod(shape), dtype=torch.bool)
    mask[order[:kept]] = True
    return mask.view(shape)


def _compressed() -> tuple[nn.Module, dict, dict]:
    """small_cnn: conv2 shared (k=4), fc1 90% pruned + 4-bit, fc2 50% pruned."""
    torch.manual_seed(0)
    model, _ = zoo.build("small_cnn")
    conv2, fc1, fc2 = model.conv2.weight, model.fc1.weight, model.fc2.weight
    indices = torch.randint(0, 4, conv2.shape)
    fc1_mask = _kept(tuple(fc1.shape), FC1_KEPT, 1)
    fc2_mask = _kept(tuple(fc2.shape), FC2_KEPT, 2)
    scales = fc1.detach().abs().amax(dim=1) / 7
    values = torch.round(fc1.detach() / scales[:, None]).clamp(-7, 7).long()
    quantized = QuantizedWeights(4, scales, values)
    with torch.no_grad():
        conv2.copy_(CODEBOOK[indices])
        fc1.copy_(quantized.dequantize() * fc1_mask)
        fc2.mul_(fc2_mask)
    encodings = {"conv2": SharedWeights(CODEBOOK, indices), "fc1": quantized}
    return model.eval(), encodings, {"fc1": fc1_mask, "fc2": fc2_mask}


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path, PackedReport]:
    model, encodings, masks = _compressed()
    path = tmp_path_factory.mktemp("packed") / "model.xaic"
    report = save_packed(model, torch.rand(4, 1, 8, 8), path, encodings, masks)
    return model, path, report


def test_load_is_bit_exact_and_takes_any_batch(packed) -> None:
    model, path, _ = packed
    loaded = load_packed(path)
    expected, actual = model.state_dict(), loaded.state_dict()
    assert sorted(actual) == sorted(expected)
    for name, tensor in expected.items():
        assert torch.equal(actual[name], tensor), name
    for batch in (4, 7, 1):
        x = torch.rand(batch, 1, 8, 8)
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))


def test_every_byte_is_accounted_for(packed) -> None:
    _, path, report = packed
    data = path.read_bytes()
    header, sections = parse(data)
    (_, _, header_length) = PREFIX.unpack_from(data)
    assert report.prefix_bytes == PREFIX.size == 10
    assert report.header_bytes == header_length
    assert report.section_bytes == {name: len(section) for name, section in sections.items()}
    assert next(iter(report.section_bytes)) == "architecture"
    assert report.total_bytes == os.path.getsize(path) == len(data)
    assert report.total_bytes == 10 + header_length + sum(report.section_bytes.values())
    assert [entry.name for entry in header.layers] == ["conv2", "fc1", "fc2"]


def test_layer_payloads_follow_the_formulas(packed) -> None:
    _, _, report = packed
    sizes = report.section_bytes
    assert (sizes["conv2.codebook"], sizes["conv2.codes"]) == (4 * 4, math.ceil(4608 * 2 / 8))
    assert (sizes["fc1.scales"], sizes["fc1.mask"]) == (64 * 4, 32768 // 8)
    assert sizes["fc1.codes"] == math.ceil(FC1_KEPT * 4 / 8) == 1638
    assert (sizes["fc2.mask"], sizes["fc2.values"]) == (640 // 8, FC2_KEPT * 4)
    assert report.layers == {
        "conv2": LayerReport("shared", False, 2, 16 + 1152, 4 * 4608),
        "fc1": LayerReport("quantized", True, 4, 256 + 4096 + 1638, 4 * 32768),
        "fc2": LayerReport("dense", True, None, 80 + 1280, 4 * 640),
    }
    dense_fc1 = 256 + math.ceil(32768 * 4 / 8)
    assert report.layers["fc1"].payload_bytes < dense_fc1 / 2


def test_packed_file_is_much_smaller_than_fp32(packed) -> None:
    _, path, report = packed
    parameters = (16 * 9 + 16) + (32 * 16 * 9 + 32) + (512 * 64 + 64) + (64 * 10 + 10)
    assert report.fp32_bytes == 4 * parameters == 153128
    assert 8.5 < report.ratio < 9.5  # 8.93x observed; the archive is 44% of the file
    assert report.section_bytes["architecture"] < 8000
    with zipfile.ZipFile(io.BytesIO(parse(path.read_bytes())[1]["architecture"])) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}


def test_a_model_loaded_from_pt2_packs_and_loads(tmp_path: Path) -> None:
    model, encodings, masks = _compressed()
    export_pt2(model, torch.rand(2, 1, 8, 8), tmp_path / "model.pt2")
    source = load_model(str(tmp_path / "model.pt2")).module
    save_packed(source, torch.rand(2, 1, 8, 8), tmp_path / "model.xaic", encodings, masks)
    loaded = load_packed(tmp_path / "model.xaic")
    assert torch.equal(loaded.get_parameter("fc1.weight"), model.fc1.weight)
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


# --- the sparse rule -----------------------------------------------------------------------


def test_a_mostly_kept_layer_is_stored_dense_with_zero_codes() -> None:
    values = torch.arange(32).remainder(3).sub(1).view(4, 8)
    encoding = QuantizedWeights(2, torch.full((4,), 0.5), values)
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[0, :3] = False
    weight = encoding.dequantize() * mask
    entry, sections = encode_layer("fc", weight, encoding, mask)
    # sparse would take 4 bytes of bitmap + 8 for 29 two-bit codes; dense takes 8 for 32
    assert (entry.sparse, entry.kept) == (False, 32)
    assert dict(sections).keys() == {"fc.scales", "fc.codes"}
    assert len(dict(sections)["fc.codes"]) == 8
    assert torch.equal(decode_layer(entry, dict(sections)), weight)


def test_a_masked_shared_layer_without_a_zero_entry_keeps_its_bitmap() -> None:
    indices = torch.arange(32).remainder(4).view(4, 8)
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[0, 0] = False
    weight = CODEBOOK[indices] * mask
    entry, sections = encode_layer("conv", weight, SharedWeights(CODEBOOK, indices), mask)
    assert (entry.sparse, entry.kept) == (True, 31)
    assert [len(data) for _, data in sections] == [16, 4, math.ceil(31 * 2 / 8)]
    assert torch.equal(decode_layer(entry, dict(sections)), weight)

    with_zero = torch.tensor([-0.1, 0.0, 0.02, 0.09])  # pruned [0, 0] is written as index 1
    weight = with_zero[indices] * mask
    entry, sections = encode_layer("conv", weight, SharedWeights(with_zero, indices), mask)
    assert (entry.sparse, entry.kept) == (False, 32)
    codes = unpack_bits(dict(sections)["conv.codes"], 2, 32)
    assert torch.equal(codes, torch.where(mask.view(-1), indices.view(-1), 1))
    assert torch.equal(decode_layer(entry, dict(sections)), weight)


def test_a_weight_that_is_not_its_encoding_is_refused(tmp_path: Path) -> None:
    model, encodings, masks = _compressed()
    with torch.no_grad():
        model.fc1.weight[0, 0] += 1.0
    with pytest.raises(ExportFailed, match="layer 'fc1': its weight is not its encoding"):
        save_packed(model, torch.rand(2, 1, 8, 8), tmp_path / "m.xaic", encodings, masks)
    with pytest.raises(ExportFailed, match=r"unknown layers \['fc9'\]"):
        save_packed(model, torch.rand(2, 1, 8, 8), tmp_path / "m.xaic", {}, {"fc9": masks["fc2"]})


# --- corrupt, truncated and hostile files --------------------------------------------------


def _rewrite(data: bytes, section: str, new: bytes) -> bytes:
    header, sections = parse(data)
    sections[section] = new
    return assemble(header.layers, list(sections.items()))


def _corrupt_zip_end(data: bytes) -> bytes:
    archive = parse(data)[1]["architecture"]
    return _rewrite(data, "architecture", archive[:-22] + bytes(22))


def _one_name_twice(data: bytes) -> bytes:
    header, sections = parse(data)
    layers = [entry.model_copy(update={"name": "fc9"}) for entry in header.layers]
    return assemble(layers, list(sections.items()))


CORRUPTIONS = {
    "short prefix": (lambda d: d[:5], "truncated: 5 bytes, shorter than its 10-byte prefix"),
    "cut header": (lambda d: d[:40], "truncated inside its header: 40 bytes"),
    "cut payload": (lambda d: d[:-1], "truncated: section 'fc2.values' ends at payload byte"),
    "trailing": (lambda d: d + b"\x00", "1 trailing bytes after its last section"),
    "magic": (lambda d: b"PK\x03\x04" + d[4:], "not a packed model file: it starts with"),
    "version": (
        lambda d: d[:4] + (FORMAT_VERSION + 1).to_bytes(2, "little") + d[6:],
        "version 2 is not supported; this reader reads version 1",
    ),
    "header json": (lambda d: d[:10] + b"[" + d[11:], "header is not valid"),
    "codes": (
        lambda d: _rewrite(d, "fc1.codes", b"\xff" * 1638),
        r"layer 'fc1' holds code 15, outside \[0, 15\)",
    ),
    "codes length": (
        lambda d: _rewrite(d, "fc1.codes", bytes(1637)),
        "layer 'fc1' is corrupt: section codes has 1637 bytes, expected 1638",
    ),
    "mask count": (
        lambda d: _rewrite(d, "fc2.mask", b"\xff" * 80),
        "layer 'fc2': its mask keeps 640 weights, the header says 320",
    ),
    "zip": (_corrupt_zip_end, "architecture section is not a valid zip archive"),
    "layer twice": (_one_name_twice, "packed file describes a layer twice"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_a_damaged_file_is_refused_clearly(packed, tmp_path: Path, case: str) -> None:
    damage, message = CORRUPTIONS[case]
    path = tmp_path / "damaged.xaic"
    path.write_bytes(damage(packed[1].read_bytes()))
    with pytest.raises(InvalidModel, match=message) as caught:
        load_packed(path)
    assert caught.value.code == "invalid_model"


def test_a_layer_missing_from_the_architecture_is_named(packed, tmp_path: Path) -> None:
    header, sections = parse(packed[1].read_bytes())
    fc2 = header.layers[2].model_copy(update={"name": "head"})
    path = tmp_path / "renamed.xaic"
    path.write_bytes(assemble([*header.layers[:2], fc2], list(sections.items())))
    with pytest.raises(InvalidModel, match="the packed architecture has no layer 'head'"):
        load_packed(path)


class Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_hostile_pickle_in_the_architecture_is_refused_unexecuted(packed, tmp_path) -> None:
    marker = tmp_path / "pwned"
    payload = io.BytesIO()
    torch.save((Payload(marker),), payload)
    data = packed[1].read_bytes()
    hostile = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(parse(data)[1]["architecture"])) as source,
        zipfile.ZipFile(hostile, "w") as target,
    ):
        for info in source.infolist():
            member = payload.getvalue() if "sample_inputs" in info.filename else source.read(info)
            target.writestr(info, member)
    path = tmp_path / "hostile.xaic"
    path.write_bytes(_rewrite(data, "architecture", hostile.getvalue()))
    with pytest.raises(InvalidModel, match=r"sample_inputs/model\.pt' is a pickle"):
        load_packed(path)
    assert not marker.exists(), "the file's code was executed"
