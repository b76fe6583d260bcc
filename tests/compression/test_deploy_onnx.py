"""The deployable ONNX file: standard operators only, exact weights, the size of its codes,
and float32 speed in onnxruntime."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from compression import zoo
from compression.deploy import onnx_decoders
from compression.deploy.integer_onnx import export_fp32, integer_onnx
from compression.deploy.onnx_decoders import DOMAIN, FUNCTIONS
from compression.encoding import QuantizedWeights, SharedWeights
from compression.errors import ExportFailed
from compression.packed.relative_index import gap_count
from tests.compression.test_packed import FC1_KEPT, _compressed, _kept

DECODE_OPS = {"Cast", "Mul", "Gather", "ScatterElements", "CumSum", "Where", "Reshape", "Slice"}


def _run(model: onnx.ModelProto, x: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _close(actual: np.ndarray, expected: np.ndarray) -> bool:
    """The outputs agree to float32 accumulation order (the weights themselves are exact).
    That error scales with the outputs' magnitude, not each output's own value: 16-bit codes
    give outputs in the hundreds where small ones cancel (a 2e-4 difference at -59 seen on
    CI), so the bound is relative to the largest output; a mis-decoded code (wrong bits, sign
    or scale) lands far above it."""
    scale = max(1.0, float(np.abs(expected).max()))
    return float(np.abs(actual - expected).max()) <= 1e-5 * scale


def _optimized_ops(model: onnx.ModelProto, path) -> list[str]:
    """The operators onnxruntime runs after its graph optimizations (constant folding)."""
    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = str(path)
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return [node.op_type for node in onnx.load(str(path)).graph.node]


@pytest.fixture(scope="module")
def compressed():
    model, encodings, masks = _compressed()
    fp32 = export_fp32(model, torch.rand(2, 1, 8, 8))
    return model, encodings, masks, fp32


def test_outputs_match_torch_and_every_weight_is_exact(compressed) -> None:
    model, encodings, masks, fp32 = compressed
    integer, report = integer_onnx(fp32, model, encodings, masks)
    for batch in (1, 7):
        x = torch.rand(batch, 1, 8, 8)
        with torch.no_grad():
            expected = model(x).numpy()
        assert np.abs(_run(integer, x) - expected).max() < 1e-5
    assert set(report.layers) == {"conv2", "fc1", "fc2"} and report.float_layers == []
    assert {name: (layer.kind, layer.form) for name, layer in report.layers.items()} == {
        "conv2": ("shared", "dense"),  # k = 4: 2-bit indices, nothing pruned
        "fc1": ("quantized", "sparse"),  # 90% pruned 4-bit
        "fc2": ("dense", "sparse"),  # 50% pruned float32
    }
    onnx.checker.check_model(integer)
    domains = {node.domain for node in integer.graph.node}
    assert domains <= {"", DOMAIN} and {f.name for f in integer.functions} <= set(FUNCTIONS)


def test_sizes_follow_the_bit_count(compressed) -> None:
    """Each layer takes its codes' bytes plus a bounded graph overhead."""
    model, encodings, masks, fp32 = compressed
    integer, report = integer_onnx(fp32, model, encodings, masks)
    positions = np.flatnonzero(_kept((64, 512), FC1_KEPT, 1).reshape(-1).numpy())
    codes = {
        # 4608 two-bit indices, bit-packed, + a 4-entry codebook
        "conv2": math.ceil(4608 * 2 / 8) + 4 * 4,
        # 4-bit relative positions (UINT4), 4-bit values (INT4), 64 scales
        "fc1": math.ceil(gap_count(positions, 4) / 2) + math.ceil(FC1_KEPT / 2) + 64 * 4,
        # 1-bit positions up to the last kept weight, 320 float32 values
        "fc2": math.ceil(635 / 8) + 320 * 4,
    }
    for name, stored in codes.items():
        layer = report.layers[name]
        assert stored <= layer.bytes <= stored + 1300, (name, layer.bytes, stored)
    assert report.layers["fc1"].storage == ("uint4", "int4", "float32")
    functions = sum(function.ByteSize() for function in integer.functions)
    graph = integer.ByteSize() - sum(layer.bytes for layer in report.layers.values())
    biases_and_conv1 = 4 * (16 * 9 + 16 + 32 + 64 + 10)
    assert graph - functions - biases_and_conv1 < 1200  # nodes of the network itself
    assert integer.ByteSize() < fp32.ByteSize() / 13  # 153 KB of float32 -> 10.8 KB


def test_onnxruntime_folds_every_decoder_into_plain_weights(compressed, tmp_path) -> None:
    model, encodings, masks, fp32 = compressed
    integer, _ = integer_onnx(fp32, model, encodings, masks)
    ops = _optimized_ops(integer, tmp_path / "integer.opt.onnx")
    assert ops == _optimized_ops(fp32, tmp_path / "fp32.opt.onnx")
    assert not DECODE_OPS & set(ops) - {"Reshape"}
    dequantized, _ = integer_onnx(fp32, model, encodings, masks, "dequantize_linear")
    # onnxruntime keeps a weight's DequantizeLinear (QDQ groups): decoded at every run
    assert "DequantizeLinear" in _optimized_ops(dequantized, tmp_path / "dq.opt.onnx")
    x = torch.rand(3, 1, 8, 8)
    assert np.abs(_run(dequantized, x) - _run(integer, x)).max() < 1e-6


class Wide(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3)
        self.fc = nn.Linear(16 * 6 * 6, 40)
        self.head = nn.Linear(40, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc(self.conv(x).relu().flatten(1)).relu())


@pytest.mark.parametrize(
    ("bits", "storage"),
    [(3, "bits3"), (4, "int4"), (6, "bits6"), (8, "int8"), (12, "bits12"), (16, "int16")],
)
def test_every_bit_width_decodes_exactly(bits: int, storage: str) -> None:
    torch.manual_seed(bits)
    model = Wide().eval()
    level = 2 ** (bits - 1) - 1
    values = torch.randint(-level, level + 1, model.fc.weight.shape)
    encoding = QuantizedWeights(bits, torch.rand(40) * 0.01 + 0.001, values)
    with torch.no_grad():
        model.fc.weight.copy_(encoding.dequantize())
    fp32 = export_fp32(model, torch.rand(2, 3, 8, 8))
    integer, report = integer_onnx(fp32, model, {"fc": encoding}, {})
    assert report.layers["fc"].storage[0] == storage
    x = torch.rand(4, 3, 8, 8)
    with torch.no_grad():
        assert _close(_run(integer, x), model(x).numpy())


def test_a_layer_too_wide_to_unpack_at_load_is_stored_natively(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """Past FOLD_LIMIT_BYTES of unpacking grid, 6-bit codes are stored as INT8 (a Cast that
    onnxruntime folds) instead of bit-packed codes it would unpack on every run."""
    torch.manual_seed(0)
    model = Wide().eval()
    values = torch.randint(-31, 32, model.fc.weight.shape)
    encoding = QuantizedWeights(6, torch.rand(40) * 0.01 + 0.001, values)
    with torch.no_grad():
        model.fc.weight.copy_(encoding.dequantize())
    fp32 = export_fp32(model, torch.rand(2, 3, 8, 8))
    grid = values.numel() * 6 * 8  # the int64 n x bits grid of unpack_bits
    monkeypatch.setattr(onnx_decoders, "FOLD_LIMIT_BYTES", grid)
    assert integer_onnx(fp32, model, {"fc": encoding}, {})[1].layers["fc"].storage[0] == "bits6"
    monkeypatch.setattr(onnx_decoders, "FOLD_LIMIT_BYTES", grid - 1)
    integer, report = integer_onnx(fp32, model, {"fc": encoding}, {})
    assert report.layers["fc"].storage[0] == "int8"
    assert _optimized_ops(integer, tmp_path / "opt.onnx") == _optimized_ops(
        fp32, tmp_path / "f.onnx"
    )
    x = torch.rand(4, 3, 8, 8)
    with torch.no_grad():
        assert _close(_run(integer, x), model(x).numpy())


def test_convolutions_followed_by_batch_norm_keep_their_codes() -> None:
    """The exporter's optimizer would fold the batch norm into the conv weight, which then
    matches no codes; the batch norm stays a node and the conv is stored as integers."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * 8 * 8, 10),
    ).eval()  # fmt: skip
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2.0)
    values = torch.randint(-7, 8, model[0].weight.shape)
    encoding = QuantizedWeights(4, torch.rand(8) * 0.05 + 0.01, values)
    with torch.no_grad():
        model[0].weight.copy_(encoding.dequantize())
    fp32 = export_fp32(model, torch.rand(2, 3, 8, 8))
    assert "BatchNormalization" in {node.op_type for node in fp32.graph.node}
    integer, report = integer_onnx(fp32, model, {"0": encoding}, {})
    assert report.float_layers == [] and report.layers["0"].storage[0] == "int4"
    x = torch.rand(4, 3, 8, 8)
    with torch.no_grad():
        assert _close(_run(integer, x), model(x).numpy())


@pytest.mark.parametrize(("clusters", "storage"), [(16, "uint4"), (200, "uint8"), (30, "bits5")])
def test_codebooks_of_every_size_decode_exactly(clusters: int, storage: str) -> None:
    torch.manual_seed(clusters)
    model = Wide().eval()
    codebook = torch.randn(clusters) * 0.05
    indices = torch.randint(0, clusters, model.fc.weight.shape)
    with torch.no_grad():
        model.fc.weight.copy_(codebook[indices])
    fp32 = export_fp32(model, torch.rand(2, 3, 8, 8))
    integer, report = integer_onnx(fp32, model, {"fc": SharedWeights(codebook, indices)}, {})
    assert report.layers["fc"].storage[0] == storage
    x = torch.rand(4, 3, 8, 8)
    with torch.no_grad():
        assert _close(_run(integer, x), model(x).numpy())


def test_pruned_layers_sparse_dense_and_empty() -> None:
    torch.manual_seed(0)
    model = Wide().eval()
    codebook = torch.tensor([-0.05, 0.02, 0.06])  # no +0.0 entry
    indices = torch.randint(0, 3, model.fc.weight.shape)
    fc_mask = torch.rand(model.fc.weight.shape) > 0.05  # 95% kept: dense, with a zero entry
    head_mask = torch.zeros(model.head.weight.shape, dtype=torch.bool)  # all pruned
    conv_mask = torch.rand(model.conv.weight.shape) > 0.7
    with torch.no_grad():
        model.fc.weight.copy_(codebook[indices] * fc_mask)
        model.head.weight.zero_()
        model.conv.weight.mul_(conv_mask)
    fp32 = export_fp32(model, torch.rand(2, 3, 8, 8))
    masks = {"fc": fc_mask, "head": head_mask, "conv": conv_mask}
    integer, report = integer_onnx(fp32, model, {"fc": SharedWeights(codebook, indices)}, masks)
    # 3 centroids + 0.0 still fit 2-bit indices: dense beats positions + codes
    assert report.layers["fc"].form == "dense"
    assert report.layers["head"].form == "sparse" and report.layers["head"].bytes < 100
    x = torch.rand(4, 3, 8, 8)
    with torch.no_grad():
        assert _close(_run(integer, x), model(x).numpy())


class Deep(nn.Module):
    def __init__(self, depth: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(256, 256) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x).relu()
        return x


@pytest.mark.parametrize(
    ("depth", "kept", "form"), [(1, 0.02, "sparse_inline"), (4, 0.05, "sparse")]
)
def test_sparse_layers_take_the_smaller_decoder_for_the_whole_model(
    depth: int, kept: float, form: str
) -> None:
    """One sparse layer with few kept weights is decoded inline (a zero value per filler);
    with four, the function ``scatter_gaps`` (about 550 bytes, paid once) costs less than
    the fillers' values."""
    torch.manual_seed(depth)
    model = Deep(depth).eval()
    encodings, masks = {}, {}
    for index, layer in enumerate(model.layers):
        mask = torch.rand(layer.weight.shape) < kept
        levels = torch.randint(-7, 8, layer.weight.shape) * mask
        encodings[f"layers.{index}"] = QuantizedWeights(4, torch.rand(256) * 0.01 + 0.001, levels)
        masks[f"layers.{index}"] = mask
        with torch.no_grad():
            layer.weight.copy_(encodings[f"layers.{index}"].dequantize())
    fp32 = export_fp32(model, torch.rand(2, 256))
    integer, report = integer_onnx(fp32, model, encodings, masks)
    assert {layer.form for layer in report.layers.values()} == {form}
    assert ("scatter_gaps" in {f.name for f in integer.functions}) == (form == "sparse")
    x = torch.rand(5, 256)
    with torch.no_grad():
        assert _close(_run(integer, x), model(x).numpy())


def test_values_get_short_names_and_the_interface_keeps_its_own(compressed) -> None:
    model, encodings, masks, fp32 = compressed
    integer, _ = integer_onnx(fp32, model, encodings, masks)
    graph = integer.graph
    interface = [value.name for value in [*graph.input, *graph.output]]
    assert interface == [value.name for value in [*fp32.graph.input, *fp32.graph.output]]
    values = {name for node in graph.node for name in [*node.input, *node.output]}
    values |= {initializer.name for initializer in graph.initializer}
    assert all(len(name) <= 2 for name in values - set(interface)), values
    assert not graph.metadata_props  # the exporter's program signature is dropped


def test_a_weight_that_differs_from_its_codes_is_refused(compressed) -> None:
    model, encodings, masks, fp32 = compressed
    wrong = QuantizedWeights(4, encodings["fc1"].scales * 2, encodings["fc1"].values)
    with pytest.raises(ExportFailed, match="decodes layer 'fc1' to other values"):
        integer_onnx(fp32, model, {**encodings, "fc1": wrong}, masks)


def test_the_exported_files_carry_no_debug_metadata() -> None:
    torch.manual_seed(0)
    model, _ = zoo.build("small_cnn")
    fp32 = export_fp32(model.eval(), torch.rand(2, 1, 8, 8))
    text = fp32.SerializeToString()
    assert b"stack_trace" not in text and b".py" not in text  # no source paths handed out
    assert all(not node.name and not node.metadata_props for node in fp32.graph.node)
    conv = next(node for node in fp32.graph.node if node.op_type == "Conv")
    assert [a.name for a in conv.attribute] == ["pads"]  # defaults dropped
