"""Small models whose structure the tests know by heart."""

from __future__ import annotations

import torch
from torch import nn


class Branchy(nn.Module):
    """A residual add, a depthwise conv and a concatenation in one tiny CNN (3x8x8 input)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.a = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.skip = nn.Sequential(nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16))
        self.relu = nn.ReLU()
        self.dw = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.pw = nn.Conv2d(16, 16, 1)
        self.left = nn.Conv2d(16, 8, 1)
        self.right = nn.Conv2d(16, 8, 3, padding=1)
        self.head = nn.Sequential(nn.Conv2d(16, 16, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        residual = self.relu(self.b(self.a(stem)) + self.skip(stem))
        mixed = self.pw(self.dw(residual))
        joined = torch.cat([self.left(mixed), self.right(mixed)], dim=1)
        return self.fc(torch.flatten(self.pool(self.head(joined)), 1))


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm layers non-trivial statistics so folding and pruning are really tested."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()
