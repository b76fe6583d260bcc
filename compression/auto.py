"""``auto``: let the data pick the criterion for a step.

The calibration data is split in two. Each candidate criterion scores on the first half,
the step is applied to a copy of the model, and the copy's accuracy on the second half
decides. The winner then runs on all calibration data. The report lists every candidate's
held-out accuracy, the winner, and its lead over the runner-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from compression.criteria import Criterion
from compression.data import Dataset, split
from compression.evaluate import top1_accuracy
from compression.progress import Monitor
from compression.steps import WorkingModel, apply_step
from jobspec import Step

CANDIDATES = ("deeplift", "taylor", "l1")
"""In order of preference when held-out accuracies tie."""


def apply_auto(
    working: WorkingModel,
    step: Step,
    make_criterion: Callable[[str], Criterion],
    data: Dataset,
    seed: int,
    monitor: Monitor | None = None,
) -> dict[str, Any]:
    scoring, holdout = split(data, 0.5, seed)
    accuracy: dict[str, float] = {}
    for name in CANDIDATES:
        trial = working.copy()
        trial.cache.clear()  # score on the scoring half only: no held-out sample leaks in
        apply_step(trial, step, make_criterion(name), scoring, monitor)
        accuracy[name] = top1_accuracy(trial.module, holdout, runtime=trial.runtime)
    ranked = sorted(CANDIDATES, key=lambda name: (-accuracy[name], CANDIDATES.index(name)))
    winner, runner_up = ranked[0], ranked[1]
    report = apply_step(working, step, make_criterion(winner), data, monitor)
    report["criterion"] = "auto"
    report["auto"] = {
        "holdout_accuracy": accuracy,
        "holdout_samples": holdout.num_samples,
        "winner": winner,
        "lead": accuracy[winner] - accuracy[runner_up],
    }
    return report
