"""Small models for the digits problems, in plain ``torch.nn`` (ResNets: ``hessbench.resnet``)."""

from __future__ import annotations

import torch
from torch import nn


def mlp(sizes: tuple[int, ...] = (64, 48, 48, 10)) -> nn.Sequential:
    """Fully connected tanh network; the default has 5,962 parameters."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def digits_cnn(num_classes: int = 10) -> nn.Sequential:
    """Two tanh conv layers and a linear head for 1x8x8 images (1,626 parameters)."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.Tanh(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, num_classes),
    )


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
