"""The packed file: exact bit packing, a bit-exact round trip, every byte accounted for, and
corrupt, truncated or hostile files refused with a clear message."""

from __future__ import annotations

import io
import math
import os
import zipfile
import zlib
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
from compression.packed.header import Stream, section_order
from compression.packed.layer_codec import decode_layer, encode_layer
from compression.packed.relative_index import best_gap_bits, gap_count
from compression.packed.stream_coding import decode_codes

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


def test_packing_reads_the_model_in_place_without_changing_it(tmp_path: Path) -> None:
    """The graph is exported from the model itself (no copy of its weights): every parameter
    and buffer keeps its identity and value."""
    model, encodings, masks = _compressed()
    state = model.state_dict(keep_vars=True)
    before = {name: (id(tensor), tensor.detach().clone()) for name, tensor in state.items()}
    save_packed(model, torch.rand(4, 1, 8, 8), tmp_path / "model.xaic", encodings, masks)
    after = model.state_dict(keep_vars=True)
    assert sorted(after) == sorted(before)
    for name, (identity, value) in before.items():
        assert id(after[name]) == identity and torch.equal(after[name], value), name


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
    assert report.section_bytes == {name: len(section) for name, section in sections}
    assert [name for name, _ in sections][:2] == ["architecture", "tensors"]
    assert report.total_bytes == os.path.getsize(path) == len(data)
    assert report.total_bytes == 10 + header_length + sum(report.section_bytes.values())
    assert [entry.name for entry in header.layers] == ["conv2", "fc1", "fc2"]
    assert report.architecture == header.architecture.format == "graph"


def _raw_or_smaller(stream: Stream, raw_length: int) -> None:
    """A section is its plain form, or an entropy-coded form strictly smaller than that."""
    assert stream.length == raw_length if stream.coding == "raw" else stream.length < raw_length


def test_layer_payloads_follow_the_formulas(packed) -> None:
    _, path, report = packed
    header, _ = parse(path.read_bytes())
    conv2, fc1, fc2 = header.layers
    # conv2: k = 4 shared, nothing pruned: 2-bit indices, no positions
    assert (conv2.kind, conv2.bits, conv2.positions) == ("shared", 2, None)
    _raw_or_smaller(conv2.streams["codebook"], 4 * 4)
    _raw_or_smaller(conv2.streams["codes"], math.ceil(4608 * 2 / 8))
    # fc1: 90% pruned 4-bit: relative positions at the width that makes the shortest stream
    kept = torch.nonzero(_kept((64, 512), FC1_KEPT, 1).reshape(-1)).reshape(-1).numpy()
    assert fc1.kept == FC1_KEPT and fc1.positions is not None
    assert fc1.positions.bits == best_gap_bits(kept)
    assert fc1.positions.count == gap_count(kept, fc1.positions.bits)
    _raw_or_smaller(fc1.positions.stream, math.ceil(fc1.positions.count * fc1.positions.bits / 8))
    _raw_or_smaller(fc1.streams["scales"], 64 * 4)
    _raw_or_smaller(fc1.streams["codes"], math.ceil(FC1_KEPT * 4 / 8))
    # the bitmap of v1 took 4096 bytes for fc1's positions; gaps take under half of that
    assert report.section_bytes["fc1.positions"] < 4096 / 2
    assert report.layers["fc1"] == LayerReport(
        "quantized", True, 4, sum(report.section_bytes[f"fc1.{r}"] for r in
                                  ("positions", "scales", "codes")), 4 * 32768, fc1.positions.bits,
    )  # fmt: skip
    # fc2: 50% pruned float32: a 1-bit gap stream is the bitmap up to the last kept weight
    assert (fc2.kind, fc2.kept, fc2.positions.bits) == ("dense", FC2_KEPT, 1)
    last = int(torch.nonzero(_kept((10, 64), FC2_KEPT, 2).reshape(-1)).max())
    assert fc2.positions.count == last + 1
    _raw_or_smaller(fc2.streams["values"], 4 * FC2_KEPT)


def test_packed_file_is_much_smaller_than_fp32(packed) -> None:
    _, path, report = packed
    parameters = (16 * 9 + 16) + (32 * 16 * 9 + 32) + (512 * 64 + 64) + (64 * 10 + 10)
    assert report.fp32_bytes == 4 * parameters == 153128
    assert 18 < report.ratio < 20  # 19.1x observed (8.9x with version 1's pt2 architecture)
    # the graph (modules, nodes, tensor table) deflates to a few hundred bytes; the tensors
    # section holds conv1's weight and every bias: 266 float32
    assert report.section_bytes["architecture"] < 500
    _raw_or_smaller(parse(path.read_bytes())[0].tensors, 4 * 266)


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


class TwoHeads(nn.Module):
    """Two outputs: beyond the compact graph, so the architecture is a pt2 archive."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.fc(x)
        return y, y.relu()


@pytest.fixture(scope="module")
def pt2_packed(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    model = TwoHeads().eval()
    mask = torch.rand(4, 6) > 0.5
    with torch.no_grad():
        model.fc.weight.mul_(mask)
    path = tmp_path_factory.mktemp("pt2") / "two.xaic"
    report = save_packed(model, torch.rand(2, 6), path, {}, {"fc": mask})
    assert report.architecture == "pt2"
    return model, path


def test_a_model_beyond_the_compact_graph_keeps_a_pt2_architecture(pt2_packed) -> None:
    model, path = pt2_packed
    header, sections = parse(path.read_bytes())
    assert header.tensors is None and sections[0][0] == "architecture"
    with zipfile.ZipFile(io.BytesIO(sections[0][1])) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    loaded = load_packed(path)
    x = torch.rand(3, 6)
    with torch.no_grad():
        for actual, expected in zip(loaded(x), model(x), strict=True):
            assert torch.equal(actual, expected)


# --- the sparse rule -----------------------------------------------------------------------


def test_a_mostly_kept_layer_is_stored_dense_with_zero_codes() -> None:
    values = torch.arange(32).remainder(3).sub(1).view(4, 8)
    encoding = QuantizedWeights(2, torch.full((4,), 0.5), values)
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[0, :3] = False
    weight = encoding.dequantize() * mask
    entry, payloads = encode_layer("fc", weight, encoding, mask)
    # sparse would take 29 two-bit codes (8 bytes) plus positions; dense takes 8 for all 32
    assert (entry.sparse, entry.kept, sorted(entry.streams)) == (False, 32, ["codes", "scales"])
    codes = decode_codes(entry.streams["codes"], payloads[1], 2, 32, "fc codes")
    assert torch.equal(codes, torch.where(mask.view(-1), values.view(-1) + 1, 1))
    assert torch.equal(decode_layer(entry, payloads), weight)


def test_a_masked_shared_layer_without_a_zero_entry_is_stored_sparse() -> None:
    indices = torch.arange(32).remainder(4).view(4, 8)
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[0, 0] = False
    weight = CODEBOOK[indices] * mask
    entry, payloads = encode_layer("conv", weight, SharedWeights(CODEBOOK, indices), mask)
    # positions 1..31: a 1-bit gap stream of 32 codes (0 = skip one, 1 = keep the next)
    assert (entry.sparse, entry.kept, entry.positions.bits, entry.positions.count) == (
        True, 31, 1, 32,
    )  # fmt: skip
    gaps = decode_codes(entry.positions.stream, payloads[0], 1, 32, "conv positions")
    assert gaps.tolist() == [0] + [1] * 31
    assert torch.equal(decode_layer(entry, payloads), weight)

    with_zero = torch.tensor([-0.1, 0.0, 0.02, 0.09])  # pruned [0, 0] is written as index 1
    weight = with_zero[indices] * mask
    entry, payloads = encode_layer("conv", weight, SharedWeights(with_zero, indices), mask)
    assert (entry.sparse, entry.kept) == (False, 32)
    codes = decode_codes(entry.streams["codes"], payloads[1], 2, 32, "conv codes")
    assert torch.equal(codes, torch.where(mask.view(-1), indices.view(-1), 1))
    assert torch.equal(decode_layer(entry, payloads), weight)


def test_a_very_sparse_layer_stores_gaps_with_fillers() -> None:
    weight = torch.zeros(1, 1000)
    weight[0, [3, 4, 600]] = torch.tensor([1.5, -2.0, 0.25])
    entry, payloads = encode_layer("fc", weight, None, weight != 0)
    # 3 kept of 1000: 8-bit gaps take 3 codes + 2 fillers (255 each) = 40 bits
    assert (entry.positions.bits, entry.positions.count) == (8, 5)
    gaps = decode_codes(entry.positions.stream, payloads[0], 8, 5, "fc positions")
    assert gaps.tolist() == [4, 1, 0, 0, 86]  # 3, 4, then 4 + 255 + 255 + 86 = 600
    assert torch.equal(decode_layer(entry, payloads), weight)


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
    """Replace one section's bytes and fix its length in the header."""
    header, sections = parse(data)
    payloads = dict(sections)
    payloads[section] = new
    layers = []
    for layer in header.layers:
        if section == f"{layer.name}.positions":
            stream = layer.positions.stream.model_copy(update={"length": len(new)})
            layer = layer.model_copy(
                update={"positions": layer.positions.model_copy(update={"stream": stream})}
            )
        role = section.removeprefix(f"{layer.name}.")
        if section.startswith(f"{layer.name}.") and role in layer.streams:
            streams = dict(layer.streams)
            streams[role] = streams[role].model_copy(update={"length": len(new)})
            layer = layer.model_copy(update={"streams": streams})
        layers.append(layer)
    update: dict = {"layers": layers}
    if section == "architecture":
        stream = header.architecture.stream.model_copy(update={"length": len(new)})
        update["architecture"] = header.architecture.model_copy(update={"stream": stream})
    if section == "tensors":
        update["tensors"] = header.tensors.model_copy(update={"length": len(new)})
    header = header.model_copy(update=update)
    return assemble(header, [payloads[name] for name, _ in section_order(header)])


def _with_header(data: bytes, **changes) -> bytes:
    header, sections = parse(data)
    return assemble(header.model_copy(update=changes), [payload for _, payload in sections])


def _deflated_json(text: str) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    return deflater.compress(text.encode()) + deflater.flush()


def _raw_header(data: bytes, header: bytes) -> bytes:
    _, _, length = PREFIX.unpack_from(data)
    return data[:4] + FORMAT_VERSION.to_bytes(2, "little") + PREFIX.pack(
        b"XAIC", FORMAT_VERSION, len(header)
    )[6:] + header + data[10 + length :]  # fmt: skip


def _one_name_twice(data: bytes) -> bytes:
    header, _ = parse(data)
    layers = [entry.model_copy(update={"name": "fc9"}) for entry in header.layers]
    return _with_header(data, layers=layers)


def _huge_layer(data: bytes) -> bytes:
    header, _ = parse(data)
    fc2 = header.layers[2].model_copy(update={"shape": (1 << 20, 1 << 20)})
    return _with_header(data, layers=[*header.layers[:2], fc2])


def _fc1_codes_raw(data: bytes, payload: bytes) -> bytes:
    header, sections = parse(data)
    fc1 = header.layers[1]
    streams = {**fc1.streams, "codes": Stream(length=len(payload))}
    layers = [header.layers[0], fc1.model_copy(update={"streams": streams}), header.layers[2]]
    payloads = dict(sections)
    payloads["fc1.codes"] = payload
    header = header.model_copy(update={"layers": layers})
    return assemble(header, [payloads[name] for name, _ in section_order(header)])


def _fc2_positions(data: bytes, codes: list[int]) -> bytes:
    header, sections = parse(data)
    fc2 = header.layers[2]
    payload = pack_bits(torch.tensor(codes), 1)
    positions = fc2.positions.model_copy(
        update={"count": len(codes), "stream": Stream(length=len(payload))}
    )
    layers = [*header.layers[:2], fc2.model_copy(update={"positions": positions})]
    payloads = dict(sections)
    payloads["fc2.positions"] = payload
    header = header.model_copy(update={"layers": layers})
    return assemble(header, [payloads[name] for name, _ in section_order(header)])


CORRUPTIONS = {
    "short prefix": (lambda d: d[:5], "truncated: 5 bytes, shorter than its 10-byte prefix"),
    "cut header": (lambda d: d[:40], "truncated inside its header: 40 bytes"),
    "cut payload": (lambda d: d[:-1], "truncated: section 'fc2.values' ends at byte"),
    "trailing": (lambda d: d + b"\x00", "1 trailing bytes after its last section"),
    "magic": (lambda d: b"PK\x03\x04" + d[4:], "not a packed model file: it starts with"),
    "version": (
        lambda d: d[:4] + (FORMAT_VERSION + 1).to_bytes(2, "little") + d[6:],
        "version 3 is not supported; this reader reads version 2",
    ),
    "header deflate": (lambda d: _raw_header(d, b"\xff\xff"), "header does not inflate"),
    "header json": (
        lambda d: _raw_header(d, _deflated_json('{"layers": []')),
        "header is not valid",
    ),
    "header bomb": (
        lambda d: _raw_header(d, _deflated_json(" " * (65 << 20))),
        "header inflates beyond",
    ),
    "codes": (
        lambda d: _fc1_codes_raw(d, b"\xff" * 1638),
        r"layer 'fc1' holds code 15, outside \[0, 15\)",
    ),
    "codes length": (
        lambda d: _fc1_codes_raw(d, bytes(1637)),
        "layer 'fc1' codes decodes to 1637 bytes, expected 1638",
    ),
    "compressed garbage": (
        lambda d: _rewrite(d, "fc1.positions", b"\x07" * 50),
        "layer 'fc1' positions (does not decompress|decodes to)",
    ),
    "positions count": (
        lambda d: _fc2_positions(d, [1] * 640),
        "layer 'fc2': its positions name 640 weights",
    ),
    "positions beyond": (
        lambda d: _fc2_positions(d, [0] * 700 + [1] * 320),
        r"layer 'fc2': its positions name 320 weights \(last 1019\)",
    ),
    "layer twice": (_one_name_twice, "packed file describes a layer twice"),
    "too big": (_huge_layer, "would decode to about"),
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
    header, _ = parse(packed[1].read_bytes())
    fc2 = header.layers[2].model_copy(update={"name": "head"})
    path = tmp_path / "renamed.xaic"
    path.write_bytes(_with_header(packed[1].read_bytes(), layers=[*header.layers[:2], fc2]))
    with pytest.raises(InvalidModel, match="packed architecture and its tensors disagree"):
        load_packed(path)


class Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_hostile_pickle_in_a_pt2_architecture_is_refused_unexecuted(
    pt2_packed, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    payload = io.BytesIO()
    torch.save((Payload(marker),), payload)
    data = pt2_packed[1].read_bytes()
    hostile = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(parse(data)[1][0][1])) as source,
        zipfile.ZipFile(hostile, "w") as target,
    ):
        for info in source.infolist():
            member = payload.getvalue() if "sample_inputs" in info.filename else source.read(info)
            target.writestr(info, member)
    damaged = _rewrite(data, "architecture", hostile.getvalue())
    header, sections = parse(damaged)
    architecture = header.architecture.model_copy(update={"size": len(hostile.getvalue())})
    path = tmp_path / "hostile.xaic"
    path.write_bytes(assemble(header.model_copy(update={"architecture": architecture}),
                              [payload for _, payload in sections]))  # fmt: skip
    with pytest.raises(InvalidModel, match=r"sample_inputs/model\.pt' is a pickle"):
        load_packed(path)
    assert not marker.exists(), "the file's code was executed"


def test_the_documented_numpy_reader_reads_the_file(packed) -> None:
    """docs/packed-format.md's reader (stdlib + numpy only) gives the weights load_packed does."""
    document = (Path(__file__).parents[2] / "docs" / "packed-format.md").read_text()
    section = document.split("## Reading a file with Python and numpy")[1]
    namespace: dict = {}
    exec(section.split("```python")[1].split("```")[0], namespace)
    weights = namespace["read_layers"](str(packed[1]))
    loaded = load_packed(packed[1])
    assert sorted(weights) == ["conv2", "fc1", "fc2"]
    for name, weight in weights.items():
        assert torch.equal(torch.from_numpy(weight), loaded.get_parameter(f"{name}.weight"))


def test_without_entropy_coding_every_section_is_plain(packed, tmp_path: Path) -> None:
    model, _, report = packed
    _, encodings, masks = _compressed()
    plain = save_packed(model, torch.rand(2, 1, 8, 8), tmp_path / "p.xaic", encodings, masks, False)
    header, _ = parse((tmp_path / "p.xaic").read_bytes())
    codings = [stream.coding for name, stream in section_order(header) if name != "architecture"]
    assert set(codings) == {"raw"}
    # the report's plain size is that file's sections with the entropy-coded file's header
    assert report.plain_bytes - report.header_bytes == plain.total_bytes - plain.header_bytes
    assert report.total_bytes < plain.total_bytes == plain.plain_bytes
    loaded = load_packed(tmp_path / "p.xaic")
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_a_second_model_of_the_same_structure_reuses_the_graph_with_its_own_tensors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from compression.packed import graph_architecture

    exports = []
    real_export = graph_architecture.export_program
    monkeypatch.setattr(
        graph_architecture, "export_program", lambda *a: exports.append(1) or real_export(*a)
    )
    monkeypatch.setattr(graph_architecture, "_DESCRIBED", graph_architecture.OrderedDict())
    torch.manual_seed(0)
    first, _ = zoo.build("vgg", {"width_multiplier": 0.125})
    second, _ = zoo.build("vgg", {"width_multiplier": 0.125})  # other weights, BN statistics
    with torch.no_grad():
        for layer in second.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.running_mean.uniform_(-1, 1)
    example = torch.rand(2, 3, 32, 32)
    x = torch.rand(5, 3, 32, 32)
    for model in (first.eval(), second.eval()):
        save_packed(model, example, tmp_path / "m.xaic", {}, {})
        with torch.no_grad():
            assert torch.equal(load_packed(tmp_path / "m.xaic")(x), model(x))
    assert len(exports) == 1  # the second file reused the first description
    second.features[0].padding_mode = "reflect"  # same tensors, another graph: re-exported
    save_packed(second, example, tmp_path / "m.xaic", {}, {})
    with torch.no_grad():
        assert torch.equal(load_packed(tmp_path / "m.xaic")(x), second(x))
    assert len(exports) == 2
