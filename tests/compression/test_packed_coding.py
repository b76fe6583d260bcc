"""The pieces of the packed format: relative positions, entropy coding chosen by size, and
the compact graph architecture (including what it refuses to build)."""

from __future__ import annotations

import json
import lzma
import math
import zlib

import numpy as np
import pytest
import torch
from torch import nn

from compression import zoo
from compression.errors import InvalidModel
from compression.packed.bitpack import pack_bits
from compression.packed.graph_architecture import Inexpressible, read_graph, write_graph
from compression.packed.header import Stream
from compression.packed.relative_index import (
    best_gap_bits,
    decode_gaps,
    encode_gaps,
    filler_step,
    gap_count,
)
from compression.packed.stream_coding import decode_bytes, decode_codes, encode_bytes, encode_codes

# --- relative positions --------------------------------------------------------------------


def test_gaps_by_hand() -> None:
    # 2-bit gaps: codes 1..3 step to the next kept weight, 0 moves 3 without keeping
    assert encode_gaps(np.array([0, 1, 4, 12]), 2).tolist() == [1, 1, 3, 0, 0, 2]
    assert decode_gaps(np.array([1, 1, 3, 0, 0, 2]), 2).tolist() == [0, 1, 4, 12]
    # 1-bit gaps are the keep bitmap up to the last kept weight
    assert encode_gaps(np.array([1, 2, 5]), 1).tolist() == [0, 1, 1, 0, 0, 1]
    assert encode_gaps(np.array([], dtype=np.int64), 3).tolist() == []
    assert filler_step(4) == 15


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("density", [0.001, 0.05, 0.5, 1.0])
def test_gaps_round_trip_at_every_width(bits: int, density: float) -> None:
    rng = np.random.default_rng(bits)
    positions = np.flatnonzero(rng.random(20000) < density)
    codes = encode_gaps(positions, bits)
    assert codes.size == gap_count(positions, bits)
    assert int(codes.max(initial=0)) < 2**bits
    assert np.array_equal(decode_gaps(codes, bits), positions)


def test_the_best_width_follows_the_density() -> None:
    rng = np.random.default_rng(0)
    sizes = {}
    for density in (0.5, 0.1, 0.01):
        positions = np.flatnonzero(rng.random(100000) < density)
        bits = best_gap_bits(positions)
        sizes[density] = bits
        assert bits * gap_count(positions, bits) == min(
            b * gap_count(positions, b) for b in range(1, 9)
        )
    assert sizes[0.5] < sizes[0.1] < sizes[0.01]
    with pytest.raises(ValueError, match="strictly increasing"):
        encode_gaps(np.array([3, 3]), 4)


# --- entropy coding ------------------------------------------------------------------------


def test_a_skewed_stream_is_compressed_and_a_uniform_one_is_not() -> None:
    rng = np.random.default_rng(0)
    uniform = torch.from_numpy(rng.integers(0, 16, 50000))
    stream, data = encode_codes(uniform, 4)
    assert (stream.coding, stream.packing, len(data)) == ("raw", "bits", 25000)
    skewed = torch.from_numpy(np.minimum(rng.geometric(0.6, 50000), 15))
    stream, data = encode_codes(skewed, 4)
    assert stream.coding in ("deflate", "lzma") and len(data) < 0.6 * 25000
    assert torch.equal(decode_codes(stream, data, 4, 50000, "s"), skewed)


@pytest.mark.parametrize("coding", ["deflate", "lzma"])
@pytest.mark.parametrize("packing", ["bits", "bytes"])
def test_every_coding_decodes(coding: str, packing: str) -> None:
    codes = torch.arange(3000) % 7
    plain = pack_bits(codes, 3) if packing == "bits" else codes.to(torch.uint8).numpy().tobytes()
    if coding == "deflate":
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        data = deflater.compress(plain) + deflater.flush()
    else:
        data = lzma.compress(
            plain, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9}]
        )
    stream = Stream(length=len(data), coding=coding, packing=packing)
    assert torch.equal(decode_codes(stream, data, 3, 3000, "s"), codes)


def test_decoding_is_bounded_and_checked() -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = bomb.compress(bytes(50 << 20)) + bomb.flush()
    with pytest.raises(InvalidModel, match=r"decodes to 1001\+ bytes, expected 1000"):
        decode_bytes(Stream(length=len(data), coding="deflate"), data, 1000, "tensors")
    with pytest.raises(InvalidModel, match="does not decompress"):
        decode_bytes(Stream(length=3, coding="lzma"), b"\x99\x99\x99", 10, "tensors")
    wide = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = wide.compress(bytes([9] * 100)) + wide.flush()
    stream = Stream(length=len(data), coding="deflate", packing="bytes")
    with pytest.raises(InvalidModel, match="holds code 9, wider than 3 bits"):
        decode_codes(stream, data, 3, 100, "codes")


def test_float_sections_pick_their_smallest_form() -> None:
    repeated = np.tile(np.float32([0.25, -0.5]), 1000).tobytes()
    stream, data = encode_bytes(repeated)
    assert stream.coding != "raw" and len(data) < 100
    assert decode_bytes(stream, data, len(repeated), "x") == repeated
    noise = np.random.default_rng(0).bytes(4000)  # nothing to take out
    assert encode_bytes(noise)[0].coding == "raw"


# --- the compact graph ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet20", "cnn1d", "mlp", "lenet5"])
def test_zoo_models_are_described_compactly_and_rebuilt_exactly(name: str) -> None:
    torch.manual_seed(0)
    model, shape = zoo.build(name)
    model.eval()
    text, data = write_graph(model, torch.rand(2, *shape), [])
    assert len(zlib.compress(text, 9)) < 2000  # resnet20: 1514 bytes, 65 modules
    rebuilt = read_graph(text, data, {})
    x = torch.rand(3, *shape)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    assert sorted(rebuilt.state_dict()) == sorted(model.state_dict())


def _small() -> tuple[nn.Module, bytes, bytes]:
    torch.manual_seed(0)
    model, _ = zoo.build("small_cnn")
    text, data = write_graph(model.eval(), torch.rand(2, 1, 8, 8), ["fc2"])
    return model, text, data


def _edited(text: bytes, edit) -> bytes:
    description = json.loads(text)
    edit(description)
    return json.dumps(description).encode()


def test_packed_weights_are_left_out_of_the_tensor_section() -> None:
    model, text, data = _small()
    stored = sum(p.numel() for p in model.parameters()) - model.fc2.weight.numel()
    assert len(data) == 4 * stored
    with pytest.raises(InvalidModel, match="disagree"):
        read_graph(text, data, {})  # fc2's weight is missing
    rebuilt = read_graph(text, data, {"fc2": model.fc2.weight.detach()})
    assert torch.equal(rebuilt.fc2.weight, model.fc2.weight)


def _set_module_type(d: dict, value: str) -> None:
    d["modules"][0][1] = value


def _set_operator(d: dict, value: str) -> None:
    for node in d["nodes"]:
        if node[0] == "call_function":
            node[1] = value


def _grow_conv(d: dict) -> None:
    d["modules"][0][2]["out_channels"] = 1 << 40


def _node_ahead(d: dict) -> None:
    d["nodes"][1][2] = [{"n": 5}]


HOSTILE = {
    "module type": (lambda d: _set_module_type(d, "TransformerEncoder"), "unknown module type"),
    "builtin": (lambda d: _set_operator(d, "builtins.exec"), "unknown operator"),
    "custom namespace": (lambda d: _set_operator(d, "mylib.run.default"), "unknown operator"),
    "mutating aten": (lambda d: _set_operator(d, "aten.add_.Tensor"), "not allowed"),
    "huge conv": (_grow_conv, "disagree"),
    "forward reference": (_node_ahead, r"malformed argument \{.n.: 5\}"),
    "node kind": (lambda d: d["nodes"][1].__setitem__(0, "call_method"), "node of kind"),
    "tensor dtype": (lambda d: d["tensors"][0].__setitem__(1, "object"), "malformed tensor"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_description_builds_nothing_unknown(case: str) -> None:
    model, text, data = _small()
    edit, message = HOSTILE[case]
    with pytest.raises(InvalidModel, match=message):
        read_graph(_edited(text, edit), data, {"fc2": model.fc2.weight.detach()})


def test_what_the_graph_cannot_describe_is_reported() -> None:
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))
            self.norm = nn.LayerNorm(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(x * self.scale)

    model = Custom().eval()
    text, data = write_graph(model, torch.rand(2, 3), [])  # LayerNorm stays an aten call
    x = torch.rand(4, 3)
    with torch.no_grad():
        assert torch.equal(read_graph(text, data, {})(x), model(x))
    assert math.prod((3,)) * 3 * 4 == len(data)  # scale, norm.weight, norm.bias

    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x + 1

    with pytest.raises(Inexpressible, match="single tensor output"):
        write_graph(Pair(), torch.rand(2, 3), [])
