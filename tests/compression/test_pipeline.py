"""compress(): steps in order on a copy, progress per stage, prompt cancellation, a report."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from compression import Spec, compress
from compression.data import Dataset
from compression.errors import Cancelled, ShapeMismatch
from compression.evaluate import count_parameters
from compression.io import LoadedModel

SPEC = {
    "steps": [
        {"type": "prune_filters", "ratio": 0.5},
        {"type": "prune_weights", "sparsity": 0.9, "layers": ["fc1"]},
    ],
    "criterion": "taylor",
    "attribution": {"samples": 256, "batch_size": 64},
    "evaluation": {"latency_repeats": 5},
}


def test_steps_run_in_order_and_report(trained_digits_cnn: LoadedModel, digits: Dataset) -> None:
    original = {k: v.clone() for k, v in trained_digits_cnn.module.state_dict().items()}
    events: list[tuple[str, float]] = []

    result = compress(
        trained_digits_cnn,
        digits,
        Spec.model_validate(SPEC),
        progress=lambda *event: events.append(event),
    )

    metrics = result.metrics
    model = result.model.module
    # the caller's model is untouched
    for key, value in trained_digits_cnn.module.state_dict().items():
        assert torch.equal(value, original[key])
    # conv2 and fc1 lose half their channels (conv1 and fc2 are protected by default)
    rows = {row["name"]: row for row in metrics["layers"]}
    assert [rows[n]["channels_kept"] for n in ("conv1", "conv2", "fc1", "fc2")] == [16, 16, 32, 10]
    assert rows["fc1"]["shape_after"] == (32, 16 * 4 * 4)
    assert abs(rows["fc1"]["sparsity"] - 0.9) <= 1 / (32 * 256)
    assert sum(row["score_share"] for row in rows.values()) == pytest.approx(1.0)
    total, nonzero = count_parameters(model)
    assert (
        metrics["after"]["parameters"] == total
        and metrics["after"]["nonzero_parameters"] == nonzero
    )
    assert metrics["before"]["parameters"] == count_parameters(trained_digits_cnn.module)[0]
    assert metrics["reduction"]["macs"] > 1.9
    assert metrics["data"] == {
        "model_classes": 10,
        "classes_covered": 10,
        "evaluation_classes_covered": 10,
        "training_samples": 898,
        "calibration_samples": 256,
        "evaluation_samples": 899,
    }
    assert metrics["steps"] == [
        {"type": "prune_filters", "criterion": "taylor"},
        {"type": "prune_weights", "criterion": "taylor"},
    ]
    assert 0.9 < metrics["before"]["accuracy"] <= 1.0
    assert 0 <= metrics["after"]["accuracy"] <= 1.0
    assert set(metrics["stage_seconds"]) == {"evaluating", "attributing", "pruning"}
    # progress: per stage, fractions in [0, 1], each stage closed at 1.0; overall monotonic
    stages = [stage for stage, _, _ in events]
    assert stages[0] == "evaluating" and stages[-1] == "evaluating"
    assert "attributing" in stages and "pruning" in stages
    assert all(0.0 <= fraction <= 1.0 for _, fraction, _ in events)
    overall = [total for _, _, total in events]
    assert overall == sorted(overall) and overall[0] == 0.0
    assert events[-1] == ("evaluating", 1.0, 1.0)
    assert max(t for s, _, t in events if s == "attributing") <= 0.85
    assert len(result.scores) == 2


def test_cancellation_inside_attribution_stops_the_job(
    trained_digits_cnn: LoadedModel, digits: Dataset
) -> None:
    seen: list[str] = []

    def should_cancel() -> bool:
        return seen.count("attributing") >= 2  # after the first attribution batch

    with pytest.raises(Cancelled, match="attributing"):
        compress(
            trained_digits_cnn,
            digits,
            Spec.model_validate(SPEC),
            progress=lambda stage, fraction, overall: seen.append(stage),
            should_cancel=should_cancel,
        )


def test_wrong_data_shape_is_refused(trained_digits_cnn: LoadedModel, digits: Dataset) -> None:
    flat = Dataset(digits.x.flatten(1), digits.y, digits.classes)
    with pytest.raises(ShapeMismatch):
        compress(trained_digits_cnn, flat, Spec.model_validate(SPEC))


@pytest.mark.parametrize(
    "bad",
    [
        {"steps": []},
        {"steps": [{"type": "prune_filters", "ratio": 1.5}]},
        {"steps": [{"type": "prune_filters", "ratio": 0.5, "layer_ratios": {"fc1": 1.0}}]},
        {"steps": [{"type": "shrink"}]},
        {"steps": [{"type": "prune_weights"}], "criterion": "magic"},
        {"steps": [{"type": "prune_weights"}], "unknown": 1},
    ],
)
def test_invalid_specs_are_rejected(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Spec.model_validate(bad)


def test_default_deeplift_reports_its_completeness(
    trained_digits_cnn: LoadedModel, digits: Dataset
) -> None:
    spec = Spec.model_validate({**SPEC, "criterion": "deeplift"})
    metrics = compress(trained_digits_cnn, digits, spec).metrics
    assert metrics["criterion"] == "deeplift"
    assert metrics["attribution"]["baseline"] == "zeros"
    assert metrics["attribution"]["target"] == "logit"
    assert 0 <= metrics["attribution"]["completeness_error"] < 1e-4
    assert metrics["attribution"]["completeness_ok"] is True
    assert "warning" not in metrics["attribution"]
    assert [step["criterion"] for step in metrics["steps"]] == ["deeplift", "deeplift"]


class _Normalized(torch.nn.Module):
    """Divides features by their input-dependent norm: no DeepLIFT rule conserves that."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 32)
        self.fc2 = torch.nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(h / (h.sum(dim=1, keepdim=True) + 1.0))


def test_a_job_whose_relevance_is_not_conserved_says_so(digits: Dataset) -> None:
    torch.manual_seed(0)
    model = LoadedModel(_Normalized().eval(), (1, 8, 8), 10, "test")
    spec = Spec.model_validate(
        {
            "steps": [{"type": "prune_weights", "sparsity": 0.5}],
            "evaluation": {"latency_repeats": 3},
        }
    )
    report = compress(model, digits, spec).metrics["attribution"]
    assert report["completeness_error"] > 1e-3
    assert report["completeness_ok"] is False
    assert "no conserving rule" in report["warning"]


def test_data_covering_few_of_the_model_classes_is_compressed(trained_digits_cnn, digits):
    """A calibration set that holds only some classes (here 3 of 10) is normal: accuracy is
    over the samples given, and the report says how many classes the data covers."""
    few = digits.subset(digits.y < 3)
    spec = Spec.model_validate(
        {"steps": [{"type": "prune_filters", "ratio": 0.25}], "criterion": "l1",
         "attribution": {"samples": 64}, "evaluation": {"latency_repeats": 3}}
    )  # fmt: skip
    metrics = compress(trained_digits_cnn, few, spec).metrics
    assert metrics["data"]["model_classes"] == 10
    assert metrics["data"]["classes_covered"] == metrics["data"]["evaluation_classes_covered"] == 3
    evaluated = metrics["data"]["evaluation_samples"]
    assert evaluated == few.num_samples - metrics["data"]["training_samples"]
    assert metrics["before"]["accuracy"] * evaluated == pytest.approx(
        round(metrics["before"]["accuracy"] * evaluated)
    )
