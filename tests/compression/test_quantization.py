"""Symmetric per-channel quantization: hand-computed levels, exact zeros, half-step error."""

from __future__ import annotations

import pytest
import torch

from compression import quantization
from compression.quantization import quantization_error, quantization_errors, quantize_weight

# Channel 0 peaks at 1.5 (scale 0.5), channel 1 at 3.0 (scale 1.0); 3 bits give levels -3..3.
WEIGHT = torch.tensor([[1.5, -0.625, 0.0], [0.25, -3.0, 1.25]])


def test_hand_computed_three_bit_levels() -> None:
    quantized = quantize_weight(WEIGHT, 3)
    assert quantized.bits == 3
    assert quantized.max_level == 3
    assert torch.equal(quantized.scales, torch.tensor([0.5, 1.0]))
    assert torch.equal(quantized.values, torch.tensor([[3, -1, 0], [0, -3, 1]]))
    assert torch.equal(quantized.dequantize(), torch.tensor([[1.5, -0.5, 0.0], [0.0, -3.0, 1.0]]))


def test_all_zero_channel_gets_scale_one_and_exact_zeros() -> None:
    quantized = quantize_weight(torch.tensor([[0.0, 0.0, 0.0], [7.0, -2.0, 1.0]]), 4)
    assert torch.equal(quantized.scales, torch.tensor([1.0, 1.0]))
    assert torch.equal(quantized.values, torch.tensor([[0, 0, 0], [7, -2, 1]]))
    assert torch.equal(quantized.dequantize()[0], torch.zeros(3))


@pytest.mark.parametrize("bits", range(2, 9))
def test_pruned_weights_stay_exactly_zero(bits: int) -> None:
    torch.manual_seed(bits)
    weight = torch.randn(6, 5, 3, 3)
    pruned = torch.rand_like(weight) < 0.5
    weight[pruned] = 0.0
    quantized = quantize_weight(weight, bits)
    assert bool((quantized.values[pruned] == 0).all())
    assert bool((quantized.dequantize()[pruned] == 0).all())


@pytest.mark.parametrize("shape", [(5, 7), (4, 3, 3, 3), (6,)])
@pytest.mark.parametrize("bits", range(2, 9))
def test_levels_in_range_and_error_within_half_a_step(shape: tuple[int, ...], bits: int) -> None:
    torch.manual_seed(bits)
    weight = torch.randn(shape) * torch.rand(shape[0]).view((-1,) + (1,) * (len(shape) - 1))
    quantized = quantize_weight(weight, bits)
    max_level = 2 ** (bits - 1) - 1
    assert quantized.values.dtype == (torch.int8 if bits <= 8 else torch.int16)
    assert quantized.scales.dtype == torch.float32
    assert int(quantized.values.abs().max()) == max_level  # each channel's peak uses the top level
    assert bool((quantized.scales > 0).all())
    broadcast = (-1,) + (1,) * (len(shape) - 1)
    peak = weight.reshape(shape[0], -1).abs().amax(dim=1).view(broadcast)
    # Half a quantization step, plus float32 rounding of values * scale (a few ulps of the peak).
    bound = quantized.scales.view(broadcast) / 2 + 1e-6 * peak
    assert bool(((weight - quantized.dequantize()).abs() <= bound).all())


def test_quantization_error_hand_example() -> None:
    # Differences from the dequantized WEIGHT: [[0, -0.125, 0], [0.25, 0, 0.25]].
    importance = torch.tensor([[1.0, 2.0, 3.0], [0.5, 1.0, 4.0]])
    # 2 * 0.125**2 + 0.5 * 0.25**2 + 4 * 0.25**2 = 0.03125 + 0.03125 + 0.25
    assert quantization_error(WEIGHT, importance, 3) == 0.3125


def test_quantization_error_refuses_mismatched_or_negative_importance() -> None:
    with pytest.raises(ValueError, match="shape"):
        quantization_error(WEIGHT, torch.ones(3, 2), 3)
    with pytest.raises(ValueError, match="non-negative"):
        quantization_error(WEIGHT, -torch.ones(2, 3), 3)


def test_slices_of_channels_quantize_exactly_as_the_whole_layer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    weight = torch.randn(37, 6, 3, 3)
    importance = torch.rand_like(weight)
    whole = quantize_weight(weight, 5)
    errors = quantization_errors(weight, importance, [2, 5, 8])
    assert errors[5] == quantization_error(weight, importance, 5)  # one pass, many widths
    monkeypatch.setattr(quantization, "SLICE_WEIGHTS", 110)  # two channels of 54 weights
    assert len(quantization.channel_slices(weight)) == 19
    sliced = quantize_weight(weight, 5)
    assert torch.equal(sliced.values, whole.values) and torch.equal(sliced.scales, whole.scales)
    assert quantization_errors(weight, importance, [2, 5, 8]) == pytest.approx(errors, rel=1e-12)


@pytest.mark.parametrize(("bits", "dtype"), [(2, torch.int8), (8, torch.int8), (9, torch.int16)])
def test_levels_are_held_in_the_narrowest_integer_type(bits: int, dtype: torch.dtype) -> None:
    weight = torch.tensor([[1.0, -1.0, 0.25]])
    quantized = quantize_weight(weight, bits)
    assert quantized.values.dtype == dtype
    assert quantized.values.tolist() == [[quantized.max_level, -quantized.max_level,
                                          round(quantized.max_level / 4)]]  # fmt: skip
