"""CIFAR ResNets in plain ``torch.nn`` (no torchvision).

Written to be safe under ``torch.func`` transforms (``functional_call``, ``grad``,
``jvp``, ``vmap``): no in-place activations or in-place residual additions. Use the
models in eval mode for Hessian work so BatchNorm uses its running statistics and
the loss is a function of the parameters alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BasicBlock", "CifarResNet", "resnet20", "resnet18"]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection.

    The shortcut is the identity when the shape is unchanged, otherwise a 1x1
    convolution (with the block's stride) followed by BatchNorm (option B of He et al.).
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: 3x3 conv stem (stride 1, no max-pool), stages of
    :class:`BasicBlock`, global average pooling and a linear head."""

    def __init__(
        self,
        widths: tuple[int, ...],
        blocks_per_stage: tuple[int, ...],
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(widths) != len(blocks_per_stage):
            raise ValueError("widths and blocks_per_stage must have the same length")
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages = []
        in_planes = widths[0]
        for i, (width, n_blocks) in enumerate(zip(widths, blocks_per_stage)):
            layers = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(in_planes, width, stride))
                in_planes = width
            stages.append(nn.Sequential(*layers))
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(in_planes, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He init for convs, BN = identity; the linear head keeps PyTorch's default.
        # All randomness comes from torch's global RNG, so torch.manual_seed fixes it.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.fc(out)


def resnet20(num_classes: int = 10) -> CifarResNet:
    """CIFAR ResNet-20 (He et al. 2016, sec. 4.2): 3 stages x 3 BasicBlocks with
    16/32/64 channels, BatchNorm, global average pooling, linear head.

    Shortcuts are option B: a 1x1 conv + BatchNorm projection where the shape changes
    (two places), identity elsewhere. This gives 272,474 parameters for 10 classes
    (the parameter-free option-A shortcuts of the paper give 269,722).
    """
    return CifarResNet((16, 32, 64), (3, 3, 3), num_classes=num_classes)


def resnet18(num_classes: int = 10) -> CifarResNet:
    """CIFAR variant of ResNet-18: 3x3 conv stem with stride 1 and no max-pool, four
    stages of 2 BasicBlocks with 64/128/256/512 channels, projection (1x1 conv + BN)
    shortcuts where the shape changes; 11,173,962 parameters for 10 classes."""
    return CifarResNet((64, 128, 256, 512), (2, 2, 2, 2), num_classes=num_classes)
