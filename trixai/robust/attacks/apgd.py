"""Auto-PGD (Croce & Hein 2020): step size 2*eps halved at checkpoints, momentum 0.75, best iterate kept.

Points drop out of the working set once they are fooled (their adversarial example is kept): the
remaining points follow exactly the trajectory they would have followed in the full batch, so robust
accuracy is unchanged and fooled points cost nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.robust.attacks.base import Attack
from trixai.robust.attacks.margins import (
    dlr_loss,
    is_fooled,
    label_flip_loss,
    margin,
    target_count,
    target_order,
    targeted_ce_loss,
    targeted_dlr_loss,
)
from trixai.robust.attacks.pgd import NORMS, project, random_start
from trixai.robust.attacks.targets import highest_scoring_target_runs, siblings_done, stacked_target_runs
from trixai.robust.losses import attack_loss, classification_loss, expected_hamming_loss, is_multilabel

PointLoss = Callable[[Tensor, Tensor], Tensor]
"""``(logits, index) -> per-point loss`` to maximise; ``index`` selects the rows of the batch being optimised."""

LOSSES = ("ce", "dlr", "margin", "hamming")


def checkpoint_periods(steps: int) -> list[int]:
    """Iterations between checkpoints: 0.22 N first, each 0.03 N shorter, at least 0.06 N (paper's p_j)."""
    period, decrease, minimum = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    periods, total = [], 0
    while total + period <= steps:
        periods.append(period)
        total += period
        period = max(period - decrease, minimum)
    return periods


def halve_step(rises: Tensor, period: int, reduced_last: Tensor, best_checked: Tensor, best: Tensor,
               rho: float = 0.75) -> Tensor:
    """At a checkpoint: which points halve their step size (and restart from their best point).

    Condition 1: the loss rose in at most ``rho * period`` of the period's steps (``<=``, as in the original
    ``check_oscillation``). Condition 2: the step was not halved at the previous checkpoint and the best loss
    has not risen since. ``reduced_last`` starts all true, so the first checkpoint applies condition 1 only,
    exactly as the original code (``autopgd_base.py``, ``reduced_last_check = ones``).
    """
    return (rises <= rho * period) | (~reduced_last & (best_checked >= best))


def _direction(grad: Tensor, norm: str) -> Tensor:
    if norm == "linf":
        return grad.sign()
    norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
    return grad / norms


def apgd_run(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: PointLoss, *, eps: float, steps: int, norm: str = "linf",
    rho: float = 0.75, momentum: float = 0.75, eot_iter: int = 1, group: Tensor | None = None,
    full_budget: bool = False,
) -> tuple[Tensor, Tensor]:
    """One APGD run from a random start; returns ``(x_adv, fooled)``.

    ``x_adv`` is the first fooling iterate for fooled points and the highest-loss iterate otherwise.
    Gradients are averaged over ``eot_iter`` passes (EOT, for stochastic models). Rows sharing a ``group``
    (runs of one point against several targets) all stop once one of them fools the point. With ``full_budget``
    no point stops: every point runs every step and ``x_adv`` is its highest-loss iterate (``fooled``: whether
    some iterate fooled it) — the worst case of metrics other than accuracy.
    """
    n = x.shape[0]
    x_adv, fooled = x.clone(), torch.zeros(n, dtype=torch.bool, device=x.device)
    index = torch.arange(n, device=x.device)

    def evaluate(points: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        loss_sum = grad_sum = logits_sum = 0
        for _ in range(eot_iter):
            points = points.detach().requires_grad_(True)
            logits = model(points)
            loss = loss_fn(logits, rows)
            (grad,) = torch.autograd.grad(loss.sum(), points)
            loss_sum, grad_sum, logits_sum = loss_sum + loss.detach(), grad_sum + grad, logits_sum + logits.detach()
        return loss_sum / eot_iter, grad_sum / eot_iter, is_fooled(logits_sum / eot_iter, y[rows])

    x0 = x
    current = random_start(x0, eps, norm)
    loss, grad, hit = evaluate(current, index)
    # "loss" is the previous step's loss the next one is compared with; the first step is compared with 0,
    # as in the original (its loss history starts as zeros and the first comparison reads that zero row).
    state = {
        "x0": x0, "current": current, "previous": current, "grad": grad, "loss": torch.zeros_like(loss),
        "best": current, "grad_best": grad, "loss_best": loss, "loss_best_checked": loss,
        "eta": torch.full((n,), 2.0 * eps, dtype=x.dtype, device=x.device), "rises": torch.zeros(n, device=x.device),
        "reduced_last": torch.ones(n, dtype=torch.bool, device=x.device), "index": index,
    }

    def retire(hit: Tensor) -> None:
        if full_budget:
            fooled[state["index"][hit]] = True
            return
        done = siblings_done(None if group is None else group[state["index"]], hit)
        if done.any():
            rows, stopped = state["index"], done & ~hit
            x_adv[rows[hit]], fooled[rows[hit]] = state["current"][hit], True
            x_adv[rows[stopped]] = state["best"][stopped]
            for key, value in state.items():
                state[key] = value[~done]

    retire(hit)
    periods = checkpoint_periods(steps)
    checkpoints = {sum(periods[: j + 1]): length for j, length in enumerate(periods)}
    for k in range(steps):
        if state["index"].numel() == 0:
            break
        s = state
        view = (-1,) + (1,) * (x.dim() - 1)
        z = project(s["current"] + s["eta"].view(view) * _direction(s["grad"], norm), s["x0"], eps, norm)
        a = 1.0 if k == 0 else momentum
        step = s["current"] + a * (z - s["current"]) + (1 - a) * (s["current"] - s["previous"])
        s["previous"], s["current"] = s["current"], project(step, s["x0"], eps, norm)
        loss, s["grad"], hit = evaluate(s["current"], s["index"])
        s["rises"] = s["rises"] + (loss > s["loss"]).float()
        s["loss"] = loss
        better = loss > s["loss_best"]
        s["best"] = torch.where(better.view(view), s["current"], s["best"])
        s["grad_best"] = torch.where(better.view(view), s["grad"], s["grad_best"])
        s["loss_best"] = torch.where(better, loss, s["loss_best"])
        retire(hit)
        if k + 1 in checkpoints:
            reduce = halve_step(s["rises"], checkpoints[k + 1], s["reduced_last"], s["loss_best_checked"],
                                s["loss_best"], rho)
            s["eta"] = torch.where(reduce, s["eta"] / 2, s["eta"])
            s["current"] = torch.where(reduce.view(view), s["best"], s["current"])
            s["grad"] = torch.where(reduce.view(view), s["grad_best"], s["grad"])
            s["reduced_last"], s["loss_best_checked"] = reduce, s["loss_best"]
            s["rises"] = torch.zeros_like(s["rises"])
    x_adv[state["index"]] = state["best"]
    return x_adv, fooled


def _check(eps: float, steps: int, restarts: int, norm: str, eot_iter: int) -> None:
    if norm not in NORMS:
        raise TrixaiError(f"attack.norm={norm!r} is not one of {list(NORMS)}")
    if eps < 0 or steps < 1 or restarts < 1 or eot_iter < 1:
        raise TrixaiError(f"APGD needs eps >= 0, steps >= 1, restarts >= 1, eot_iter >= 1 "
                          f"(got {eps}, {steps}, {restarts}, {eot_iter})")


def _restarted(model: nn.Module, x: Tensor, y: Tensor, loss_fn: PointLoss, attack: APGD) -> Tensor:
    """Run APGD and restart on the points not fooled yet; a point keeps its first fooling iterate. With
    ``attack.full_budget`` every restart runs on every point and a point keeps its highest-loss iterate."""
    if attack.full_budget:
        return _highest_loss_restarts(model, x, y, loss_fn, attack)
    x_adv = x.clone()
    robust = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(attack.restarts):
        rows = robust.nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        point_loss: PointLoss = lambda logits, sub, rows=rows: loss_fn(logits, rows[sub])
        adv, hit = apgd_run(model, x[rows], y[rows], point_loss, eps=attack.eps, steps=attack.steps,
                            norm=attack.norm, rho=attack.rho, momentum=attack.momentum, eot_iter=attack.eot_iter)
        x_adv[rows] = adv
        robust[rows[hit]] = False
    return x_adv


def _highest_loss_restarts(model: nn.Module, x: Tensor, y: Tensor, loss_fn: PointLoss, attack: APGD) -> Tensor:
    """Every restart at full budget on every point; per point the iterate with the highest attack loss."""
    index = torch.arange(x.shape[0], device=x.device)
    best, best_loss = x.clone(), None
    for _ in range(attack.restarts):
        adv, _ = apgd_run(model, x, y, loss_fn, eps=attack.eps, steps=attack.steps, norm=attack.norm, rho=attack.rho,
                          momentum=attack.momentum, eot_iter=attack.eot_iter, full_budget=True)
        with torch.no_grad():
            loss = loss_fn(model(adv), index)
        better = loss > best_loss if best_loss is not None else torch.ones_like(loss, dtype=torch.bool)
        best[better] = adv[better]
        best_loss = loss if best_loss is None else torch.maximum(loss, best_loss)
    return best


@dataclass
class APGD(Attack):
    """Untargeted APGD with the CE (BCE for multi-label), DLR, margin or expected-Hamming loss; ``restarts``
    random restarts.

    DLR needs >= 3 classes; multi-label tasks use BCE, the margin ``min_l (2 y_l - 1) z_l`` or ``hamming`` (the
    mean over labels of the wrong side's probability, :func:`~trixai.robust.losses.expected_hamming_loss`). ``full_budget``:
    no point stops at its first fooling iterate; each gets its highest-loss iterate over every step and restart
    (the worst case of AUROC, F1, margins; AutoAttack's loss pass).
    """

    eps: float = 8 / 255
    steps: int = 100
    restarts: int = 1
    loss: str = "ce"
    norm: str = "linf"
    rho: float = 0.75
    momentum: float = 0.75
    eot_iter: int = 1
    full_budget: bool = False

    def __post_init__(self) -> None:
        _check(self.eps, self.steps, self.restarts, self.norm, self.eot_iter)
        if self.loss not in LOSSES:
            raise TrixaiError(f"attack.loss={self.loss!r} is not one of {list(LOSSES)}")

    @property
    def name(self) -> str:
        return f"apgd-{self.loss}"

    def point_loss(self, logits_full: Tensor, y: Tensor) -> PointLoss:
        if self.loss == "ce":
            return lambda logits, rows: classification_loss(logits, y[rows], reduction="none")
        if self.loss == "margin":
            return lambda logits, rows: -margin(logits, y[rows])
        if self.loss == "hamming":
            if not is_multilabel(y):
                raise TrixaiError("attack.loss='hamming' is the multi-label loss; multiclass tasks use 'ce', 'dlr' "
                                  "or 'margin'")
            return lambda logits, rows: expected_hamming_loss(logits, y[rows])
        if is_multilabel(y) or logits_full.shape[1] < 3:
            raise TrixaiError(f"attack.loss='dlr' needs a multiclass task with >= 3 classes "
                              f"(got {logits_full.shape[1]} outputs, multilabel={is_multilabel(y)}); use 'ce' or 'margin'")
        return lambda logits, rows: dlr_loss(logits, y[rows])

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        with torch.no_grad():
            logits = model(x[:1])
        return _restarted(model, x, y, self.point_loss(logits, y), self)


TARGETED_LOSSES = {"dlr-targeted": targeted_dlr_loss, "ce-targeted": targeted_ce_loss, "label-flip": label_flip_loss}


@dataclass
class APGDT(APGD):
    """Targeted APGD: one run per target, the ``targets`` most likely wrong outcomes at the clean point.

    Loss per task: targeted DLR (>= 4 classes); targeted CE with ``C - 1`` targets (2-3 classes);
    multi-label: target = a label to flip (smallest margins first), loss = minus its signed logit.
    The runs of several targets share one batch of at most ``max_batch`` rows (``targets.py``).
    """

    targets: int = 9
    loss: str = "dlr-targeted"
    max_batch: int = 128

    def __post_init__(self) -> None:
        _check(self.eps, self.steps, self.restarts, self.norm, self.eot_iter)
        if self.targets < 1 or self.max_batch < 1:
            raise TrixaiError(f"APGD-T needs targets >= 1 and max_batch >= 1 (got {self.targets}, {self.max_batch})")

    @property
    def name(self) -> str:
        return "apgd-t"

    @staticmethod
    def variant(num_outputs: int, multilabel: bool) -> str:
        """The targeted loss used for this output layout (see the class docstring)."""
        if multilabel:
            return "label-flip"
        return "dlr-targeted" if num_outputs >= 4 else "ce-targeted"

    def target_count(self, num_outputs: int, multilabel: bool) -> int:
        return target_count(self.targets, num_outputs, multilabel)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        with torch.no_grad():
            clean = model(x)
        multilabel = is_multilabel(y)
        loss = TARGETED_LOSSES[self.variant(clean.shape[1], multilabel)]
        order = target_order(clean, y, self.target_count(clean.shape[1], multilabel))

        def run(xs: Tensor, ys: Tensor, targets: Tensor, group: Tensor, restart: int) -> tuple[Tensor, Tensor]:
            return apgd_run(model, xs, ys, lambda logits, rows: loss(logits, ys[rows], targets[rows]),
                            eps=self.eps, steps=self.steps, norm=self.norm, rho=self.rho, momentum=self.momentum,
                            eot_iter=self.eot_iter, group=group, full_budget=self.full_budget)

        if self.full_budget:  # every target and restart on every point; per point the output with the highest loss
            def score(adv: Tensor, ys: Tensor) -> Tensor:
                with torch.no_grad():
                    return attack_loss(model(adv), ys)

            return highest_scoring_target_runs(x, y, order, run, score, restarts=self.restarts,
                                               max_batch=self.max_batch)
        robust = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        return stacked_target_runs(x, y, robust, order, run, restarts=self.restarts, max_batch=self.max_batch)
