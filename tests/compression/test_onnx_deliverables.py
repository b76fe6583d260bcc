"""compress(onnx_dir=...): the ONNX files a job hands out, checked against torch, and their
onnxruntime figures beside the torch ones; the opt-in int8 runtime model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from pydantic import ValidationError

from compression import Spec, compress
from compression.data import Dataset
from compression.deploy import deliverables
from compression.deploy.ort_measure import all_threads
from compression.errors import ExportFailed
from compression.io import LoadedModel

FAST = {"attribution": {"samples": 256}, "evaluation": {"latency_repeats": 5}}
STEPS = [
    {"type": "prune_weights", "sparsity": 0.8, "layers": ["fc1"]},
    {"type": "share_weights", "clusters": 8, "layers": ["fc1", "fc2"]},
    {"type": "quantize_mixed", "average_bits": 4, "layers": ["conv1", "conv2"]},
]


def _logits(path: Path, x: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def test_the_onnx_deliverables_are_written_checked_and_timed(
    trained_digits_cnn: LoadedModel, digits: Dataset, tmp_path: Path
) -> None:
    spec = Spec.model_validate({**FAST, "steps": STEPS})
    result = compress(
        trained_digits_cnn, digits, spec, packed_path=tmp_path / "model.xaic", onnx_dir=tmp_path
    )
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["model.fp32.onnx", "model.onnx", "model.xaic"]
    metrics = result.metrics
    sizes = metrics["onnx"]["bytes"]
    assert sizes["model.onnx"] == (tmp_path / "model.onnx").stat().st_size
    assert sizes["model.onnx"] * 8 < sizes["model.fp32.onnx"]
    assert metrics["onnx"]["max_abs_diff"] <= metrics["onnx"]["atol"]
    assert {name: layer["kind"] for name, layer in metrics["onnx"]["layers"].items()} == {
        "conv1": "quantized", "conv2": "quantized", "fc1": "shared", "fc2": "shared",
    }  # fmt: skip
    assert metrics["onnx"]["layers"]["fc1"]["form"] == "sparse"
    x = digits.x[:16]
    with torch.no_grad():
        expected = result.model.module(x).numpy()
    for name in ("model.onnx", "model.fp32.onnx"):
        assert np.allclose(_logits(tmp_path / name, x), expected, rtol=1e-3, atol=1e-4)
    # onnxruntime latency of the original and the delivered file, beside torch's
    latency = metrics["onnxruntime_latency"]
    assert latency["threads"] == torch.get_num_threads() and latency["batch"] == 1
    assert latency["repeats"] == 5
    for side in ("before", "after"):
        assert metrics[side]["onnxruntime_latency_ms"] == latency[side]["median_ms"] > 0
        assert metrics[side]["latency_ms"] > 0
    assert "exporting" in metrics["stage_seconds"]


def test_int8_runtime_delivers_a_calibrated_qdq_model(
    trained_digits_cnn: LoadedModel, digits: Dataset, tmp_path: Path
) -> None:
    steps = [*STEPS, {"type": "int8_runtime", "calibration_samples": 128}]
    spec = Spec.model_validate({**FAST, "steps": steps})
    result = compress(trained_digits_cnn, digits, spec, onnx_dir=tmp_path)
    int8 = onnx.load(str(tmp_path / "model.int8.onnx"))
    ops = {node.op_type for node in int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    report = result.metrics["int8_runtime"]
    assert report["calibration_samples"] == 128
    assert report["bytes"] == (tmp_path / "model.int8.onnx").stat().st_size
    assert report["bytes"] * 2.5 < result.metrics["onnx"]["bytes"]["model.fp32.onnx"]
    assert report["accuracy_fp32"] > 0.9 and report["accuracy_drop"] < 0.02
    assert report["accuracy_drop"] == report["accuracy_fp32"] - report["accuracy_int8"]
    threads = sorted({1, all_threads()})
    assert [(t["batch"], t["threads"]) for t in report["latency"]] == [
        (batch, n) for batch in (1, 32) for n in threads
    ]
    assert result.metrics["steps"][-1] == {"type": "int8_runtime", "applied_to": "model.int8.onnx"}
    x = digits.x[:64]
    agree = _logits(tmp_path / "model.int8.onnx", x).argmax(1) == _logits(
        tmp_path / "model.fp32.onnx", x
    ).argmax(1)
    assert agree.mean() > 0.95


def test_int8_runtime_is_the_last_step_once() -> None:
    int8 = {"type": "int8_runtime"}
    with pytest.raises(ValidationError, match="once, as the last step"):
        Spec.model_validate({"steps": [int8, STEPS[0]]})
    with pytest.raises(ValidationError, match="once, as the last step"):
        Spec.model_validate({"steps": [STEPS[0], int8, int8]})
    with pytest.raises(ValidationError, match="needs a compression step"):
        Spec.model_validate({"steps": [int8]})
    with pytest.raises(ValidationError, match="calibration_samples"):
        Spec.model_validate({"steps": [STEPS[0], {**int8, "calibration_samples": 0}]})
    assert Spec.model_validate({"steps": [STEPS[0], int8]}).int8_runtime is not None


def test_a_failed_integer_rewrite_still_delivers_float32(
    trained_digits_cnn: LoadedModel, digits: Dataset, tmp_path: Path, monkeypatch
) -> None:
    def broken(*args, **kwargs):
        raise ExportFailed("the integer ONNX model decodes layer 'fc1' to other values")

    monkeypatch.setattr(deliverables, "finish_integer", broken)  # the decoded-weight check
    spec = Spec.model_validate({**FAST, "steps": STEPS[:1]})
    result = compress(trained_digits_cnn, digits, spec, onnx_dir=tmp_path)
    onnx_report = result.metrics["onnx"]
    assert "decodes layer 'fc1'" in onnx_report["integer_fallback"]
    assert (tmp_path / "model.onnx").read_bytes() == (tmp_path / "model.fp32.onnx").read_bytes()
    assert onnx_report["layers"] == {} and onnx_report["float_layers"] == ["fc1"]
