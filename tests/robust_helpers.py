"""Small models and data shared by the robustness tests (fast on 2 CPU cores)."""

from __future__ import annotations

import torch
from torch import nn


def small_cnn(outputs: int = 5, in_chans: int = 3, seed: int = 0) -> nn.Sequential:
    """Conv-BN-ReLU x2 + linear head: BatchNorm makes mode/statistics checks meaningful."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_chans, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(64, outputs),
    )


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 150, lr: float = 0.05) -> nn.Module:
    """A few full-batch Adam steps (CE or BCE by target dtype); returns the model in eval mode."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss() if y.is_floating_point() else nn.CrossEntropyLoss()
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    return model.eval()


def blobs(n: int, classes: int, size: int = 16, seed: int = 0, spread: float = 0.12) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class sets the mean colour of a centred square: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = 0.35 + 0.1 * torch.rand(n, 3, size, size, generator=g)
    palette = torch.rand(classes, 3, generator=g)
    quarter = size // 4
    x[:, :, quarter:-quarter, quarter:-quarter] = palette[y][:, :, None, None] * spread + 0.5 - spread / 2
    x += 0.05 * torch.randn(x.shape, generator=g)
    return x.clamp(0, 1), y
