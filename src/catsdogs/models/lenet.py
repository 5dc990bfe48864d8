"""LeNet-5 for RGB photos of any size.

The layout follows LeCun et al., "Gradient-Based Learning Applied to Document Recognition"
(1998): two 5x5 convolutions with 6 and 16 filters, each followed by an activation and 2x2
pooling, then fully connected layers of 120 and 84 units. Two changes make it fit this task:
the first convolution takes 3 channels, and an adaptive average pool resizes the feature map
to the 5x5 that the first linear layer expects, so inputs of any size from 16x16 up work.
At 32x32 input the pool is the identity and the network is the classic one.
"""

from __future__ import annotations

import logging
from typing import Type

import torch
from torch import nn

__all__ = ["LeNet", "lenet"]

_logger = logging.getLogger(__name__)


class LeNet(nn.Module):
    """LeNet-5 with 3 input channels and an adaptive pool before the linear layers.

    Args:
        num_classes: outputs of the last linear layer `fc`.
        in_channels: channels of the input image.
        drop_rate: dropout probability applied before `fc`.
        act_layer: activation class. The default is ReLU, where the 1998 network used a scaled tanh.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        drop_rate: float = 0.0,
        act_layer: Type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate

        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5)
        self.act1 = act_layer()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.act2 = act_layer()
        self.pool2 = nn.MaxPool2d(2)
        self.global_pool = nn.AdaptiveAvgPool2d(5)

        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.act3 = act_layer()
        self.fc2 = nn.Linear(120, 84)
        self.act4 = act_layer()
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(84, num_classes)

    def get_classifier(self) -> nn.Module:
        """Return the final linear layer."""
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.act1(self.conv1(x)))
        x = self.pool2(self.act2(self.conv2(x)))
        return self.global_pool(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        x = self.act3(self.fc1(x))
        x = self.act4(self.fc2(x))
        x = self.head_drop(x)
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        return self.forward_head(x)


def lenet(num_classes: int = 1000, drop_rate: float = 0.0, **kwargs) -> LeNet:
    """LeNet-5 for 3-channel input of any size from 16x16 up."""
    _logger.debug("Building LeNet with %d classes", num_classes)
    return LeNet(num_classes=num_classes, drop_rate=drop_rate, **kwargs)
