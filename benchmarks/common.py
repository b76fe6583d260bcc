"""Shared pieces of the benchmarks: data, quick training, tables, result files.

Every benchmark trains its own models from packaged data (no downloads), so a clean
checkout reproduces the numbers.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import torch
from sklearn.datasets import load_digits

from compression import zoo
from compression.data import Dataset, split
from compression.io import LoadedModel
from compression.training import fit

RESULTS = Path(__file__).parent / "results"


def digits_splits(seed: int) -> tuple[Dataset, Dataset]:
    """(train, test) of sklearn's 8x8 digits, stratified, 60/40."""
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    data = Dataset(x, torch.tensor(bunch.target), tuple(str(i) for i in range(10)))
    return split(data, 0.6, seed)


def train(
    name: str, args: dict, data: Dataset, seed: int, epochs: int = 15, lr: float = 1e-2
) -> LoadedModel:
    """Train a zoo model from a seeded initialisation."""
    torch.manual_seed(seed)
    model, shape = zoo.build(name, args)
    fit(model, data, epochs=epochs, lr=lr, seed=seed)
    return LoadedModel(model, shape, data.num_classes, f"zoo:{name}")


def mean_spread(values: Sequence[float], scale: float = 100.0) -> str:
    """'mean ± std' (std over seeds), scaled (accuracy in %)."""
    mean = statistics.fmean(values) * scale
    spread = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {spread:.1f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, title: str, sections: dict[str, str], raw: object) -> Path:
    """Write results/<name>.md (tables) and results/<name>.json (raw numbers)."""
    RESULTS.mkdir(exist_ok=True)
    header = (
        f"# {title}\n\nRun {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads.\n"
    )
    body = "\n".join(f"\n## {heading}\n\n{table}\n" for heading, table in sections.items())
    markdown = RESULTS / f"{name}.md"
    markdown.write_text(header + body)
    (RESULTS / f"{name}.json").write_text(json.dumps(raw, indent=2))
    return markdown


def sections_main(
    name: str,
    title: str,
    doc: str,
    sections: Callable[[bool], dict[str, str]],
    threads: int = 1,
) -> None:
    """The command line of a benchmark whose tables BENCHMARKS.md also embeds: ``--quick``,
    a fixed thread count, and the tables written to results/<name>.md and .json."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and cases")
    args = parser.parse_args()
    torch.set_num_threads(threads)
    tables = sections(args.quick)
    print(write_results(name, title, tables, tables).read_text())


def mnist1d_splits(seed: int) -> tuple[Dataset, Dataset]:
    """(train, test) of mnist1d generated offline with its default arguments, as (N, 1, 40).

    The generator's split is fixed (``seed`` does not change it); generated once a process."""
    return _mnist1d()


@functools.cache
def _mnist1d() -> tuple[Dataset, Dataset]:
    from mnist1d.data import get_dataset_args, make_dataset

    generated = make_dataset(get_dataset_args())
    x = torch.tensor(generated["x"], dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(generated["y"], dtype=torch.int64)
    x_test = torch.tensor(generated["x_test"], dtype=torch.float32).unsqueeze(1)
    y_test = torch.tensor(generated["y_test"], dtype=torch.int64)
    classes = tuple(str(i) for i in range(10))
    return Dataset(x, y, classes), Dataset(x_test, y_test, classes)
