"""Targeted attacks (APGD-T, FAB-T): several targets of each point side by side in one batch.

A point has up to ``targets`` runs, one per target class. Run one after the other on few points, each
forward sees a small batch, which leaves a CPU's vector units or an accelerator mostly idle. Stacking the
runs of several targets makes the batch ``targets x points`` rows (at most ``max_batch``); each row follows
its own run exactly, and once a row fools its point the point's other rows stop too (``group``), since the
point is no longer robust. Targets beyond the batch budget run in later groups, on the points still robust.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

TargetRun = Callable[[Tensor, Tensor, Tensor, Tensor, int], tuple[Tensor, Tensor]]
"""``(x, y, target, group, restart) -> (x_adv, fooled)`` over stacked rows; ``group[r]`` is row ``r``'s point."""


def stacked_target_runs(x: Tensor, y: Tensor, robust: Tensor, order: Tensor, run: TargetRun, *,
                        restarts: int, max_batch: int) -> Tensor:
    """Run ``run`` for every target in ``order`` (N, K) on the ``robust`` points; returns ``x_adv`` (N, ...).

    A fooled point keeps its first fooling example; a point that stays robust gets its last run's output.
    """
    x_adv, robust = x.clone(), robust.clone()
    count = order.shape[1]
    first = 0
    while first < count and robust.any():
        width = max(1, min(count - first, max_batch // int(robust.sum())))
        for restart in range(restarts):
            rows = robust.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            m = rows.numel()
            # row r = k * m + i: point rows[i] against target order[rows[i], first + k]
            targets = order[rows, first:first + width].T.reshape(-1)
            group = torch.arange(m, device=x.device).repeat(width)
            stacked = rows.repeat(width)  # indexing keeps x's memory format (channels_last), repeat() would not
            adv, hit = run(x[stacked], y[stacked], targets, group, restart)
            hit = hit.view(width, m)
            chosen = torch.where(hit.any(dim=0), hit.float().argmax(dim=0), width - 1)
            x_adv[rows] = adv.view(width, m, *x.shape[1:])[chosen, torch.arange(m, device=x.device)]
            robust[rows[hit.any(dim=0)]] = False
        first += width
    return x_adv


def highest_scoring_target_runs(x: Tensor, y: Tensor, order: Tensor, run: TargetRun,
                                score: Callable[[Tensor, Tensor], Tensor], *, restarts: int, max_batch: int) -> Tensor:
    """Every target in ``order`` (N, K) and every restart on every point (no point stops); per point the run output
    with the highest ``score(x_adv, y)`` (N,)."""
    n = x.shape[0]
    best, best_score = x.clone(), torch.full((n,), float("-inf"), device=x.device)
    width = max(1, min(order.shape[1], max_batch // max(n, 1)))
    rows = torch.arange(n, device=x.device)
    for first in range(0, order.shape[1], width):
        size = min(width, order.shape[1] - first)
        targets = order[:, first:first + size].T.reshape(-1)
        group = rows.repeat(size)
        for restart in range(restarts):
            adv, _ = run(x[group], y[group], targets, group, restart)
            scores = score(adv, y[group]).view(size, n)
            top, pick = scores.max(dim=0)
            chosen = adv.view(size, n, *x.shape[1:])[pick, rows]
            better = top > best_score
            best[better], best_score[better] = chosen[better], top[better]
    return best


def siblings_done(group: Tensor | None, hit: Tensor) -> Tensor:
    """Rows whose point has a row in ``hit`` (``hit`` itself without groups): they stop with it."""
    if group is None or not hit.any():
        return hit
    return torch.isin(group, group[hit])
