"""Sort-based 1-D k-means: exact on toys, the same fixed point as scikit-learn's Lloyd, and
every value at its nearest centroid without an n x k distance matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from compression.kmeans1d import kmeans_1d, nearest_sorted


def test_two_groups_converge_to_their_means() -> None:
    values = torch.tensor([0.0, 0.1, 0.2, 0.9, 1.0, 1.1], dtype=torch.float64)
    centroids, assignment = kmeans_1d(values, torch.tensor([0.0, 1.1]))
    assert torch.allclose(centroids, torch.tensor([0.1, 1.0], dtype=torch.float64))
    assert assignment.tolist() == [0, 0, 0, 1, 1, 1]


def test_sample_weights_pull_a_centroid() -> None:
    values = torch.tensor([1.0, 2.0, 10.0, 11.0], dtype=torch.float64)
    weights = torch.tensor([1.0, 3.0, 1.0, 1.0], dtype=torch.float64)
    centroids, assignment = kmeans_1d(values, torch.tensor([1.0, 11.0]), weights)
    assert centroids.tolist() == [1.75, 10.5]  # (1 + 3 * 2) / 4 and (10 + 11) / 2
    assert assignment.tolist() == [0, 0, 1, 1]


def test_an_empty_cluster_moves_to_the_value_farthest_from_its_centroid() -> None:
    values = torch.tensor([0.0, 0.0, 1.0, 10.0, 10.0, 10.0], dtype=torch.float64)
    centroids, assignment = kmeans_1d(values, torch.tensor([0.0, 5.0, 10.0]))
    # 5.0 wins nothing; 1.0 is the value farthest from its centroid (0.0): it takes 5.0's place
    assert centroids.tolist() == [0.0, 1.0, 10.0]
    assert assignment.tolist() == [0, 0, 1, 2, 2, 2]


def test_unsorted_init_gives_ascending_centroids() -> None:
    values = torch.tensor([-3.0, -2.0, 4.0, 5.0], dtype=torch.float64)
    centroids, assignment = kmeans_1d(values, torch.tensor([5.0, -3.0]))
    assert centroids.tolist() == [-2.5, 4.5]
    assert assignment.tolist() == [0, 0, 1, 1]


def test_a_value_halfway_goes_to_the_lower_centroid_like_argmin() -> None:
    centroids = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    values = torch.tensor([0.5, 2.0, -7.0, 9.0, 1.0], dtype=torch.float64)
    assert nearest_sorted(values, centroids).tolist() == [0, 1, 0, 2, 1]
    generator = torch.Generator().manual_seed(0)
    many = torch.randn(20_000, generator=generator, dtype=torch.float64)
    sorted_centroids = torch.randn(37, generator=generator, dtype=torch.float64).sort().values
    distances = (many[:, None] - sorted_centroids[None, :]).abs()
    assert torch.equal(nearest_sorted(many, sorted_centroids).long(), distances.argmin(dim=1))


@pytest.mark.parametrize("k", [4, 16, 64])
def test_the_same_fixed_point_as_scikit_learn_from_the_same_init(k: int) -> None:
    generator = torch.Generator().manual_seed(k)
    values = torch.randn(5000, generator=generator, dtype=torch.float64) * 0.05
    weights = torch.rand(5000, generator=generator, dtype=torch.float64)
    init = torch.linspace(float(values.min()), float(values.max()), k, dtype=torch.float64)
    ours, assignment = kmeans_1d(values, init, weights, max_iterations=1000, tolerance=0.0)
    theirs = KMeans(k, init=init.numpy()[:, None], n_init=1, max_iter=1000, tol=0.0).fit(
        values.numpy()[:, None], sample_weight=weights.numpy()
    )
    np.testing.assert_allclose(ours.numpy(), np.sort(theirs.cluster_centers_[:, 0]), atol=1e-9)
    order = np.argsort(theirs.cluster_centers_[:, 0])
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    assert np.array_equal(assignment.long().numpy(), rank[theirs.labels_])


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="1-D"):
        kmeans_1d(torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="sample_weight"):
        kmeans_1d(torch.zeros(4), torch.zeros(2), torch.ones(3))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_gpu_finds_what_the_cpu_finds() -> None:
    generator = torch.Generator().manual_seed(1)
    values = torch.randn(300_000, generator=generator, dtype=torch.float64)
    init = torch.linspace(float(values.min()), float(values.max()), 128, dtype=torch.float64)
    cpu = kmeans_1d(values, init)
    gpu = kmeans_1d(values.cuda(), init)
    torch.testing.assert_close(gpu[0].cpu(), cpu[0])
    assert torch.equal(gpu[1].cpu(), cpu[1])
