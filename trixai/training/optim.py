"""Learning-rate schedules not in torch: linear warm-up + cosine (ResNet-50 recipe), and a constant rate."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LinearLR, LRScheduler, SequentialLR


def warmup_cosine(optimizer: Optimizer, *, warmup_epochs: int, max_epochs: int,
                  warmup_start_factor: float = 0.01) -> LRScheduler:
    """Linear warm-up over ``warmup_epochs`` then cosine decay to 0 at ``max_epochs`` (stepped per epoch)."""
    warmup_epochs = max(0, min(int(warmup_epochs), int(max_epochs) - 1))
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, int(max_epochs) - warmup_epochs))
    if warmup_epochs == 0:
        return cosine
    warmup = LinearLR(optimizer, start_factor=warmup_start_factor, total_iters=warmup_epochs)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_epochs])


def constant(optimizer: Optimizer) -> LRScheduler:
    """No decay."""
    return LambdaLR(optimizer, lambda epoch: 1.0)
