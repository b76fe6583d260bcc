"""Filter pruning really removes channels, stays correct through branches, and exports."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from compression.criteria import get_criterion
from compression.errors import InvalidSpec
from compression.io import LoadedModel, export_onnx, export_pt2, load_model
from compression.layers import weighted_layers
from compression.pruning.structured import prune_filters
from jobspec import PruneFilters
from tests.compression.toy_models import Branchy, randomize_batchnorm

# Branchy at 50% per layer, with the stem (first conv) and fc (classifier) protected:
# a: 16->8; the residual group (b, skip, depthwise dw, pw's input) 16->8; pw 16->8;
# each side of the concatenation 8->4 (head sees 8 inputs); head 16->8 (fc sees 8 inputs).
EXPECTED_OUT = {"stem.0": 8, "a.0": 8, "b.0": 8, "skip.0": 8, "dw.0": 8, "pw": 8,
                "left": 4, "right": 4, "head.0": 8, "fc": 10}  # fmt: skip
EXPECTED_IN = {"stem.0": 3, "a.0": 8, "b.0": 8, "skip.0": 8, "dw.0": 1, "pw": 8,
               "left": 8, "right": 8, "head.0": 8, "fc": 8}  # fmt: skip


def _prune(loaded: LoadedModel, step: PruneFilters, criterion: str = "l1") -> dict[str, nn.Module]:
    example = loaded.example_input()
    layers = weighted_layers(loaded.module, example)
    scorer = get_criterion(criterion)
    prune_filters(
        loaded.module, example, layers, step, lambda: scorer.score(loaded.module, layers, None)
    )
    return layers


def _shapes(layers: dict[str, nn.Module]) -> list[tuple[int, int]]:
    return sorted((m.weight.shape[0], m.weight.shape[1]) for m in layers.values())


@pytest.fixture
def branchy() -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel(randomize_batchnorm(Branchy()), (3, 8, 8), 10, "test")


def test_half_of_every_prunable_group_is_removed(branchy: LoadedModel, tmp_path: Path) -> None:
    layers = _prune(branchy, PruneFilters(ratio=0.5))
    assert {n: m.weight.shape[0] for n, m in layers.items()} == EXPECTED_OUT
    assert {n: m.weight.shape[1] for n, m in layers.items()} == EXPECTED_IN
    assert layers["dw.0"].groups == 8
    assert branchy.module.dw[1].num_features == 8
    assert branchy.module(branchy.example_input()).shape == (2, 10)
    check = export_onnx(branchy.module, branchy.example_input(), tmp_path / "pruned.onnx")
    assert check.max_abs_diff <= check.atol


@pytest.mark.parametrize("source", ["onnx", "pt2"])
def test_imported_models_prune_to_the_same_shapes(
    branchy: LoadedModel, tmp_path: Path, source: str
) -> None:
    path = tmp_path / f"branchy.{source}"
    export = export_onnx if source == "onnx" else export_pt2
    export(branchy.module, branchy.example_input(), path)
    imported = load_model(str(path))
    assert imported.input_shape == (3, 8, 8) and imported.num_classes == 10

    layers = _prune(imported, PruneFilters(ratio=0.5))

    expected = sorted(zip(EXPECTED_OUT.values(), EXPECTED_IN.values(), strict=True))
    assert _shapes(layers) == expected
    assert imported.module(imported.example_input()).shape == (2, 10)
    check = export_onnx(imported.module, imported.example_input(), tmp_path / "pruned.onnx")
    assert check.max_abs_diff <= check.atol


def test_lowest_scored_filters_are_the_ones_removed(branchy: LoadedModel) -> None:
    a = branchy.module.a[0]
    original = a.weight.detach().clone()
    keep = original.abs().sum(dim=(1, 2, 3)).argsort(descending=True)[:8].sort().values
    _prune(branchy, PruneFilters(ratio=0.5, protected=["stem.0", "fc", "b.0", "pw", "left"]))
    assert torch.equal(a.weight.detach(), original[keep])


def test_global_scope_and_round_to(branchy: LoadedModel) -> None:
    layers = _prune(branchy, PruneFilters(ratio=0.4, scope="global", round_to=4))
    for name, module in layers.items():
        if name not in ("stem.0", "fc", "dw.0"):
            assert module.weight.shape[0] % 4 == 0, name
    total_before = sum(EXPECTED_OUT.values()) + 8 * 8  # unpruned counts: see Branchy
    assert sum(m.weight.shape[0] for m in layers.values()) < total_before


def test_iterative_pruning_rescores_each_step(branchy: LoadedModel) -> None:
    example = branchy.example_input()
    layers = weighted_layers(branchy.module, example)
    seen: list[int] = []

    def score():
        seen.append(layers["a.0"].weight.shape[0])
        return get_criterion("l1").score(branchy.module, layers, None)

    prune_filters(
        branchy.module, example, layers, PruneFilters(ratio=0.5, iterative_steps=4), score
    )
    assert seen == [16, 14, 12, 10]
    assert layers["a.0"].weight.shape[0] == 8


def test_unknown_protected_layer_is_a_spec_error(branchy: LoadedModel) -> None:
    with pytest.raises(InvalidSpec, match="nope"):
        _prune(branchy, PruneFilters(ratio=0.5, protected=["nope"]))
