"""Pipelines of all four step types plus fine-tuning, the packed size, and sweeps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compression import Spec, compress
from compression.data import Dataset
from compression.encoding import QuantizedWeights, SharedWeights
from compression.io import LoadedModel
from compression.packed import load_packed

FAST = {"attribution": {"samples": 256}, "evaluation": {"latency_repeats": 3}}


def test_prune_share_quantize_finetune_keeps_every_constraint(
    trained_digits_cnn: LoadedModel, digits: Dataset, tmp_path: Path
) -> None:
    spec = Spec.model_validate(
        {
            **FAST,
            "steps": [
                {"type": "prune_filters", "ratio": 0.25},
                {"type": "prune_weights", "sparsity": 0.8, "layers": ["fc1"]},
                {"type": "share_weights", "clusters": 8, "layers": ["fc1", "fc2"]},
                {"type": "quantize_mixed", "average_bits": 5, "layers": ["conv1", "conv2"]},
                {"type": "finetune", "epochs": 1, "lr": 1e-3},
            ],
        }
    )
    path = tmp_path / "m.xaic"
    result = compress(trained_digits_cnn, digits, spec, packed_path=path)

    layers = dict(result.model.module.named_modules())
    fc1 = layers["fc1"].weight
    assert int((fc1 == 0).sum()) >= round(0.8 * fc1.numel())  # zeros survived fine-tuning
    assert torch.equal(fc1 == 0, ~result.masks["fc1"])
    for name in ("fc1", "fc2"):
        encoding = result.encodings[name]
        assert isinstance(encoding, SharedWeights)
        kept = (
            layers[name].weight[result.masks[name]] if name in result.masks else layers[name].weight
        )
        assert torch.unique(kept).numel() <= 8  # still shared after fine-tuning
    bits = {}
    for name in ("conv1", "conv2"):
        encoding = result.encodings[name]
        assert isinstance(encoding, QuantizedWeights)
        assert int(encoding.values.abs().max()) <= encoding.max_level
        assert torch.equal(layers[name].weight, encoding.dequantize())
        bits[name] = encoding.bits
    sizes = {name: layers[name].weight.numel() for name in bits}
    average = sum(bits[n] * sizes[n] for n in bits) / sum(sizes.values())
    assert average <= 5
    report = result.metrics["steps"][3]
    assert report["bits"] == bits and report["average_bits"] == pytest.approx(average)
    assert result.metrics["steps"][4]["type"] == "finetune"
    assert {"sharing", "quantizing", "finetuning"} <= set(result.metrics["stage_seconds"])
    rows = {row["name"]: row for row in result.metrics["layers"]}
    assert rows["fc1"]["clusters"] <= 8 and rows["fc1"]["bits"] == 3
    assert rows["conv1"]["bits"] == bits["conv1"]

    assert result.metrics["after"]["packed_bytes"] == path.stat().st_size  # the file kept
    loaded = load_packed(path)
    x = digits.x[:16]
    assert torch.equal(loaded(x), result.model.module(x))
    assert result.metrics["reduction"]["size"] > 5


def test_relevance_is_not_recomputed_for_an_unchanged_model(
    trained_digits_cnn: LoadedModel, digits: Dataset
) -> None:
    steps = [
        {"type": "prune_weights", "sparsity": 0.5, "layers": ["fc1"]},
        {"type": "share_weights", "clusters": 16, "weighting": "relevance"},
    ]
    reused = compress(trained_digits_cnn, digits, Spec.model_validate({**FAST, "steps": steps}))
    assert reused.metrics["attribution"]["passes"] == 1
    fresh_spec = {**FAST, "steps": steps, "attribution": {"samples": 256, "reattribute": True}}
    fresh = compress(trained_digits_cnn, digits, Spec.model_validate(fresh_spec))
    assert fresh.metrics["attribution"]["passes"] == 2


def test_a_sweep_returns_one_point_per_value_from_one_attribution(
    trained_digits_cnn: LoadedModel, digits: Dataset
) -> None:
    spec = Spec.model_validate(
        {
            **FAST,
            "steps": [{"type": "share_weights", "clusters": 16, "weighting": "relevance"}],
            "sweep": {"parameter": "clusters", "values": [2, 4, 16], "max_accuracy_drop": 0.02},
        }
    )
    result = compress(trained_digits_cnn, digits, spec)

    sweep = result.metrics["sweep"]
    assert [point["clusters"] for point in sweep["points"]] == [2, 4, 16]
    assert sweep["attribution_passes"] == 1
    sizes = [point["packed_bytes"] for point in sweep["points"]]
    assert sizes == sorted(sizes)  # more clusters, more bits per index
    before = result.metrics["before"]["accuracy"]
    good = [p for p in sweep["points"] if p["accuracy"] >= before - 0.02]
    chosen = sweep["points"][sweep["chosen"]]
    assert chosen == min(good, key=lambda p: p["packed_bytes"])
    assert result.metrics["after"]["packed_bytes"] == chosen["packed_bytes"]


def test_sweep_values_must_fit_the_step() -> None:
    with pytest.raises(ValueError, match="has no clusters"):
        Spec.model_validate(
            {
                "steps": [{"type": "prune_filters"}],
                "sweep": {"parameter": "clusters", "values": [4]},
            }
        )
    with pytest.raises(ValueError, match="ratio"):
        Spec.model_validate(
            {"steps": [{"type": "prune_filters"}], "sweep": {"parameter": "ratio", "values": [1.5]}}
        )
