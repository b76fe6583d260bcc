"""Progress spans compose: nested shares of the work never report past their parent's share."""

from __future__ import annotations

import pytest

from compression import Spec, compress
from compression.data import Dataset
from compression.io import LoadedModel
from compression.progress import Monitor


def test_nested_spans_map_into_their_parent() -> None:
    seen: list[float] = []
    monitor = Monitor(lambda stage, fraction, overall: seen.append(overall))
    with monitor.within(0.1, 0.5):
        monitor.report(0.5)  # 0.1 + 0.5 * 0.4
        with monitor.within(0.5, 1.0):  # [0.3, 0.5] overall
            monitor.report(0.0)
            monitor.report(0.5)
            with monitor.within(0.0, 0.5):  # [0.3, 0.4] overall
                monitor.report(1.0)
            monitor.report(1.0)
        assert monitor.span == (0.1, 0.5)
    assert monitor.span == (0.0, 1.0)
    monitor.report(1.0)
    assert seen == pytest.approx([0.3, 0.3, 0.4, 0.4, 0.5, 1.0])


def test_overall_never_goes_back_when_a_span_restarts() -> None:
    seen: list[float] = []
    monitor = Monitor(lambda stage, fraction, overall: seen.append(overall))
    with monitor.within(0.0, 0.5):
        monitor.report(1.0)
    with monitor.within(0.25, 1.0):  # overlaps what was already reported
        monitor.report(0.0)
        monitor.report(0.5)
    assert seen == pytest.approx([0.5, 0.5, 0.625])


def test_a_four_point_sweep_progresses_evenly_to_one_at_the_end(
    trained_digits_cnn: LoadedModel, digits: Dataset
) -> None:
    spec = Spec.model_validate(
        {
            "steps": [{"type": "prune_filters", "ratio": 0.25}, {"type": "share_weights"}],
            "criterion": "l1",
            "attribution": {"samples": 128, "batch_size": 64},
            "evaluation": {"latency_repeats": 3},
            "sweep": {"parameter": "ratio", "values": [0.125, 0.25, 0.375, 0.5]},
        }
    )
    events: list[tuple[str, float, float]] = []
    compress(trained_digits_cnn, digits, spec, progress=lambda *event: events.append(event))

    overall = [total for _, _, total in events]
    assert overall == sorted(overall) and overall[0] == 0.0 and overall[-1] == 1.0
    assert all(0.0 <= total <= 1.0 for total in overall)
    # 1.0 is reached only in the last point's closing measurement (it was event 10 of 39)
    last_measurement = 0.775 + 0.8 * 0.225  # the steps take 80% of a point's share
    assert {stage for stage, _, total in events if total > last_measurement + 1e-9} == {
        "evaluating"
    }
    assert overall.index(1.0) >= len(overall) - 3
    # each measurement ("evaluating" closed at 1.0) ends exactly its share: the model before
    # (first 10%), then each of the four points (22.5% each)
    closes = {total for stage, fraction, total in events if (stage, fraction) == ("evaluating", 1)}
    assert sorted(closes) == pytest.approx([0.1, 0.325, 0.55, 0.775, 1.0])
    # every point reports inside its own share; with work per point about equal, elapsed
    # time is proportional to progress, so an ETA of elapsed * (1 - p) / p is sensible
    starts = [index for index, (stage, fraction, _) in enumerate(events) if stage == "pruning"]
    assert len(starts) >= 4
    first_point = [total for _, _, total in events[: events.index(("evaluating", 1.0, 0.325))]]
    assert max(first_point) <= 0.325
