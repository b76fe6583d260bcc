"""Does a MACs reduction from filter pruning become a latency reduction on a CPU?

For the trained seed-0 models of three registry pairs (a plain CNN, a batch-norm VGG and a
residual net), filters are pruned at growing ratios (L1 criterion: latency depends on which
shapes remain, not on which filters were chosen), and the job's own interleaved timing
(``compression.evaluate.latency``) compares the original and the pruned model at batch 1 and
batch 32. A ratio is printed only where the p10-p90 spreads do not overlap.

    python -m benchmarks.latency_vs_macs [--quick]

``benchmarks.report`` embeds the table in BENCHMARKS.md (``sections``).
"""

from __future__ import annotations

import torch

from benchmarks.common import markdown_table, sections_main
from benchmarks.registry import pair
from compression import Spec, compress

PAIRS = ("digits28-lenet5", "shapes-vggbn", "shapes-resnet8")
RATIOS = (0.3, 0.5, 0.7, 0.9)
BATCHES = (1, 32)


def _spread(side: dict) -> str:
    return f"{side['median_ms']:.2f} ({side['p10_ms']:.2f}-{side['p90_ms']:.2f})"


def measure(name: str, ratio: float, batch: int, repeats: int) -> list[str]:
    model, train_set, test_set = pair(name).load(0)
    spec = Spec.model_validate(
        {
            "steps": [{"type": "prune_filters", "ratio": ratio}],
            "criterion": "l1",
            "evaluation": {"latency_batch": batch, "latency_repeats": repeats},
        }
    )
    metrics = compress(model, train_set, spec, eval_data=test_set).metrics
    latency = metrics["latency"]
    reduction = latency["reduction"]
    return [
        name, f"{ratio:g}", str(batch), f"{metrics['reduction']['macs']:.2f}x",
        _spread(latency["before"]), _spread(latency["after"]),
        f"{reduction:.2f}x" if reduction is not None else "within the noise",
    ]  # fmt: skip


def sections(quick: bool = False) -> dict[str, str]:
    repeats = 10 if quick else 30
    ratios = (0.5, 0.9) if quick else RATIOS
    rows = [
        measure(name, ratio, batch, repeats)
        for name in PAIRS
        for batch in BATCHES
        for ratio in ratios
    ]  # fmt: skip
    heading = (
        f"Filter pruning (l1): MACs vs CPU latency, ms median (p10-p90) of {repeats} "
        f"interleaved runs, {torch.get_num_threads()} thread(s)"
    )
    return {
        heading: markdown_table(
            [
                "pair",
                "filters pruned",
                "batch",
                "MACs reduction",
                "latency before",
                "latency after",
                "latency reduction",
            ],
            rows,
        )
    }


def main() -> None:
    sections_main("latency_vs_macs", "Latency vs MACs", __doc__, sections)


if __name__ == "__main__":
    main()
