"""The benchmark registry and report: the data is reproducible, the halves are as documented,
one real sweep produces sane rows, and the win/tie/loss verdicts follow the numbers."""

from __future__ import annotations

import pytest
import torch

from benchmarks import registry, report
from benchmarks.shapes import CLASSES, make_shapes


def test_shapes_are_seeded_balanced_and_in_range() -> None:
    first, again, other = make_shapes(60, seed=3), make_shapes(60, seed=3), make_shapes(60, seed=4)
    assert torch.equal(first.x, again.x) and torch.equal(first.y, again.y)
    assert not torch.equal(first.x, other.x)
    assert first.x.shape == (60, 3, 32, 32)
    assert float(first.x.min()) >= 0 and float(first.x.max()) <= 1
    assert torch.bincount(first.y, minlength=len(CLASSES)).tolist() == [6] * 10


def test_registry_has_eight_pairs_split_in_equal_halves() -> None:
    names = [pair.name for pair in registry.PAIRS]
    assert len(names) == len(set(names)) >= 8
    assert len(registry.pairs("tuning")) == len(registry.pairs("confirmation")) == 4
    assert registry.pair("digits28-lenet5").half == "confirmation"
    train, test = registry.digits28_splits(0)
    assert train.sample_shape == test.sample_shape == (1, 28, 28)


def test_one_sweep_gives_a_row_per_strength(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(registry, "CACHE", tmp_path)
    wine = registry.pair("wine-mlp")
    rows = report.run_one(wine, 0, report.METHODS[0], "deeplift", False, report.MODES["quick"])
    assert [row["strength"] for row in rows] == list(report.METHODS[0].quick)
    assert rows[0]["before_accuracy"] > 0.85  # the MLP learned wine
    assert all(0 <= row["accuracy"] <= 1 for row in rows)
    ratios = [row["size_ratio"] for row in rows]
    assert 1 < ratios[0] < ratios[1] < ratios[2]  # more filters pruned, smaller file
    assert list(tmp_path.glob("wine-mlp-s0-*.pt"))  # the trained model was cached


def test_verdicts_follow_the_means() -> None:
    rows = []
    for criterion, accuracies in {
        "deeplift": (0.90, 0.80, 0.50),
        "l1": (0.895, 0.85, 0.30),
        "taylor": (0.70, 0.84, 0.40),
        "random": (0.5, 0.4, 0.2),
    }.items():
        for strength, accuracy in zip((0.5, 0.7, 0.9), accuracies, strict=True):
            rows.append(
                {"pair": "p", "method": "filters", "finetune": False,
                 "criterion": criterion, "strength": strength, "accuracy": accuracy}
            )  # fmt: skip
    pair = registry.Pair("p", "confirmation", "toy", registry.digits_splits, lambda: None)
    found = report.comparisons(report.aggregate(rows), pair, report.METHODS[0], False)
    assert [c["verdict"] for c in found] == ["tie", "loss", "win"]
    assert [c["best"] for c in found] == ["l1", "l1", "taylor"]
    assert round(found[2]["deeplift"] - found[2]["best_value"], 6) == 10.0


def test_size_vs_bits_sets_each_pair_beside_the_ideal() -> None:
    rows = [
        {"pair": "wine-mlp", "method": "precision", "criterion": "deeplift", "finetune": False,
         "strength": 4, "size_ratio": ratio}
        for ratio in (6.0, 7.0)
    ] + [
        {"pair": "wine-mlp", "method": "precision", "criterion": "l1", "finetune": False,
         "strength": 4, "size_ratio": 100.0},  # other criteria and fine-tuned rows are left out
        {"pair": "wine-mlp", "method": "sharing", "criterion": "deeplift", "finetune": True,
         "strength": 4, "size_ratio": 100.0},
    ]  # fmt: skip
    text = report.size_vs_bits(report.table_sizes(rows))
    assert "sharing" not in text.split("\n")[0]  # no sharing rows without fine-tuning
    assert "| ideal: 32 / bits | 8.0x |" in text
    assert "| wine-mlp | 6.5x |" in text


@pytest.mark.slow  # two fresh interpreters import torch and the engine: a minute on 2 cores
def test_collect_runs_on_workers_and_resumes_from_its_log(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XAI_BENCH_CACHE", str(tmp_path / "models"))
    wine = registry.pair("wine-mlp")
    mode = report.MODES["quick"]
    log = tmp_path / "runs.jsonl"
    method = report.Method("filters", "ratio", (0.5,), (0.3, 0.6), ("deeplift", "l1"))
    rows, finished, planned = report.collect(mode, [wine], log, 1e9, [method], jobs=2)
    assert finished == planned == 2
    assert sorted((r["criterion"], r["strength"]) for r in rows) == [
        ("deeplift", 0.3), ("deeplift", 0.6), ("l1", 0.3), ("l1", 0.6)
    ]  # fmt: skip
    assert len(log.read_text().splitlines()) == 2
    assert len(list((tmp_path / "models").glob("wine-mlp-s0-*.pt"))) == 1  # trained once
    again, finished_again, _ = report.collect(mode, [wine], log, 0.0, [method], jobs=2)
    assert finished_again == 2 and again == rows  # nothing rerun: all came from the log
