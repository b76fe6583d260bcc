"""Shared fixtures: the digits dataset and a small CNN trained on it (seconds on a CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from compression import zoo
from compression.data import Dataset
from compression.io import LoadedModel


@pytest.fixture(scope="session")
def digits() -> Dataset:
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return Dataset(x, torch.tensor(bunch.target), tuple(str(i) for i in range(10)))


@pytest.fixture(scope="session")
def trained_digits_cnn(digits: Dataset) -> LoadedModel:
    torch.manual_seed(0)
    model, shape = zoo.build("small_cnn")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(8):
        order = torch.randperm(digits.num_samples)
        for start in range(0, digits.num_samples, 64):
            index = order[start : start + 64]
            optimizer.zero_grad()
            F.cross_entropy(model(digits.x[index]), digits.y[index]).backward()
            optimizer.step()
    return LoadedModel(model.eval(), shape, 10, "zoo:small_cnn")
