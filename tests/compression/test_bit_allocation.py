"""Bit allocation: hand-solved knapsacks, brute-force optimality, budget guarantees, no starving."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from compression.bit_allocation import (
    MAX_TABLE,
    allocate_bits,
    allocate_from_errors,
    average_bits,
)
from compression.errors import InvalidSpec
from compression.quantization import quantization_error

Errors = dict[str, dict[int, float]]
EXACT, GREEDY = MAX_TABLE, 0  # max_table values that force each method


def _totals(allocation: dict[str, int], errors: Errors, sizes: dict[str, int]) -> tuple:
    """(total error, total bits), summed in layer order as both methods and brute force do."""
    error = sum(errors[name][bits] for name, bits in allocation.items())
    return error, sum(sizes[name] * bits for name, bits in allocation.items())


def _brute_force(errors: Errors, sizes: dict[str, int], average: float) -> tuple:
    """(least total error, most bits among those) over every combination within the budget."""
    budget = average * sum(sizes.values())
    best = None
    for widths in itertools.product(*(sorted(table) for table in errors.values())):
        error, bits = _totals(dict(zip(errors, widths, strict=True)), errors, sizes)
        if bits <= budget and (best is None or (error, -bits) < (best[0], -best[1])):
            best = (error, bits)
    return best


def _raisable(allocation: dict[str, int], errors: Errors, sizes: dict[str, int], average: float):
    """Layers that could move to their next wider candidate and still fit the budget."""
    spent = sum(sizes[name] * bits for name, bits in allocation.items())
    raisable = []
    for name, bits in allocation.items():
        wider = [b for b in sorted(errors[name]) if b > bits]
        if wider and spent + sizes[name] * (wider[0] - bits) <= average * sum(sizes.values()):
            raisable.append((name, wider[0]))
    return raisable


def _random_case(rng: random.Random, falling: bool) -> tuple[Errors, dict[str, int], float]:
    """2-5 layers, 1-4 candidate widths in 2..8, errors strictly falling with width or arbitrary."""
    candidates = sorted(rng.sample(range(2, 9), rng.randint(1, 4)))
    errors, sizes = {}, {}
    for i in range(rng.randint(2, 5)):
        if falling:
            steps = itertools.accumulate(rng.uniform(0.01, 10.0) for _ in candidates)
            table = dict(zip(reversed(candidates), steps, strict=True))
        else:
            table = {bits: rng.uniform(0.0, 10.0) for bits in candidates}
        errors[f"layer{i}"] = table
        sizes[f"layer{i}"] = rng.randint(1, 40)
    return errors, sizes, rng.uniform(candidates[0], candidates[-1] + 0.5)


@pytest.mark.parametrize("max_table", [EXACT, GREEDY])
def test_hand_solved_big_layer_with_flat_errors_gets_fewest_bits(max_table: int) -> None:
    # Budget 4000 bits. c at 4 bits (2800) leaves a and b at most 4 bits: error >= 2 + 5 + 25 = 32.
    # c at 2 bits (1400) lets a and b take 8 bits (2400): error 0 + 1 + 30 = 31, the optimum.
    errors = {
        "a": {2: 10.0, 4: 2.0, 8: 0.0},
        "b": {2: 50.0, 4: 5.0, 8: 1.0},
        "c": {2: 30.0, 4: 25.0, 8: 24.0},
    }
    sizes = {"a": 100, "b": 200, "c": 700}
    allocation = allocate_from_errors(errors, sizes, 4.0, max_table=max_table)
    assert allocation == {"a": 8, "b": 8, "c": 2}
    assert average_bits(allocation, sizes) == 3.8


@pytest.mark.parametrize("max_table", [EXACT, GREEDY])
def test_spare_bits_go_to_a_layer_they_do_not_hurt(max_table: int) -> None:
    # Budget 140 bits: a at 4 (40) is the least error; z at 8 (80) costs no error and fits.
    errors = {"z": {2: 0.0, 8: 0.0}, "a": {2: 1.0, 4: 0.5}}
    allocation = allocate_from_errors(errors, {"z": 10, "a": 10}, 7.0, max_table=max_table)
    assert allocation == {"z": 8, "a": 4}


def test_greedy_can_miss_the_optimum_by_one_upgrade_the_exact_path_does_not() -> None:
    # Budget 14 bits, 6 above the 2-bit floor: a's upgrade has the better ratio (3 per 2 bits)
    # but leaves too little for b's (7 per 6 bits), which alone gives the least error.
    errors = {"a": {2: 3.0, 4: 0.0}, "b": {2: 7.0, 4: 0.0}}
    sizes = {"a": 1, "b": 3}
    assert allocate_from_errors(errors, sizes, 3.5) == {"a": 2, "b": 4}
    assert allocate_from_errors(errors, sizes, 3.5, max_table=GREEDY) == {"a": 4, "b": 2}
    # Counting the budget in units of the gcd keeps a million-fold larger model on the exact path.
    big = {name: n * 10**6 for name, n in sizes.items()}
    assert allocate_from_errors(errors, big, 3.5) == {"a": 2, "b": 4}


@pytest.mark.parametrize("seed", range(300))
def test_exact_path_matches_brute_force_and_is_within_one_step(seed: int) -> None:
    rng = random.Random(seed)
    errors, sizes, average = _random_case(rng, falling=seed % 2 == 0)
    allocation = allocate_from_errors(errors, sizes, average)
    assert all(bits in errors[name] for name, bits in allocation.items())
    assert _totals(allocation, errors, sizes) == _brute_force(errors, sizes, average)
    for name, wider in _raisable(allocation, errors, sizes, average):
        assert errors[name][wider] > errors[name][allocation[name]]
    if seed % 2 == 0:  # errors fall with width: no layer can be raised at all
        assert _raisable(allocation, errors, sizes, average) == []


@pytest.mark.parametrize("seed", range(300))
def test_greedy_path_keeps_the_guarantees_and_its_bound(seed: int) -> None:
    rng = random.Random(seed)
    errors, sizes, average = _random_case(rng, falling=seed % 2 == 0)
    allocation = allocate_from_errors(errors, sizes, average, max_table=GREEDY)
    assert all(bits in errors[name] for name, bits in allocation.items())
    error, bits = _totals(allocation, errors, sizes)
    assert bits <= average * sum(sizes.values())
    for name, wider in _raisable(allocation, errors, sizes, average):
        assert errors[name][wider] > errors[name][allocation[name]]
    if seed % 2 == 0:
        assert _raisable(allocation, errors, sizes, average) == []
    # Within one hull upgrade of the optimum; no upgrade reduces more than this.
    largest_reduction = max(table[min(table)] - min(table.values()) for table in errors.values())
    assert error <= _brute_force(errors, sizes, average)[0] + largest_reduction + 1e-9


@pytest.mark.parametrize("average", [8.0, 9.5])
def test_budget_covering_the_widest_candidate_gives_it_everywhere(average: float) -> None:
    torch.manual_seed(0)
    layers = {
        "conv": (torch.randn(8, 3, 3, 3), torch.rand(8, 3, 3, 3)),
        "fc": (torch.randn(10, 72), torch.rand(10, 72)),
    }
    assert allocate_bits(layers, [2, 3, 4, 8], average) == {"conv": 8, "fc": 8}


def _rank_by_relevance_density(
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]], candidates: list[int], average: float
) -> dict[str, int]:
    """The old allocator: densest relevance per weight first, each layer the widest candidate
    that still leaves the layers after it their narrowest."""
    sizes = {name: weight.numel() for name, (weight, _) in layers.items()}
    remaining = average * sum(sizes.values())
    order = sorted(layers, key=lambda name: -float(layers[name][1].mean()))
    allocation = {}
    for i, name in enumerate(order):
        rest = min(candidates) * sum(sizes[later] for later in order[i + 1 :])
        allocation[name] = max(b for b in candidates if sizes[name] * b + rest <= remaining)
        remaining -= sizes[name] * allocation[name]
    return allocation


def test_large_fully_connected_layer_is_not_starved() -> None:
    torch.manual_seed(0)
    # A 1,024-weight conv with dense relevance (1.0 per weight) and a 4,096-weight fc layer
    # with a tenth of it per weight but four times the weights. Budget: 4 bits x 5,120 weights.
    layers = {
        "conv": (torch.randn(16, 4, 4, 4), torch.ones(16, 4, 4, 4)),
        "fc": (torch.randn(64, 64), torch.full((64, 64), 0.1)),
    }
    candidates = [2, 4, 8]
    naive = _rank_by_relevance_density(layers, candidates, 4.0)
    assert naive == {"conv": 8, "fc": 2}
    allocation = allocate_bits(layers, candidates, 4.0)
    assert allocation == {"conv": 4, "fc": 4}

    def total_error(choice: dict[str, int]) -> float:
        return sum(quantization_error(*layers[name], bits) for name, bits in choice.items())

    assert total_error(allocation) < total_error(naive)


def test_impossible_budget_is_an_invalid_spec() -> None:
    layers = {"fc": (torch.ones(4, 4), torch.ones(4, 4))}
    with pytest.raises(InvalidSpec, match=r"average_bits=1.5 cannot be met.*2 bits per weight"):
        allocate_bits(layers, [2, 4], 1.5)


def test_average_bits_weights_by_parameter_count() -> None:
    assert average_bits({"a": 8, "b": 2}, {"a": 100, "b": 300}) == 3.5
