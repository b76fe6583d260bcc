"""The eight ImageNet-family classifiers people compress most, at any width.

ResNet-18, MobileNetV2, MobileNetV3-small, EfficientNet-B0, DenseNet-121, SqueezeNet 1.1,
GoogLeNet and VGG-11-BN, written from their papers' layer tables (torchvision cannot be
imported beside the CPU torch wheel this project pins). Module names follow torchvision's
so state dicts line up by name. ``width`` scales every channel count (and VGG's hidden
classifier width), so the same block types (residual adds, depthwise convs, squeeze-excite
products, hardswish and SiLU, dense and fire concatenations, inception branches, a 25088-wide
flatten) can be exercised small in tests and at full size in benchmarks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from torch import Tensor, nn

ImageNetName = Literal[
    "resnet18",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "densenet121",
    "squeezenet1_1",
    "googlenet",
    "vgg11_bn",
]


class ImageNetArgs(BaseModel):
    num_classes: int = Field(10, ge=2)
    image_size: int = Field(224, ge=32, le=1024)
    width: float = Field(1.0, gt=0, le=4, description="Multiplier of every channel count.")

    def input_shape(self) -> tuple[int, ...]:
        return (3, self.image_size, self.image_size)


def _divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _conv_bn(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: type | None = None
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


# ---- ResNet-18 -------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)  # one ReLU used twice


class ResNet18(nn.Module):
    def __init__(self, args: ImageNetArgs) -> None:
        super().__init__()
        widths = [_scaled(c, args.width) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = widths[0]
        for index, cout in enumerate(widths):
            stride = 1 if index == 0 else 2
            blocks = nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))
            setattr(self, f"layer{index + 1}", blocks)
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, args.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---- MobileNetV2 -----------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = round(cin * expand)
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(cin, hidden, 1, act=nn.ReLU6))
        layers += [
            _conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip

    def __init__(self, args: ImageNetArgs) -> None:
        super().__init__()
        cin = _divisible(32 * args.width)
        last = _divisible(1280 * max(1.0, args.width))
        features: list[nn.Module] = [_conv_bn(3, cin, 3, 2, act=nn.ReLU6)]
        for expand, channels, repeats, stride in self.SETTINGS:
            cout = _divisible(channels * args.width)
            for index in range(repeats):
                features.append(InvertedResidual(cin, cout, stride if index == 0 else 1, expand))
                cin = cout
        features.append(_conv_bn(cin, last, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, args.num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


# ---- MobileNetV3-small and EfficientNet-B0 -----------------------------------------------------


class SqueezeExcitation(nn.Module):
    """Channel attention: the block's output times a gate computed from its pooled self."""

    def __init__(self, channels: int, squeeze: int, act: type, gate: type) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = act()
        self.scale_activation = gate()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class MobileNetV3Block(nn.Module):
    def __init__(
        self, cin: int, kernel: int, hidden: int, cout: int, se: bool, act: type, stride: int
    ) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(_conv_bn(cin, hidden, 1, act=act))
        layers.append(_conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if se:
            squeeze = _divisible(hidden // 4)
            layers.append(SqueezeExcitation(hidden, squeeze, nn.ReLU, nn.Hardsigmoid))
        layers.append(_conv_bn(hidden, cout, 1))
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x) if self.use_res_connect else self.block(x)


class MobileNetV3Small(nn.Module):
    RE, HS = nn.ReLU, nn.Hardswish
    SETTINGS = (  # input, kernel, expanded, output, squeeze-excite, activation, stride
        (16, 3, 16, 16, True, RE, 2), (16, 3, 72, 24, False, RE, 2),
        (24, 3, 88, 24, False, RE, 1), (24, 5, 96, 40, True, HS, 2),
        (40, 5, 240, 40, True, HS, 1), (40, 5, 240, 40, True, HS, 1),
        (40, 5, 120, 48, True, HS, 1), (48, 5, 144, 48, True, HS, 1),
        (48, 5, 288, 96, True, HS, 2), (96, 5, 576, 96, True, HS, 1),
        (96, 5, 576, 96, True, HS, 1),
    )  # fmt: skip

    def __init__(self, args: ImageNetArgs) -> None:
        super().__init__()

        def scaled(channels: int) -> int:
            return _divisible(channels * args.width)

        first = scaled(16)
        features: list[nn.Module] = [_conv_bn(3, first, 3, 2, act=nn.Hardswish)]
        for cin, kernel, hidden, cout, se, act, stride in self.SETTINGS:
            block = MobileNetV3Block(
                scaled(cin), kernel, scaled(hidden), scaled(cout), se, act, stride
            )
            features.append(block)
        last_conv = 6 * scaled(96)
        features.append(_conv_bn(scaled(96), last_conv, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        hidden = _divisible(1024 * args.width)
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, hidden), nn.Hardswish(), nn.Dropout(0.2),
            nn.Linear(hidden, args.num_classes),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        hidden = _divisible(cin * expand)
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(_conv_bn(cin, hidden, 1, act=nn.SiLU))
        layers += [
            _conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU),
            SqueezeExcitation(hidden, max(1, cin // 4), nn.SiLU, nn.Sigmoid),
            _conv_bn(hidden, cout, 1),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        # stochastic depth is the identity at inference, so it is left out
        return x + self.block(x) if self.use_res_connect else self.block(x)


class EfficientNetB0(nn.Module):
    STAGES = (  # expand, kernel, stride, input, output, layers
        (1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
        (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1),
    )  # fmt: skip

    def __init__(self, args: ImageNetArgs) -> None:
        super().__init__()

        def scaled(channels: int) -> int:
            return _divisible(channels * args.width)

        features: list[nn.Module] = [_conv_bn(3, scaled(32), 3, 2, act=nn.SiLU)]
        for expand, kernel, stride, cin, cout, repeats in self.STAGES:
            stage = []
            for index in range(repeats):
                source = scaled(cin) if index == 0 else scaled(cout)
                stage.append(MBConv(source, scaled(cout), kernel, stride if index == 0 else 1,
                                    expand))  # fmt: skip
            features.append(nn.Sequential(*stage))
        last = 4 * scaled(320)
        features.append(_conv_bn(scaled(320), last, 1, act=nn.SiLU))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, args.num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ---- DenseNet-121 ------------------------------------------------------------------------------


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int, bottleneck: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bottleneck, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bottleneck)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bottleneck, growth, 3, 1, 1, bias=False)

    def forward(self, features: list[Tensor]) -> Tensor:
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, cin: int, growth: int, bottleneck: int) -> None:
        super().__init__()
        for index in range(layers):
            self[f"denselayer{index + 1}"] = DenseLayer(cin + index * growth, growth, bottleneck)

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class DenseNet121(nn.Module):
    def __init__(self, args: ImageNetArgs) -> None:
        super().__init__()
        growth, channels = _scaled(32, args.width), _scaled(64, args.width)
        features: list[tuple[str, nn.Module]] = [
            ("conv0", nn.Conv2d(3, channels, 7, 2, 3, bias=False)),
            ("norm0", nn.BatchNorm2d(channels)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(3, 2, 1)),
        ]
        for index, layers in enumerate((6, 12, 24, 16)):
            features.append((f"denseblock{index + 1}",
                             DenseBlock(layers, channels, growth, 4 * growth)))  # fmt: skip
            channels += layers * growth
            if index < 3:
                transition = nn.Sequential()
                transition.add_module("norm", nn.BatchNorm2d(channels))
                transition.add_module("relu", nn.ReLU(inplace=True))
                transition.add_module("conv", nn.Conv2d(channels, channels // 2, 1, bias=False))
                transition.add_module("pool", nn.AvgPool2d(2, 2))
                features.append((f"transition{index + 1}", transition))
                channels //= 2
        features.append(("norm5", nn.BatchNorm2d(channels)))
        self.features = nn.Sequential(OrderedDict(features))
        self.classifier = nn.Linear(channels, args.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(F.relu(self.features(x)), (1, 1))
        return self.classifier(torch.flatten(x, 1))


# ---- SqueezeNet 1.1 ----------------------------------------------------------------------------


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_activation(self.expand1x1(x)),
             self.expand3x3_activation(self.expand3x3(x))], 1,
        )  # fmt: skip


class SqueezeNet11(nn.Module):
    FIRES = ((16, 64), (16, 64), "M", (32, 128), (32, 128), "M", (48, 192), (48, 192),
             (64, 256), (64, 256))  # fmt: skip

    def __init__(self, args: ImageNetArgs) -> None:
        super().__init__()
        cin = _scaled(64, args.width)
        features: list[nn.Module] = [
            nn.Conv2d(3, cin, 3, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
        ]  # fmt: skip
        for item in self.FIRES:
            if item == "M":
                features.append(nn.MaxPool2d(3, 2, ceil_mode=True))
                continue
            squeeze, expand = (_scaled(c, args.width) for c in item)
            features.append(Fire(cin, squeeze, expand, expand))
            cin = 2 * expand
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Conv2d(cin, args.num_classes, 1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


# ---- GoogLeNet ---------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int):
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, c3r, 1), BasicConv2d(c3r, c3, 3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, c5r, 1), BasicConv2d(c5r, c5, 3, padding=1))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, 1, 1, ceil_mode=True), BasicConv2d(cin, pool, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNet(nn.Module):
    # c1, c3 reduce, c3, c5 reduce, c5, pool projection
    BLOCKS: ClassVar[dict[str, tuple[int, ...]]] = {
        "inception3a": (64, 96, 128, 16, 32, 32), "inception3b": (128, 128, 192, 32, 96, 64),
        "inception4a": (192, 96, 208, 16, 48, 64), "inception4b": (160, 112, 224, 24, 64, 64),
        "inception4c": (128, 128, 256, 24, 64, 64), "inception4d": (112, 144, 288, 32, 64, 64),
        "inception4e": (256, 160, 320, 32, 128, 128), "inception5a": (256, 160, 320, 32, 128, 128),
        "inception5b": (384, 192, 384, 48, 128, 128),
    }  # fmt: skip

    def __init__(self, args: ImageNetArgs) -> None:
        super().__init__()

        def scaled(channels: int) -> int:
            return _scaled(channels, args.width)

        self.conv1 = BasicConv2d(3, scaled(64), 7, 2, 3)
        self.maxpool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = BasicConv2d(scaled(64), scaled(64), 1)
        self.conv3 = BasicConv2d(scaled(64), scaled(192), 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        cin = scaled(192)
        for name, widths in self.BLOCKS.items():
            c1, c3r, c3, c5r, c5, pool = (scaled(c) for c in widths)
            setattr(self, name, Inception(cin, c1, c3r, c3, c5r, c5, pool))
            cin = c1 + c3 + c5 + pool
        self.maxpool3 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.maxpool4 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(cin, args.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        for name in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
            x = getattr(self, name)(x)
        x = self.inception5b(self.inception5a(self.maxpool4(x)))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


# ---- VGG-11-BN ---------------------------------------------------------------------------------


class VGG11BN(nn.Module):
    """The 224x224 VGG: a 7x7x512 = 25088-wide flatten into two 4096-wide linear layers."""

    CONFIG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, args: ImageNetArgs) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for item in self.CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            cout = _scaled(int(item), args.width)
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        hidden = _scaled(4096, args.width)
        self.classifier = nn.Sequential(
            nn.Linear(cin * 49, hidden), nn.ReLU(True), nn.Dropout(),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
            nn.Linear(hidden, args.num_classes),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


BUILDERS: dict[str, Callable[[ImageNetArgs], nn.Module]] = {
    "resnet18": ResNet18,
    "mobilenet_v2": MobileNetV2,
    "mobilenet_v3_small": MobileNetV3Small,
    "efficientnet_b0": EfficientNetB0,
    "densenet121": DenseNet121,
    "squeezenet1_1": SqueezeNet11,
    "googlenet": GoogLeNet,
    "vgg11_bn": VGG11BN,
}
