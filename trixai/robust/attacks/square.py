"""Square Attack, L-inf (Andriushchenko et al. 2020): score-based random search with square updates.

Starts from vertical stripes of +-eps, then each query redraws one random square window (side from the
published ``p`` schedule, defined on 10,000 queries and rescaled to the budget) to +-eps per channel and
keeps it when the margin loss drops. Points stop querying once fooled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trixai.errors import TrixaiError
from trixai.robust.attacks.base import Attack
from trixai.robust.attacks.margins import is_fooled, margin

_HALVINGS = ((10, 0), (50, 1), (200, 2), (500, 3), (1000, 4), (2000, 5), (4000, 6), (6000, 7), (8000, 8))


def square_fraction(p_init: float, query: int, budget: int) -> float:
    """Fraction of pixels the square covers at ``query``: ``p_init`` halved at 10/50/200/.../8000 of 10,000."""
    scaled = int(query / budget * 10000)
    halvings = 9
    for bound, count in _HALVINGS:
        if scaled <= bound:
            halvings = count
            break
    return p_init / 2**halvings


@dataclass
class Square(Attack):
    """Untargeted Square Attack with the margin loss; ``queries`` per point after the initial one."""

    eps: float = 8 / 255
    queries: int = 5000
    p_init: float = 0.8
    restarts: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.eps < 0 or self.queries < 1 or self.restarts < 1 or not 0 < self.p_init <= 1:
            raise TrixaiError(f"Square needs eps >= 0, queries >= 1, restarts >= 1, 0 < p_init <= 1 "
                              f"(got {self.eps}, {self.queries}, {self.restarts}, {self.p_init})")

    @property
    def name(self) -> str:
        return "square"

    @torch.no_grad()
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if x.dim() != 4:
            raise TrixaiError(f"Square needs image batches (N, C, H, W), got shape {tuple(x.shape)}")
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        x_adv = x.clone()
        robust = ~is_fooled(model(x), y)
        for _ in range(self.restarts):
            rows = robust.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            adv, hit = self._run(model, x[rows], y[rows], generator)
            x_adv[rows] = adv
            robust[rows[hit]] = False
        return x_adv

    def _signs(self, shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
        return torch.randint(0, 2, shape, generator=generator, device=device).float() * 2 - 1

    def _run(self, model: nn.Module, x0: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        n, c, h, w = x0.shape
        best = (x0 + self.eps * self._signs((n, c, 1, w), generator, x0.device)).clamp(0, 1)
        logits = model(best)
        best_margin, fooled = margin(logits, y), is_fooled(logits, y)
        active = (~fooled).nonzero().squeeze(1)
        for query in range(self.queries):
            if active.numel() == 0:
                break
            side = min(max(round(math.sqrt(square_fraction(self.p_init, query, self.queries) * h * w)), 1), h - 1)
            top = int(torch.randint(0, h - side + 1, (1,), generator=generator, device=x0.device))
            left = int(torch.randint(0, w - side + 1, (1,), generator=generator, device=x0.device))
            origin, current = x0[active], best[active]
            window = (slice(None), slice(None), slice(top, top + side), slice(left, left + side))
            old = current[window]
            new = (origin[window] + self.eps * self._signs((len(active), c, 1, 1), generator, x0.device)).clamp(0, 1)
            for _ in range(10):  # redraw windows that would not change the image
                same = (new - old).abs().flatten(1).sum(dim=1) < 1e-7
                if not same.any():
                    break
                redraw = self.eps * self._signs((int(same.sum()), c, 1, 1), generator, x0.device)
                new[same] = (origin[window][same] + redraw).clamp(0, 1)
            candidate = current.clone()
            candidate[window] = new
            logits = model(candidate)
            candidate_margin = margin(logits, y[active])
            better = candidate_margin < best_margin[active]
            best[active[better]] = candidate[better]
            best_margin[active[better]] = candidate_margin[better]
            hit = is_fooled(logits, y[active]) & better
            fooled[active[hit]] = True
            active = active[~hit]
        return best, fooled
