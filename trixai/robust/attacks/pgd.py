"""FGSM and PGD-k (L-inf, L2) over one projected sign/normalised-gradient ascent loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trixai.robust.attacks.base import Attack
from trixai.robust.attacks.margins import is_fooled
from trixai.robust.losses import classification_loss

LossFn = Callable[[Tensor], Tensor]
NORMS = ("linf", "l2")


def project(x_adv: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    """Project onto the eps-ball around ``x`` and the [0, 1] box."""
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
        delta = delta * (eps / norms).clamp(max=1.0)
    return (x + delta).clamp(0.0, 1.0)


def _step_direction(grad: Tensor, norm: str) -> Tensor:
    if norm == "linf":
        return grad.sign()
    norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
    return grad / norms


def gradient_ascent(
    model: nn.Module, x: Tensor, x_start: Tensor, loss_fn: LossFn, *, eps: float, alpha: float, steps: int,
    norm: str = "linf", early_stop: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> Tensor:
    """Projected steepest ascent of ``loss_fn(model(x_adv))`` from ``x_start``; returns the last iterate.

    Gradients are taken w.r.t. the input only (``torch.autograd.grad``); nothing lands in ``.grad``.
    With ``early_stop``, rows leave the working set once ``early_stop(logits, index)`` flags them (their
    current iterate is kept) and ``loss_fn`` is called as ``loss_fn(logits, index)``, ``index`` being the
    batch positions of the rows still optimised. Losses summed over rows keep the other rows' paths unchanged.
    """
    x_adv = x_start.detach()
    if early_stop is None:
        for _ in range(steps):
            x_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(loss_fn(model(x_adv)), x_adv)
            x_adv = project(x_adv.detach() + alpha * _step_direction(grad, norm), x, eps, norm)
        return x_adv.detach()
    x_adv, index = x_adv.clone(), torch.arange(x.shape[0], device=x.device)
    for _ in range(steps):
        current = x_adv[index].requires_grad_(True)
        logits = model(current)
        keep = ~early_stop(logits.detach(), index)
        (grad,) = torch.autograd.grad(loss_fn(logits, index), current)
        index = index[keep]
        if index.numel() == 0:
            break
        step = current.detach()[keep] + alpha * _step_direction(grad[keep], norm)
        x_adv[index] = project(step, x[index], eps, norm)
    return x_adv


def random_start(x: Tensor, eps: float, norm: str) -> Tensor:
    """Uniform start in the L-inf ball, or uniform direction and radius in the L2 ball, clamped to [0, 1]."""
    if norm == "linf":
        return (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0.0, 1.0)
    direction = torch.randn_like(x)
    direction = direction / direction.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
    radius = torch.rand(x.shape[0], device=x.device).view(-1, *([1] * (x.dim() - 1))) * eps
    return (x + direction * radius).clamp(0.0, 1.0)


@dataclass
class PGD(Attack):
    """Madry et al. PGD-k: optional uniform random start, ``steps`` steps of size ``alpha``, last iterate.

    ``early_stop`` (evaluation speed-up): a point keeps the first iterate that fools it instead of the last.
    """

    eps: float = 8 / 255
    alpha: float = 2 / 255
    steps: int = 10
    random_start: bool = True
    norm: str = "linf"
    early_stop: bool = False

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"attack.norm={self.norm!r} is not one of {list(NORMS)}")
        if self.eps < 0 or self.alpha < 0 or self.steps < 1:
            raise ValueError(f"attack needs eps >= 0, alpha >= 0, steps >= 1 (got {self.eps}, {self.alpha}, {self.steps})")

    @property
    def name(self) -> str:
        return f"pgd{self.steps}"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        start = random_start(x, self.eps, self.norm) if self.random_start else x
        if self.early_stop:
            return gradient_ascent(
                model, x, start, lambda logits, index: classification_loss(logits, y[index], reduction="sum"),
                eps=self.eps, alpha=self.alpha, steps=self.steps, norm=self.norm,
                early_stop=lambda logits, index: is_fooled(logits, y[index]),
            )
        return gradient_ascent(
            model, x, start, lambda logits: classification_loss(logits, y, reduction="sum"),
            eps=self.eps, alpha=self.alpha, steps=self.steps, norm=self.norm,
        )


@dataclass
class FGSM(PGD):
    """Goodfellow et al. FGSM: ``clamp(x + eps * sign(grad CE), 0, 1)`` (one PGD step of size eps, no start)."""

    alpha: float = -1.0
    steps: int = 1
    random_start: bool = False

    def __post_init__(self) -> None:
        self.alpha, self.steps, self.random_start = self.eps, 1, False
        super().__post_init__()

    @property
    def name(self) -> str:
        return "fgsm"
