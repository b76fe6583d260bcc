"""report.html from a real compression run: self-contained, true to the metrics, and
input relevance maps that are DeepLIFT's (checked by hand on a linear model)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compression import Spec, compress
from compression.attribution.input_relevance import input_relevance
from compression.data import Dataset
from compression.io import LoadedModel
from compression.pipeline import Result
from compression.report import RelevanceSamples, relevance_samples, render_report
from compression.report.render import completeness_sentence
from compression.report.samples import pick_samples
from tests.report_checks import assert_numbers_match, assert_offline, parse

SWEEP = Spec(
    steps=[{"type": "prune_filters", "ratio": 0.5}],
    sweep={"step": 0, "parameter": "ratio", "values": [0.25, 0.75]},
    attribution={"samples": 128},
    evaluation={"latency_repeats": 3},
)


@pytest.fixture(scope="module")
def swept(trained_digits_cnn: LoadedModel, digits: Dataset) -> Result:
    """Without the ONNX deliverables (the API test's job has them)."""
    return compress(trained_digits_cnn, digits, SWEEP)


def test_input_relevance_of_a_linear_model_is_input_times_the_label_weights() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x = torch.randn(5, 1, 3, 4)
    y = torch.tensor([0, 2, 1, 2, 0])
    data = Dataset(x, y, ("a", "b", "c"))
    found = input_relevance(model, data, torch.arange(5))
    weights = model[1].weight.detach()
    assert torch.allclose(found.maps, x * weights[y].view(5, 1, 3, 4), atol=1e-6)
    assert torch.equal(found.predicted, model(x).argmax(dim=1))
    assert found.completeness_error < 1e-6


def test_samples_are_the_first_of_distinct_classes_in_dataset_order() -> None:
    y = torch.tensor([3, 3, 1, 3, 0, 1, 2, 5])
    data = Dataset(torch.zeros(8, 2), y, tuple("abcdef"))
    assert pick_samples(data, 3).tolist() == [0, 2, 4]
    assert pick_samples(data, 10).tolist() == [0, 2, 4, 6, 7]


def test_relevance_maps_of_the_digits_cnn_are_complete_and_image_shaped(
    trained_digits_cnn: LoadedModel, swept: Result, digits: Dataset
) -> None:
    maps = relevance_samples(trained_digits_cnn.module, swept.model.module, digits)
    assert maps.unavailable is None and len(maps.samples) == 4
    assert maps.completeness_before < 1e-4 and maps.completeness_after < 1e-4
    assert [sample.label for sample in maps.samples] == ["0", "1", "2", "3"]
    for sample in maps.samples:
        assert sample.image.shape == sample.before.shape == sample.after.shape == (8, 8)
        assert sample.image.min() >= 0.0 and sample.image.max() == pytest.approx(1.0)
        assert not (sample.before == sample.after).all()  # pruned filters change the maps


def test_report_is_self_contained_and_shows_the_metrics(
    trained_digits_cnn: LoadedModel, swept: Result, digits: Dataset
) -> None:
    maps = relevance_samples(trained_digits_cnn.module, swept.model.module, digits)
    html = render_report(
        swept.metrics, maps, title="Report <job>", spec=SWEEP.model_dump(mode="json")
    )
    images = assert_offline(html)
    assert len(images) == 4  # sizes, layers, relevance grid, sweep curve
    page = parse(html)
    checked = assert_numbers_match(page.numbers, swept.metrics)
    paths = {path for path, _, _ in page.numbers}
    assert {
        "before.accuracy", "after.accuracy", "before.fp32_bytes",
        "after.packed_bytes", "reduction.size", "before.macs", "after.macs",
        "latency.before.median_ms",
        "layers.3.channels_kept", "sweep.points.1.packed_bytes",
        "attribution.completeness_error",
    } <= paths  # fmt: skip
    assert "onnxruntime" not in html  # no ONNX deliverables, no made-up rows for them
    assert checked >= 40
    assert "Report &lt;job&gt;" in html  # names are escaped, never markup
    chosen = swept.metrics["sweep"]["chosen"]
    assert f"ratio = {SWEEP.sweep.values[chosen]}" in html


def test_completeness_is_explained_in_one_sentence() -> None:
    assert "no completeness error" in completeness_sentence(None, "l1")
    assert "exact for this model" in completeness_sentence(3e-8, "deeplift")
    assert "miss the change in the model's output by 5.0%" in completeness_sentence(0.05, "auto")
    for error in (None, 3e-8, 0.05):
        assert completeness_sentence(error, "deeplift").count(". ") == 0


class _Branching(nn.Module):
    """Control flow on the data: cannot be traced, so DeepLIFT cannot run on it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) if x.sum() > 0 else -self.fc(x.flatten(1))


def test_a_model_without_maps_still_gets_its_report(swept: Result, digits: Dataset) -> None:
    model = _Branching()
    maps = relevance_samples(model, model, digits)
    assert maps.samples == [] and "cannot be traced" in maps.unavailable
    html = render_report(swept.metrics, maps, title="no maps")
    assert len(assert_offline(html)) == 3
    assert "Input relevance maps are not available for this model" in html
    empty = render_report(swept.metrics, RelevanceSamples([], unavailable="x"), title="t")
    assert "not available for this model: x" in empty
