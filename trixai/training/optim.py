"""Learning-rate schedules not in torch: linear warm-up + cosine (ResNet-50 recipe), Fast-AT's per-batch cyclic
rate, and a constant rate. A schedule stepped every batch says so with ``per_step = True`` and takes ``total_steps``."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LinearLR, LRScheduler, SequentialLR

from trixai.core.errors import TrixaiError


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


def cyclic(optimizer: Optimizer, *, total_steps: int, peak: float = 0.5) -> LRScheduler:
    """Wong et al. 2020 (Fast-AT, ``train_fgsm.py``): the rate rises linearly from 0 to the optimiser's lr over the
    first ``peak`` of all training steps and falls linearly towards 0, which it would reach one step after the last,
    stepped every batch; the first step runs at rate 0 (their ``CyclicLR(base_lr=0, max_lr=0.2,
    step_size_up=step_size_down=total_steps / 2)`` with SGD, the same rate at every step)."""
    if not 0.0 < peak < 1.0:
        raise TrixaiError(f"scheduler.peak={peak}: expected the fraction of all steps at which the rate peaks, in (0, 1)")
    total = max(2, int(total_steps))
    up = min(total - 1, max(1, round(peak * total)))

    def factor(step: int) -> float:
        return step / up if step <= up else max(0.0, (total - step) / (total - up))

    return LambdaLR(optimizer, factor)


cyclic.per_step = True
