"""The small CNN used on 8x8 digits: Conv-ReLU-Conv-ReLU-MaxPool-Linear-ReLU-Linear.

Small enough to train in seconds on a CPU, and it has the ReLU -> MaxPool pattern that
trips DeepLIFT implementations, which makes it the workhorse of tests and benchmarks.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from torch import Tensor, nn


class SmallCNNArgs(BaseModel):
    in_channels: int = Field(1, ge=1)
    image_size: int = Field(8, ge=4)
    channels: tuple[int, int] = (16, 32)
    hidden: int = Field(64, ge=1)
    num_classes: int = Field(10, ge=2)

    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.image_size, self.image_size)


class SmallCNN(nn.Module):
    def __init__(self, args: SmallCNNArgs) -> None:
        super().__init__()
        c1, c2 = args.channels
        self.conv1 = nn.Conv2d(args.in_channels, c1, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(c2 * (args.image_size // 2) ** 2, args.hidden)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(args.hidden, args.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.fc2(self.relu3(self.fc1(self.flatten(x))))
