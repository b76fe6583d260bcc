"""Weight sharing: at most k values per layer, relevance pulls centroids, zeros stay zero."""

from __future__ import annotations

import math

import pytest
import torch

from compression.sharing import share_weight


def test_relevance_weighting_pulls_a_centroid_toward_relevant_weights() -> None:
    weight = torch.tensor([0.0, 0.1, 0.2, 0.9, 1.0, 1.1])
    plain = share_weight(weight, 2)
    # linear initialisation (0.0, 1.1) converges to the two groups' means
    assert torch.allclose(plain.codebook, torch.tensor([0.1, 1.0]))
    relevance = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 100.0])
    weighted = share_weight(weight, 2, relevance)
    # the upper centroid becomes the relevance-weighted mean (0.9 + 1.0 + 100 * 1.1) / 102
    assert weighted.codebook[1].item() == pytest.approx(111.9 / 102, abs=1e-6)
    assert torch.equal(weighted.indices, torch.tensor([0, 0, 0, 1, 1, 1]))


@pytest.mark.parametrize("k", [2, 3, 4, 16, 64])
def test_a_shared_layer_holds_at_most_k_values_and_indices_fit_the_bits(k: int) -> None:
    torch.manual_seed(k)
    weight = torch.randn(32, 16, 3, 3)
    shared = share_weight(weight, k)
    values = shared.dequantize()
    assert values.shape == weight.shape
    assert torch.unique(values).numel() <= k
    assert shared.index_bits == max(1, math.ceil(math.log2(k)))
    assert int(shared.indices.max()) < 2**shared.index_bits
    # every weight sits at its nearest centroid
    nearest = (weight.flatten()[:, None] - shared.codebook[None, :]).abs().argmin(dim=1)
    assert torch.equal(shared.indices.flatten(), nearest)


def test_pruned_weights_take_no_part_and_k_adapts_to_few_values() -> None:
    weight = torch.tensor([[0.0, 5.0, 0.0, 6.0], [0.0, 0.0, 7.0, 0.0]])
    mask = weight != 0
    shared = share_weight(weight, 8, mask=mask)
    assert shared.codebook.numel() == 3  # only three distinct kept values
    assert torch.equal(shared.dequantize() * mask, weight)
