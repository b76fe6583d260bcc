"""CIFAR-style VGG with batch normalization (32x32 inputs, one linear classifier)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from torch import Tensor, nn

CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [*[64, 64, "M", 128, 128, "M", 256, 256, 256, "M"], *[512, 512, 512, "M"] * 2],
}


class VGGArgs(BaseModel):
    depth: Literal["vgg11", "vgg16"] = "vgg11"
    in_channels: int = Field(3, ge=1)
    image_size: int = Field(32, ge=32)
    width_multiplier: float = Field(1.0, gt=0, le=4)
    num_classes: int = Field(10, ge=2)

    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.image_size, self.image_size)


class VGG(nn.Module):
    def __init__(self, args: VGGArgs) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = args.in_channels
        for item in CONFIGS[args.depth]:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            width = max(1, round(int(item) * args.width_multiplier))
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(channels, args.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))
