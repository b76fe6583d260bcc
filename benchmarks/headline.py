"""The headline pipeline beside Deep Compression's 39x on LeNet-5.

Deep Compression (Han, Mao, Dally, 2016) reports LeNet-5 on MNIST compressed 39x (pruning +
trained quantization + Huffman coding) with top-1 error 0.80% -> 0.74%. Here the same-shaped
LeNet-5 (conv 20, conv 50, fc 500, fc 10; 431K parameters) is trained on sklearn's digits
upsampled to 28x28 (MNIST is not shipped offline), then pruned per layer (fc1 97%, conv2 90%,
fc2 80%, conv1 50%: harder than Deep Compression's 92 / 88 / 81 / 34%, so about 26x fewer
weights where they kept 1 in 12), fine-tuned, weight-shared with k = 16 and fine-tuned again
(``benchmarks.deployable_onnx.LENET_STEPS``). The ratio is the
float32 parameter bytes over the packed ``.xaic`` file (every byte of the file: header,
architecture, masks, codes, codebooks). The criterion of the pruning and sharing steps is
DeepLIFT or L1, same seeds. The data set is smaller and easier than MNIST, so the accuracy
columns compare criteria here, not with the paper.

    python -m benchmarks.headline [--quick]
"""

from __future__ import annotations

import statistics

import torch

from benchmarks.common import markdown_table, mean_spread, sections_main
from benchmarks.deployable_onnx import LENET_STEPS, LeNet5DeepCompression, upsampled_digits
from compression import Spec, compress
from compression.io import LoadedModel
from compression.training import fit

CRITERIA = ("deeplift", "l1")


def run(criterion: str, seed: int) -> dict[str, float]:
    train_set, test_set = upsampled_digits(28, 1, seed)
    torch.manual_seed(seed)
    lenet = LeNet5DeepCompression()
    fit(lenet, train_set, epochs=15, lr=1e-3, seed=seed)
    model = LoadedModel(lenet, (1, 28, 28), 10, "benchmark:lenet5-deep-compression")
    spec = Spec.model_validate(
        {
            "steps": LENET_STEPS,
            "criterion": criterion,
            "seed": seed,
            "attribution": {"samples": 256},
            "evaluation": {"latency_repeats": 3},
        }
    )
    metrics = compress(model, train_set, spec, eval_data=test_set).metrics
    return {
        "before": metrics["before"]["accuracy"],
        "after": metrics["after"]["accuracy"],
        "ratio": metrics["reduction"]["size"],
        "nonzero": metrics["reduction"]["nonzero_parameters"],
    }


def sections(quick: bool = False) -> dict[str, str]:
    seeds = (0,) if quick else (0, 1, 2)
    rows = []
    for criterion in CRITERIA:
        runs = [run(criterion, seed) for seed in seeds]
        rows.append(
            [
                f"xai-compress, {criterion}",
                f"{statistics.fmean(r['ratio'] for r in runs):.1f}x "
                f"({min(r['ratio'] for r in runs):.1f}-{max(r['ratio'] for r in runs):.1f})",
                f"{statistics.fmean(r['nonzero'] for r in runs):.1f}x",
                mean_spread([r["before"] for r in runs]),
                mean_spread([r["after"] for r in runs]),
            ]
        )
    rows.append(["Deep Compression (paper, LeNet-5 on MNIST)", "39x", "12x", "99.20", "99.26"])
    heading = (
        f"LeNet-5 (431K parameters), prune per layer + share k=16 + fine-tune, "
        f"{len(seeds)} seed(s): size reduction mean (min-max), top-1 % mean ± std"
    )
    return {
        heading: markdown_table(
            [
                "pipeline",
                "fp32 bytes / packed file",
                "parameters / kept weights",
                "top-1 before",
                "top-1 after",
            ],
            rows,
        )
    }


def main() -> None:
    sections_main("headline", "Headline pipeline vs Deep Compression", __doc__, sections)


if __name__ == "__main__":
    main()
