"""Small versions of the architecture families people upload, written out block by block.

torchvision does not import beside the pinned torch, so the blocks follow its definitions:
ResNet's basic block, MobileNetV3's inverted residual (depthwise conv, squeeze-excite with a
hard-sigmoid gate, hardswish), EfficientNet's MBConv (SiLU, squeeze-excite with a sigmoid
gate), DenseNet's dense layer (concatenation of every earlier feature map), SqueezeNet's
fire module (two expand branches concatenated), GoogLeNet's inception module (four branches,
one of them max pooling) and VGG with batch norm. Each network takes 3 x 16 x 16 inputs and
has 10 classes; widths are tiny so tests run in milliseconds.

``build`` initialises them as the real networks are (He-normal weights, non-trivial batch
norm statistics), so logits differ by O(1) between an input and its reference; PyTorch's
default init shrinks the signal at every layer until float rounding dominates any error.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tests.compression.toy_models import randomize_batchnorm


def conv_bn(
    c_in: int, c_out: int, k: int = 3, stride: int = 1, groups: int = 1, act: type | None = None
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """torchvision's SqueezeExcitation: scale = gate(fc2(act(fc1(avgpool(x))))); x * scale."""

    def __init__(self, channels: int, squeeze: int, act: type, gate: type) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.act = act()
        self.gate = gate()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))
        return scale * x


class InvertedResidual(nn.Module):
    """MobileNetV3 / EfficientNet block: expand 1x1, depthwise kxk, SE, project 1x1."""

    def __init__(
        self, c_in: int, expanded: int, c_out: int, stride: int, act: type, se: SqueezeExcite
    ) -> None:
        super().__init__()
        self.expand = conv_bn(c_in, expanded, 1, act=act)
        self.depthwise = conv_bn(expanded, expanded, 3, stride, groups=expanded, act=act)
        self.se = se
        self.project = conv_bn(expanded, c_out, 1)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return out + x if self.residual else out


class MobileNetV3Like(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 8, 3, 2, act=nn.Hardswish)
        se = SqueezeExcite(24, 8, nn.ReLU, nn.Hardsigmoid)
        self.block1 = InvertedResidual(8, 24, 12, 2, nn.Hardswish, se)
        se = SqueezeExcite(36, 12, nn.ReLU, nn.Hardsigmoid)
        self.block2 = InvertedResidual(12, 36, 12, 1, nn.Hardswish, se)
        self.head = conv_bn(12, 32, 1, act=nn.Hardswish)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(32, 24), nn.Hardswish(), nn.Linear(24, 10))

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(self.block2(self.block1(self.stem(x))))
        return self.classifier(torch.flatten(self.pool(x), 1))


class EfficientNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 8, 3, 2, act=nn.SiLU)
        se = SqueezeExcite(32, 4, nn.SiLU, nn.Sigmoid)
        self.block1 = InvertedResidual(8, 32, 16, 2, nn.SiLU, se)
        se = SqueezeExcite(48, 6, nn.SiLU, nn.Sigmoid)
        self.block2 = InvertedResidual(16, 48, 16, 1, nn.SiLU, se)
        self.head = conv_bn(16, 40, 1, act=nn.SiLU)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(40, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(self.block2(self.block1(self.stem(x))))
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(c_in, c_out, 3, stride, act=nn.ReLU)
        self.conv2 = conv_bn(c_out, c_out, 3)
        self.shortcut = (
            conv_bn(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 8, 3, act=nn.ReLU)
        self.pool0 = nn.MaxPool2d(3, 2, 1)
        self.layer1 = BasicBlock(8, 8, 1)
        self.layer2 = BasicBlock(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer2(self.layer1(self.pool0(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1-BN-ReLU-conv3x3 on the concatenation of all earlier maps."""

    def __init__(self, c_in: int, growth: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, 2 * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(2 * growth)
        self.conv2 = nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list[Tensor]) -> Tensor:
        x = self.conv1(F.relu(self.norm1(torch.cat(features, 1))))
        return self.conv2(F.relu(self.norm2(x)))


class DenseNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 8, 3, act=nn.ReLU)
        self.dense = nn.ModuleList([DenseLayer(8 + 4 * i, 4) for i in range(3)])
        self.transition = nn.Sequential(
            nn.BatchNorm2d(20), nn.ReLU(), nn.Conv2d(20, 12, 1, bias=False), nn.AvgPool2d(2)
        )
        self.norm = nn.BatchNorm2d(12)
        self.fc = nn.Linear(12, 10)

    def forward(self, x: Tensor) -> Tensor:
        features = [self.stem(x)]
        for layer in self.dense:
            features.append(layer(features))
        x = F.relu(self.norm(self.transition(torch.cat(features, 1))), inplace=True)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Fire(nn.Module):
    def __init__(self, c_in: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(c_in, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)  # reused three times, as in torchvision

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.squeeze(x))
        return torch.cat([self.relu(self.expand1x1(x)), self.relu(self.expand3x3(x))], 1)


class SqueezeNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(16, 4, 8),
            Fire(16, 4, 8),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Conv2d(16, 10, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


class Inception(nn.Module):
    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch1 = conv_bn(c_in, 4, 1, act=nn.ReLU)
        self.branch2 = nn.Sequential(
            conv_bn(c_in, 4, 1, act=nn.ReLU), conv_bn(4, 6, 3, act=nn.ReLU)
        )
        self.branch3 = nn.Sequential(
            conv_bn(c_in, 2, 1, act=nn.ReLU), conv_bn(2, 4, 3, act=nn.ReLU)
        )
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), conv_bn(c_in, 4, 1))

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), F.relu(self.branch4(x))]
        return torch.cat(branches, 1)


class GoogLeNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 8, 3, act=nn.ReLU)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception = Inception(8)
        self.fc = nn.Linear(18, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.inception(self.pool1(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class VGGBNLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, 8, act=nn.ReLU), nn.MaxPool2d(2),
            conv_bn(8, 16, act=nn.ReLU), conv_bn(16, 16, act=nn.ReLU), nn.MaxPool2d(2),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Linear(16 * 4 * 4, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, 10)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


FAMILIES: dict[str, type[nn.Module]] = {
    "resnet": ResNetLike,
    "mobilenet_v3": MobileNetV3Like,
    "efficientnet": EfficientNetLike,
    "densenet": DenseNetLike,
    "squeezenet": SqueezeNetLike,
    "googlenet": GoogLeNetLike,
    "vgg_bn": VGGBNLike,
}
INPUT_SHAPE = (3, 16, 16)


def build(family: str, seed: int = 0) -> nn.Module:
    """A family's network in eval mode, He-initialised from ``seed``."""
    model = FAMILIES[family]()
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            std = math.sqrt(2 / module.weight[0].numel())
            module.weight.data.copy_(torch.randn(module.weight.shape, generator=generator) * std)
            if module.bias is not None:
                module.bias.data.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
    return randomize_batchnorm(model, seed)
