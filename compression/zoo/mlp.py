"""A fully connected classifier for flat feature vectors."""

from __future__ import annotations

from pydantic import BaseModel, Field
from torch import nn


class MLPArgs(BaseModel):
    in_features: int = Field(64, ge=1)
    hidden: list[int] = Field(default_factory=lambda: [128, 64])
    num_classes: int = Field(10, ge=2)

    def input_shape(self) -> tuple[int, ...]:
        return (self.in_features,)


def mlp(args: MLPArgs) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = args.in_features
    for hidden in args.hidden:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, args.num_classes))
    return nn.Sequential(*layers)
