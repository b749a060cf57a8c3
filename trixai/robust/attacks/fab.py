"""FAB-T, L-inf (Croce & Hein 2020, "fast adaptive boundary"): targeted minimal-perturbation search.

Each step linearises the decision function ``g = z_y - z_t`` (multi-label: the signed logit of the
target label) and moves to a convex combination of the projections of the current point and of the
original point onto the linearised boundary inside the [0, 1] box, with overshoot ``eta``; after a
success it steps back towards the original by ``beta``. For robustness at ``eps`` a point is done once
an adversarial example with ``||delta||_inf <= eps`` is found (further iterations would only shrink it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.robust.attacks.base import Attack
from trixai.robust.attacks.margins import is_fooled, signed_label_margins, target_count, target_order
from trixai.robust.attacks.pgd import random_start
from trixai.robust.attacks.targets import siblings_done, stacked_target_runs
from trixai.robust.losses import is_multilabel


def project_linf_hyperplane_box(point: Tensor, w: Tensor, c: Tensor) -> Tensor:
    """Smallest-L-inf ``d`` with ``w . d = c`` and ``point + d`` in [0, 1], rows flattened (N, D).

    With ``r`` the L-inf radius, the best reachable ``w . d`` is ``sum_j |w_j| min(r, cap_j)`` (``cap_j`` the
    room to the box wall in the useful direction), piecewise linear in ``r``: sort the caps and solve on
    the right piece. Unreachable hyperplanes get the box corner that comes closest.
    """
    direction = torch.sign(w) * torch.sign(c)[:, None]
    weight = w.abs()
    cap = torch.where(direction > 0, 1 - point, point).clamp_min(0)
    cap_sorted, order = cap.sort(dim=1)
    weight_sorted = weight.gather(1, order)
    cum_weight = weight_sorted.cumsum(dim=1)
    cum_reach = (weight_sorted * cap_sorted).cumsum(dim=1)
    total = cum_weight[:, -1:]
    reach_at_cap = cum_reach + cap_sorted * (total - cum_weight)
    need = c.abs()[:, None]
    piece = torch.searchsorted(reach_at_cap.contiguous(), need.contiguous()).squeeze(1)
    feasible = piece < point.shape[1]
    before = (piece - 1).clamp_min(0)[:, None]
    saturated = torch.where(piece[:, None] > 0, cum_reach.gather(1, before), torch.zeros_like(need))
    remaining = total - torch.where(piece[:, None] > 0, cum_weight.gather(1, before), torch.zeros_like(need))
    radius = (need - saturated) / remaining.clamp_min(1e-12)
    radius = torch.where(feasible[:, None], radius, torch.full_like(radius, float("inf")))
    return direction * torch.minimum(radius, cap) * (weight > 0)


@dataclass
class FABT(Attack):
    """Targeted FAB, L-inf: ``targets`` runs (most likely wrong outcomes first) of ``steps`` iterations.

    Few-class tasks use ``C - 1`` targets; multi-label targets are labels to flip (smallest margin first).
    Only adversarial examples within ``eps`` count; the others come back unchanged. The runs of several
    targets share one batch of at most ``max_batch`` rows (``targets.py``).
    """

    eps: float = 8 / 255
    steps: int = 100
    restarts: int = 1
    targets: int = 9
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9
    max_batch: int = 128

    def __post_init__(self) -> None:
        if self.eps < 0 or min(self.steps, self.restarts, self.targets, self.max_batch) < 1:
            raise TrixaiError(f"FAB-T needs eps >= 0, steps, restarts, targets, max_batch >= 1 (got {self.eps}, "
                              f"{self.steps}, {self.restarts}, {self.targets}, {self.max_batch})")

    @property
    def name(self) -> str:
        return "fab-t"

    def target_count(self, num_outputs: int, multilabel: bool) -> int:
        return target_count(self.targets, num_outputs, multilabel)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        with torch.no_grad():
            clean = model(x)
        order = target_order(clean, y, self.target_count(clean.shape[1], is_multilabel(y)))

        def run(xs: Tensor, ys: Tensor, targets: Tensor, group: Tensor, restart: int) -> tuple[Tensor, Tensor]:
            return self._run(model, xs, ys, targets, group, randomise=restart > 0)

        return stacked_target_runs(x, y, ~is_fooled(clean, y), order, run, restarts=self.restarts,
                                   max_batch=self.max_batch)

    def _decision(self, logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
        """``g`` per point: positive on the true side of the target's boundary."""
        if is_multilabel(y):
            return signed_label_margins(logits, y).gather(1, target[:, None]).squeeze(1)
        return logits.gather(1, y[:, None]).squeeze(1) - logits.gather(1, target[:, None]).squeeze(1)

    def _run(self, model: nn.Module, x0: Tensor, y: Tensor, target: Tensor, group: Tensor, *,
             randomise: bool) -> tuple[Tensor, Tensor]:
        """One FAB-T run; returns ``(x_adv, found)`` with ``found`` = adversarial within ``eps``.

        Rows sharing a ``group`` (one point's runs against several targets) stop once one of them succeeds."""
        n, shape = x0.shape[0], x0.shape
        x_adv = x0.clone()
        found = torch.zeros(n, dtype=torch.bool, device=x0.device)
        active = torch.arange(n, device=x0.device)
        current = random_start(x0, self.eps, "linf") if randomise else x0.clone()
        flat0 = x0.flatten(1)
        for _ in range(self.steps):
            point = current.detach().requires_grad_(True)
            g = self._decision(model(point), y[active], target[active])
            (w,) = torch.autograd.grad(g.sum(), point)
            g, w, p, o = g.detach(), w.flatten(1), current.flatten(1), flat0[active]
            d_current = project_linf_hyperplane_box(p, w, -g)
            d_origin = project_linf_hyperplane_box(o, w, -g - (w * (o - p)).sum(dim=1))
            n_current = d_current.abs().amax(dim=1)
            n_origin = d_origin.abs().amax(dim=1)
            alpha = (n_current / (n_current + n_origin).clamp_min(1e-12)).clamp(max=self.alpha_max)[:, None]
            step = ((1 - alpha) * (p + self.eta * d_current) + alpha * (o + self.eta * d_origin)).clamp(0, 1)
            with torch.no_grad():
                hit = is_fooled(model(step.view(-1, *shape[1:])), y[active])
            within = hit & ((step - o).abs().amax(dim=1) <= self.eps)
            if within.any():
                rows = active[within]
                x_adv[rows] = step[within].view(-1, *shape[1:])
                found[rows] = True
            step = torch.where(hit[:, None], (1 - self.beta) * o + self.beta * step, step)
            keep = ~siblings_done(group[active], within)
            active, current = active[keep], step[keep].view(-1, *shape[1:])
            if active.numel() == 0:
                break
        return x_adv, found
