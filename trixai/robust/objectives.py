"""Training objectives: standard, PGD-AT (Madry) and TRADES (Zhang et al. 2019, official semantics)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from trixai.errors import TrixaiError
from trixai.robust.attacks import PGD, Attack, frozen_eval, gradient_ascent
from trixai.robust.losses import classification_loss, is_multilabel, output_divergence


@dataclass
class ObjectiveOutput:
    """The loss to minimise, the logits to score training metrics on, and every term for logging."""

    loss: Tensor
    logits: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


class Objective(ABC):
    """``objective(model, x, y, attack=..., weight=..., label_mask=...)`` -> :class:`ObjectiveOutput`."""

    name: str = ""
    needs_attack: bool = False

    def check(self, attack: Attack | None) -> None:
        if self.needs_attack and attack is None:
            raise TrixaiError(f"objective={self.name} needs an adversary: choose attack=fgsm|pgd7|pgd10|pgd20, not none")

    @abstractmethod
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, attack: Attack | None = None,
                 weight: Tensor | None = None, label_mask: Tensor | None = None) -> ObjectiveOutput: ...


class Standard(Objective):
    """Empirical risk: CE (optionally class-weighted) or BCE for multi-label."""

    name = "standard"

    def __call__(self, model, x, y, *, attack=None, weight=None, label_mask=None) -> ObjectiveOutput:
        logits = model(x)
        loss = classification_loss(logits, y, weight=weight, label_mask=label_mask)
        return ObjectiveOutput(loss, logits, {"ce": loss.detach()})


class PGDAT(Objective):
    """Madry et al. adversarial training: loss = CE(f(x_adv), y), x_adv from the training attack in eval mode."""

    name = "pgd_at"
    needs_attack = True

    def __call__(self, model, x, y, *, attack=None, weight=None, label_mask=None) -> ObjectiveOutput:
        x_adv = attack(model, x, y)
        logits_adv = model(x_adv)
        loss = classification_loss(logits_adv, y, weight=weight, label_mask=label_mask)
        return ObjectiveOutput(loss, logits_adv, {"ce_adv": loss.detach()})


@dataclass
class TRADES(Objective):
    """loss = CE(f(x), y) + beta * KL_batchmean(f(x_adv) || f(x)) with the clean branch not detached.

    The adversary's eps/alpha/steps/norm come from the ``attack`` group; clean and adversarial batches use
    separate forwards (one concatenated batch would mix their BatchNorm statistics).
    """

    beta: float = 6.0
    name = "trades"
    needs_attack = True

    def __call__(self, model, x, y, *, attack=None, weight=None, label_mask=None) -> ObjectiveOutput:
        if not isinstance(attack, PGD):
            raise TrixaiError(f"objective=trades takes eps/alpha/steps from a PGD-type attack, got {attack!r}")
        multilabel = is_multilabel(y)
        x_adv = trades_adversary(model, x, attack, multilabel=multilabel)
        logits = model(x)
        logits_adv = model(x_adv)
        ce = classification_loss(logits, y, weight=weight, label_mask=label_mask)
        kl = output_divergence(logits_adv, logits, multilabel=multilabel).mean()
        return ObjectiveOutput(ce + self.beta * kl, logits, {"ce": ce.detach(), "kl": kl.detach()})


def trades_adversary(model: nn.Module, x: Tensor, attack: PGD, *, multilabel: bool) -> Tensor:
    """TRADES inner maximisation in eval mode: from x + 0.001 N(0, 1), sign ascent on sum KL(f(x) || f(x_adv))."""
    with frozen_eval(model):
        with torch.no_grad():
            logits_clean = model(x)
        x_start = x + 0.001 * torch.randn_like(x)
        return gradient_ascent(
            model, x, x_start,
            lambda logits: output_divergence(logits, logits_clean, multilabel=multilabel).sum(),
            eps=attack.eps, alpha=attack.alpha, steps=attack.steps, norm=attack.norm,
        )
