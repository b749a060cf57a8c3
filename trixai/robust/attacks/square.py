"""Square Attack, L-inf (Andriushchenko et al. 2020): score-based random search with square updates.

Starts from vertical stripes of +-eps, then each query sets one random square window to +-eps per channel
and keeps it when the margin loss drops. Points stop querying once fooled. The window's side follows the
published ``p`` schedule (``p_init`` halved after queries 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000).

Two variants (``variant``), after the authors' code:

- ``"square"`` (standalone default, after Andriushchenko et al.'s code): the schedule is defined on 10,000
  queries and rescaled to the budget; a sign draw that would not change the image is redrawn (up to 4 draws;
  theirs redraws until one changes it); side at most ``h - 1``; the corner is drawn from ``0 .. h - side``.
- ``"autoattack"`` (AutoAttack's ``square.py`` as AutoAttack runs it, ``resc_schedule=False``): the schedule
  counts absolute queries (with 5,000 queries ``p`` ends at ``p_init / 128``); no redraws (a proposal that
  changes nothing spends its query); side at most ``min(h, w)``; the window's corner is drawn from
  ``0 .. h - side - 1`` (0 when the window covers the image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.robust.attacks.base import Attack
from trixai.robust.attacks.margins import is_fooled, margin

_DRAWS = {"square": 4, "autoattack": 1}
"""Sign draws per point and query: a proposal that would not change the image takes the next draw."""
VARIANTS = tuple(_DRAWS)
_HALVINGS = ((10, 0), (50, 1), (200, 2), (500, 3), (1000, 4), (2000, 5), (4000, 6), (6000, 7), (8000, 8))


def square_fraction(p_init: float, query: int, budget: int, rescale: bool = True) -> float:
    """Fraction of pixels the square covers at ``query`` (0-based): ``p_init`` halved after queries
    10/50/200/.../8000, counted out of 10,000 rescaled to ``budget`` (``rescale``) or absolutely."""
    scaled = int(query / budget * 10000) if rescale else query
    halvings = 9
    for bound, count in _HALVINGS:
        if scaled <= bound:
            halvings = count
            break
    return p_init / 2**halvings


@dataclass
class Square(Attack):
    """Untargeted Square Attack with the margin loss; ``queries`` per point after the initial one.

    Query ``q`` proposes one window (shared by the points, as in the published code) and per point one sign
    per channel, drawn up front; in the ``square`` variant a proposal that would not change the image takes
    the point's next draw (see the module docstring for the ``autoattack`` variant).
    Most proposals are rejected, so the next proposals of a point are evaluated together in one batch of
    at most ``max_batch`` rows, all built on the point's current image (speculation): the first accepted one
    wins and the later ones are dropped. The result is the sequential search's, query for query.
    """

    eps: float = 8 / 255
    queries: int = 5000
    p_init: float = 0.8
    restarts: int = 1
    seed: int = 0
    max_batch: int = 128
    variant: str = "square"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise TrixaiError(f"attack.variant={self.variant!r} is not one of {list(VARIANTS)} (Square)")
        if self.eps < 0 or self.queries < 1 or self.restarts < 1 or not 0 < self.p_init <= 1 or self.max_batch < 1:
            raise TrixaiError(f"Square needs eps >= 0, queries >= 1, restarts >= 1, 0 < p_init <= 1, max_batch >= 1 "
                              f"(got {self.eps}, {self.queries}, {self.restarts}, {self.p_init}, {self.max_batch})")

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

    def _signs(self, shape: tuple[int, ...], generator: torch.Generator, device: torch.device,
               dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.randint(0, 2, shape, generator=generator, device=device, dtype=dtype) * 2 - 1

    def _windows(self, h: int, w: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """Per query: the square's side and its top-left corner, (queries,) each."""
        original = self.variant == "autoattack"
        largest, positions = (min(h, w), 0) if original else (h - 1, 1)
        sides = torch.tensor([min(max(round(math.sqrt(square_fraction(self.p_init, q, self.queries, not original)
                                                      * h * w)), 1), largest)
                              for q in range(self.queries)], device=device)
        uniform = torch.rand(2, self.queries, generator=generator, device=device)
        tops = (uniform[0] * (h - sides + positions)).long().clamp_max(h - sides)
        lefts = (uniform[1] * (w - sides + positions)).long().clamp_max(w - sides)
        return sides, tops, lefts

    def _run(self, model: nn.Module, x0: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        n, c, h, w = x0.shape
        device = x0.device
        best = (x0 + self.eps * self._signs((n, c, 1, w), generator, device)).clamp(0, 1)
        logits = model(best)
        best_margin, fooled = margin(logits, y), is_fooled(logits, y)
        sides, tops, lefts = self._windows(h, w, generator, device)
        draws_per_query = _DRAWS[self.variant]
        signs = self._signs((self.queries, n, draws_per_query, c), generator, device, torch.int8)
        done = torch.zeros(n, dtype=torch.long, device=device)  # queries used per point
        accepted, proposed = 1, 4  # running acceptance rate, prior 1/4
        rows_h, rows_w = torch.arange(h, device=device), torch.arange(w, device=device)
        while True:
            active = (~fooled & (done < self.queries)).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            m = active.numel()
            # speculate about half the queries expected up to the next acceptance (measured best on a CPU)
            depth = max(1, min(self.max_batch // m, round(0.5 * proposed / accepted)))
            query = done[active, None] + torch.arange(depth, device=device)  # (m, depth)
            valid = query < self.queries
            query = query.clamp_max(self.queries - 1).reshape(-1)
            point = active.repeat_interleave(depth)
            side, top, left = sides[query], tops[query], lefts[query]
            inside = (((rows_h >= top[:, None]) & (rows_h < (top + side)[:, None]))[:, None, :, None]
                      & ((rows_w >= left[:, None]) & (rows_w < (left + side)[:, None]))[:, None, None, :])
            base, origin = best[point], x0[point]
            draws = signs[query, point].to(x0.dtype)  # (m * depth, draws, c)
            candidate, moved = base, torch.zeros(len(point), dtype=torch.bool, device=device)
            for draw in range(draws_per_query):  # the first draw that changes the image (no redraws: the only one)
                proposal = torch.where(inside, (origin + self.eps * draws[:, draw, :, None, None]).clamp(0, 1), base)
                use = ~moved & (((proposal - base).abs().flatten(1).sum(dim=1) >= 1e-7) | (draws_per_query == 1))
                candidate = torch.where(use.view(-1, 1, 1, 1), proposal, candidate)
                moved |= use
                if bool(moved.all()):
                    break
            logits = model(candidate)
            candidate_margin = margin(logits, y[point]).view(m, depth)
            better = (candidate_margin < best_margin[active, None]) & valid
            improved = better.any(dim=1)
            first = torch.where(improved, better.float().argmax(dim=1), valid.sum(dim=1) - 1)
            take = torch.arange(m, device=device) * depth + first
            keep = active[improved]
            best[keep] = candidate[take[improved]]
            best_margin[keep] = candidate_margin[improved, first[improved]]
            fooled[keep] = is_fooled(logits[take[improved]], y[keep])
            done[active] += first + 1
            accepted, proposed = accepted + int(improved.sum()), proposed + int((first + 1).sum())
        return best, fooled
