"""ResNet and ResNeXt written out by hand.

The layout follows "Deep Residual Learning for Image Recognition" (He et al., 2015) with the
stride on the 3x3 convolution of the bottleneck (the "v1.5" variant used by torchvision and
timm), and "Aggregated Residual Transformations for Deep Neural Networks" (Xie et al., 2016)
for the grouped 3x3 convolution of ResNeXt.

Module and parameter names match torchvision's and timm's ResNet (`conv1`, `bn1`,
`layer1.0.conv1`, `layer1.0.downsample.0`, `fc`, ...), so their state dicts load into these
networks with `strict=True`.
"""

from __future__ import annotations

import logging
from typing import Type, Union

import torch
from torch import nn

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "resnet18",
    "resnet18_half",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
]

_logger = logging.getLogger(__name__)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """Build a 3x3 convolution with padding 1 and no bias (a BatchNorm follows it)."""
    return nn.Conv2d(
        in_channels, out_channels, kernel_size=3, stride=stride, padding=1, groups=groups, bias=False
    )


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """Build a 1x1 convolution with no bias."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection, as in ResNet-18 and ResNet-34."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(
                f"BasicBlock supports only groups=1 and base_width=64, got groups={groups} "
                f"and base_width={base_width}. Use Bottleneck for ResNeXt"
            )
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = downsample

    def zero_init_last(self) -> None:
        """Set the last BatchNorm's scale to zero so the block starts as the identity."""
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)

        x = self.conv1(x)
        x = self.bn1(x)
        x = self.act1(x)

        x = self.conv2(x)
        x = self.bn2(x)

        x += shortcut
        return self.act2(x)


class Bottleneck(nn.Module):
    """A 1x1 reduction, a (grouped) 3x3 convolution and a 1x1 expansion by 4, with a residual.

    The 3x3 convolution has `int(planes * base_width / 64) * groups` channels, so `groups=1,
    base_width=64` gives ResNet and, for example, `groups=32, base_width=4` gives ResNeXt 32x4d.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        out_channels = planes * self.expansion

        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = downsample

    def zero_init_last(self) -> None:
        """Set the last BatchNorm's scale to zero so the block starts as the identity."""
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)

        x = self.conv1(x)
        x = self.bn1(x)
        x = self.act1(x)

        x = self.conv2(x)
        x = self.bn2(x)
        x = self.act2(x)

        x = self.conv3(x)
        x = self.bn3(x)

        x += shortcut
        return self.act3(x)


Block = Union[Type[BasicBlock], Type[Bottleneck]]


class ResNet(nn.Module):
    """ResNet body: a 7x7/2 stem with max pooling, four residual stages, average pooling, `fc`.

    Args:
        block: `BasicBlock` or `Bottleneck`.
        layers: number of blocks in each of the four stages.
        num_classes: outputs of `fc`.
        groups: groups of the 3x3 convolutions (ResNeXt cardinality).
        width_per_group: channels per group of the 3x3 convolutions in the first stage.
        drop_rate: dropout probability applied to the pooled features before `fc`.
        width: channels of the stem and the first stage; each later stage doubles them.
        zero_init_last: start every residual block as the identity by zeroing its last BatchNorm.
    """

    def __init__(
        self,
        block: Block,
        layers: list[int],
        num_classes: int = 1000,
        groups: int = 1,
        width_per_group: int = 64,
        drop_rate: float = 0.0,
        width: int = 64,
        zero_init_last: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must give the block count of 4 stages, got {layers}")
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.groups = groups
        self.base_width = width_per_group
        self.in_channels = width

        self.conv1 = nn.Conv2d(3, self.in_channels, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.in_channels)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.layer1 = self._make_stage(block, width, layers[0], stride=1)
        self.layer2 = self._make_stage(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_stage(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_stage(block, width * 8, layers[3], stride=2)

        self.num_features = width * 8 * block.expansion
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes)

        self.init_weights(zero_init_last=zero_init_last)

    def _make_stage(self, block: Block, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = nn.Sequential(
                conv1x1(self.in_channels, out_channels, stride),
                nn.BatchNorm2d(out_channels),
            )

        blocks = [
            block(self.in_channels, planes, stride, downsample, self.groups, self.base_width)
        ]
        self.in_channels = out_channels
        for _ in range(1, num_blocks):
            blocks.append(block(self.in_channels, planes, 1, None, self.groups, self.base_width))
        return nn.Sequential(*blocks)

    def init_weights(self, zero_init_last: bool = False) -> None:
        """Apply He (Kaiming) normal init to convolutions, and unit scale and zero shift to BatchNorm."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_last:
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    module.zero_init_last()

    def get_classifier(self) -> nn.Module:
        """Return the final linear layer."""
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.act1(x)
        x = self.maxpool(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.global_pool(x)
        x = self.flatten(x)
        x = self.head_drop(x)
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        return self.forward_head(x)


def _resnet(
    block: Block,
    layers: list[int],
    num_classes: int,
    drop_rate: float,
    **kwargs,
) -> ResNet:
    _logger.debug("Building ResNet with %s %s, %d classes", block.__name__, layers, num_classes)
    return ResNet(block, layers, num_classes=num_classes, drop_rate=drop_rate, **kwargs)


def resnet18(num_classes: int = 1000, drop_rate: float = 0.0, **kwargs) -> ResNet:
    """ResNet-18: BasicBlock, stages of 2-2-2-2 blocks."""
    return _resnet(BasicBlock, [2, 2, 2, 2], num_classes, drop_rate, **kwargs)


def resnet18_half(num_classes: int = 1000, drop_rate: float = 0.0, **kwargs) -> ResNet:
    """ResNet-18 at half width (32-64-128-256 channels): about a quarter of the compute, for CPUs."""
    return _resnet(BasicBlock, [2, 2, 2, 2], num_classes, drop_rate, width=32, **kwargs)


def resnet34(num_classes: int = 1000, drop_rate: float = 0.0, **kwargs) -> ResNet:
    """ResNet-34: BasicBlock, stages of 3-4-6-3 blocks."""
    return _resnet(BasicBlock, [3, 4, 6, 3], num_classes, drop_rate, **kwargs)


def resnet50(num_classes: int = 1000, drop_rate: float = 0.0, **kwargs) -> ResNet:
    """ResNet-50: Bottleneck, stages of 3-4-6-3 blocks."""
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, drop_rate, **kwargs)


def resnet101(num_classes: int = 1000, drop_rate: float = 0.0, **kwargs) -> ResNet:
    """ResNet-101: Bottleneck, stages of 3-4-23-3 blocks."""
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, drop_rate, **kwargs)


def resnet152(num_classes: int = 1000, drop_rate: float = 0.0, **kwargs) -> ResNet:
    """ResNet-152: Bottleneck, stages of 3-8-36-3 blocks."""
    return _resnet(Bottleneck, [3, 8, 36, 3], num_classes, drop_rate, **kwargs)


def resnext50_32x4d(num_classes: int = 1000, drop_rate: float = 0.0, **kwargs) -> ResNet:
    """ResNeXt-50 32x4d: ResNet-50 layout with 32 groups of 4 channels in the first stage."""
    return _resnet(
        Bottleneck, [3, 4, 6, 3], num_classes, drop_rate, groups=32, width_per_group=4, **kwargs
    )


def resnext101_32x8d(num_classes: int = 1000, drop_rate: float = 0.0, **kwargs) -> ResNet:
    """ResNeXt-101 32x8d: ResNet-101 layout with 32 groups of 8 channels in the first stage."""
    return _resnet(
        Bottleneck, [3, 4, 23, 3], num_classes, drop_rate, groups=32, width_per_group=8, **kwargs
    )


def resnext101_64x4d(num_classes: int = 1000, drop_rate: float = 0.0, **kwargs) -> ResNet:
    """ResNeXt-101 64x4d: ResNet-101 layout with 64 groups of 4 channels in the first stage."""
    return _resnet(
        Bottleneck, [3, 4, 23, 3], num_classes, drop_rate, groups=64, width_per_group=4, **kwargs
    )
