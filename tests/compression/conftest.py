"""Shared fixtures: the digits dataset and a small CNN trained on it (seconds on a CPU)."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from compression import zoo
from compression.data import Dataset
from compression.io import LoadedModel
from compression.training import fit


@pytest.fixture(scope="session")
def digits() -> Dataset:
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return Dataset(x, torch.tensor(bunch.target), tuple(str(i) for i in range(10)))


@pytest.fixture(scope="session")
def trained_digits_cnn(digits: Dataset) -> LoadedModel:
    torch.manual_seed(0)
    model, shape = zoo.build("small_cnn")
    return LoadedModel(fit(model, digits, epochs=8), shape, 10, "zoo:small_cnn")
