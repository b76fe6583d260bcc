"""One integer bit width per layer under an average-bit budget: a multiple-choice knapsack.

Layer l with n_l weights picks a width b from its candidates, costing n_l * b bits and suffering
the importance-weighted quantization error e_l(b). The allocation minimizes sum_l e_l(b_l)
subject to sum_l n_l * b_l <= average_bits * sum_l n_l. It allocates by error, not by relevance
per weight: ranking layers by relevance density gave the dense convolutions the most bits and
starved the largest fully connected layer to 2 bits (-26 points top-1), although its many weights
made its total error the largest.

Method, chosen per call:

- Exact dynamic programming over the budget left above the cheapest allocation, counted in units
  of the gcd of all upgrade costs, when the table (layers x units) has at most ``max_table``
  cells. It returns a least-error allocation and, among those, one that uses the most bits.
- Otherwise a Lagrangian greedy: walk each layer's lower convex hull of (bits, error), always
  taking the upgrade with the largest error reduction per extra bit that still fits, then spend
  what is left on single-layer upgrades that do not raise the error. Its error exceeds the
  optimum by at most one hull upgrade's error reduction (the LP bound of the knapsack).

Both stop only when no layer can move to its next wider candidate within the budget without
raising its error. So when errors fall as widths grow (the usual case), no single layer can be
raised to its next width without exceeding the budget, and a budget that covers the widest
candidate everywhere gives every layer that width.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch

from compression.errors import InvalidSpec
from compression.progress import within
from compression.quantization import quantization_errors

MAX_TABLE = 1 << 24  # DP cells (layers x budget units): under a second and 32 MiB at most


class _Option(NamedTuple):
    width: int
    extra: int  # bits above the layer's narrowest candidate
    error: float


def allocate_bits(
    layers: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    candidate_bits: Sequence[int],
    average_bits: float,
    progress: Callable[[float], None] | None = None,
) -> dict[str, int]:
    """Bit width per layer, given each layer's (weight, per-weight importance).

    Measuring the errors is the work (every candidate width of every weight);
    ``progress(fraction)`` follows it by weights done, a slice of channels at a time, so a
    single 100M-weight layer is no silent stretch."""
    widths = sorted(set(candidate_bits))
    sizes = {name: weight.numel() for name, (weight, _) in layers.items()}
    total, done = max(sum(sizes.values()), 1), 0
    errors = {}
    for name, (weight, importance) in layers.items():
        part = within(progress, done / total, (done + sizes[name]) / total)
        errors[name] = quantization_errors(weight, importance, widths, part)
        done += sizes[name]
    return allocate_from_errors(errors, sizes, average_bits)


def allocate_from_errors(
    errors: Mapping[str, Mapping[int, float]],
    sizes: Mapping[str, int],
    average_bits: float,
    max_table: int = MAX_TABLE,
) -> dict[str, int]:
    """Width per layer minimizing the summed errors[layer][width] within the bit budget."""
    if set(errors) != set(sizes) or any(sizes[name] <= 0 for name in sizes):
        raise ValueError("errors and sizes must name the same layers, each with weights")
    names = list(errors)
    options = [_options(errors[name], sizes[name]) for name in names]
    budget = math.floor(average_bits * sum(sizes.values()))
    floor_cost = sum(
        sizes[name] * layer[0].width for name, layer in zip(names, options, strict=True)
    )
    if floor_cost > budget:
        raise InvalidSpec(
            f"average_bits={average_bits} cannot be met: the narrowest candidate widths alone "
            f"need {floor_cost / sum(sizes.values()):.4g} bits per weight; raise average_bits "
            "or add a narrower candidate width"
        )
    spare = budget - floor_cost
    chosen = _exact(options, spare, max_table)
    if chosen is None:
        chosen = _greedy(options, spare)
    return {name: layer[k].width for name, layer, k in zip(names, options, chosen, strict=True)}


def average_bits(allocation: Mapping[str, int], sizes: Mapping[str, int]) -> float:
    """Mean bits per weight weighted by parameter count: the quantity the budget bounds."""
    total = sum(sizes[name] for name in allocation)
    return sum(sizes[name] * bits for name, bits in allocation.items()) / total


def _options(errors: Mapping[int, float], size: int) -> list[_Option]:
    widths = sorted(errors)
    return [_Option(b, size * (b - widths[0]), float(errors[b])) for b in widths]


def _exact(options: list[list[_Option]], spare: int, max_table: int) -> list[int] | None:
    """Option index per layer of the optimum, or None when the DP table would be too large."""
    unit = math.gcd(*(option.extra for layer in options for option in layer)) or 1
    capacity = min(spare, sum(layer[-1].extra for layer in options)) // unit
    if len(options) * (capacity + 1) > max_table:
        return None
    # least[c]: least error of the layers so far whose upgrades cost exactly c units.
    least = np.full(capacity + 1, np.inf)
    least[0] = 0.0
    picks = []
    for layer in options:
        step_least = np.full(capacity + 1, np.inf)
        pick = np.zeros(capacity + 1, dtype=np.int16)
        for k, option in enumerate(layer):
            step = option.extra // unit
            if step > capacity:
                break
            candidate = least[: capacity + 1 - step] + option.error
            better = candidate < step_least[step:]
            step_least[step:][better] = candidate[better]
            pick[step:][better] = k
        least = step_least
        picks.append(pick)
    # The most spent among the least-error cells: spare bits go to layers they do not hurt.
    spent = int(np.flatnonzero(least == least.min())[-1])
    chosen = []
    for layer, pick in zip(reversed(options), reversed(picks), strict=True):
        k = int(pick[spent])
        chosen.append(k)
        spent -= layer[k].extra // unit
    return chosen[::-1]


def _greedy(options: list[list[_Option]], spare: int) -> list[int]:
    """Option index per layer: hull upgrades by error reduction per bit, then fill the rest."""
    chosen = [0] * len(options)
    hulls = [_falling_hull(layer) for layer in options]
    heap: list[tuple[float, int, int]] = []

    def push(layer: int, position: int) -> None:
        if position < len(hulls[layer]):
            here = options[layer][hulls[layer][position - 1]]
            there = options[layer][hulls[layer][position]]
            ratio = (here.error - there.error) / (there.extra - here.extra)
            heapq.heappush(heap, (-ratio, layer, position))

    for layer in range(len(options)):
        push(layer, 1)
    while heap:
        _, layer, position = heapq.heappop(heap)
        k = hulls[layer][position]
        cost = options[layer][k].extra - options[layer][chosen[layer]].extra
        if cost <= spare:  # a hull step that does not fit ends this layer's walk
            spare -= cost
            chosen[layer] = k
            push(layer, position + 1)
    while True:
        moves = [
            (options[layer][chosen[layer]].error - option.error, layer, k)
            for layer, candidates in enumerate(options)
            for k, option in enumerate(candidates)
            if k > chosen[layer]
            and option.extra - candidates[chosen[layer]].extra <= spare
            and option.error <= candidates[chosen[layer]].error
        ]
        if not moves:
            return chosen
        _, layer, k = max(moves, key=lambda move: move[0])
        spare -= options[layer][k].extra - options[layer][chosen[layer]].extra
        chosen[layer] = k


def _falling_hull(layer: list[_Option]) -> list[int]:
    """Indices along the lower convex hull of (extra, error) from the narrowest width while
    the error still falls: the upgrades whose reduction per bit shrinks step by step."""
    hull: list[int] = []
    for k, option in enumerate(layer):
        while len(hull) >= 2:
            a, b = layer[hull[-2]], layer[hull[-1]]
            cross = (b.extra - a.extra) * (option.error - a.error) - (b.error - a.error) * (
                option.extra - a.extra
            )
            if cross > 0:
                break
            hull.pop()
        hull.append(k)
    while len(hull) >= 2 and layer[hull[-1]].error >= layer[hull[-2]].error:
        hull.pop()
    return hull
