"""A small 1-D CNN for signals such as mnist1d (1 x 40 samples)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from torch import Tensor, nn


class CNN1dArgs(BaseModel):
    in_channels: int = Field(1, ge=1)
    length: int = Field(40, ge=8)
    channels: int = Field(32, ge=1)
    hidden: int = Field(64, ge=1)
    num_classes: int = Field(10, ge=2)

    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.length)


class CNN1d(nn.Module):
    def __init__(self, args: CNN1dArgs) -> None:
        super().__init__()
        width = args.channels
        self.features = nn.Sequential(
            nn.Conv1d(args.in_channels, width, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(width, width, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool1d(2),
        )
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(width * (args.length // 4), args.hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(args.hidden, args.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.relu(self.fc1(self.flatten(self.features(x)))))
