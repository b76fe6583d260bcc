"""LeNet-5 in its common modern form (ReLU, max pooling), for small grey images."""

from __future__ import annotations

from pydantic import BaseModel, Field
from torch import Tensor, nn


class LeNet5Args(BaseModel):
    in_channels: int = Field(1, ge=1)
    image_size: int = Field(28, ge=12, description="Square input side; 28 for MNIST, 32 classic.")
    num_classes: int = Field(10, ge=2)

    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.image_size, self.image_size)


class LeNet5(nn.Module):
    def __init__(self, args: LeNet5Args) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(args.in_channels, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = ((args.image_size // 2) - 4) // 2
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, args.num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
