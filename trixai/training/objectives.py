"""Training objectives: standard, PGD-AT (Madry) and TRADES (Zhang et al. 2019, official semantics)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.core.frozen import frozen_eval
from trixai.robust.attacks import PGD, Attack, gradient_ascent
from trixai.robust.losses import classification_loss, is_multilabel, output_divergence
from trixai.xai.gradcam import CamResult, grad_cam
from trixai.xai.metrics.stability import WINDOW_SIGMA, WINDOW_SIZE, check_window, ssim


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
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Called at each training epoch start (for schedules inside an objective)."""
        self.epoch = epoch

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


def cam_ssim(model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor, layer: str, *, create_graph: bool = False,
             window_size: int = WINDOW_SIZE, window_sigma: float = WINDOW_SIGMA) -> tuple[Tensor, CamResult, CamResult]:
    """Per-sample SSIM between the Grad-CAMs of ``x`` and ``x_adv`` at ``layer``, for the same targets.

    Target: the label (multiclass) or the top predicted label of ``x`` (multi-label). With ``create_graph``
    everything is differentiable w.r.t. the parameters (the model runs in the caller's mode).
    """
    target = None if is_multilabel(y) else y
    clean = grad_cam(model, x, target, layer, create_graph=create_graph)
    adv = grad_cam(model, x_adv, clean.targets, layer, create_graph=create_graph)
    similarity = ssim(clean.maps[layer], adv.maps[layer], window_size=window_size, window_sigma=window_sigma)
    return similarity, clean, adv


@dataclass
class TriObjective(TRADES):
    """TRADES + lambda_expl * (1 - SSIM(CAM(x), CAM(x_adv))): accuracy, robustness and explanation stability.

    The CAMs come from :func:`trixai.xai.gradcam.grad_cam` in its differentiable mode: the channel weights are
    gradients taken with ``create_graph=True``, so the term trains the parameters through the activations and
    the gradients themselves. The CAM forwards also give the logits of the CE and KL terms (no extra forward).
    Target per sample: the label (multiclass) or the top predicted label (multi-label). ``warmup_epochs``
    keeps lambda_expl at 0 for that many epochs, then ramps it linearly over ``ramp_epochs``.
    ``adversary``: ``trades`` (the TRADES example) or ``attack`` (a separate example from the attack group).
    ``ssim_window``/``ssim_sigma``: the SSIM Gaussian window of the training term (validation and test
    ``cam_ssim`` keep the standard 11 x 11, sigma 1.5 window so that runs stay comparable).
    """

    lambda_expl: float = 0.3
    cam_layer: str = "final"
    warmup_epochs: int = 0
    ramp_epochs: int = 0
    adversary: str = "trades"
    ssim_window: int = WINDOW_SIZE
    ssim_sigma: float = WINDOW_SIGMA
    name = "tri_objective"

    def __post_init__(self) -> None:
        if self.adversary not in ("trades", "attack"):
            raise TrixaiError(f"objective.adversary={self.adversary!r} is not one of ['trades', 'attack']")
        check_window(self.ssim_window, self.ssim_sigma, names=("objective.ssim_window", "objective.ssim_sigma"))

    def current_lambda(self) -> float:
        if self.epoch < self.warmup_epochs:
            return 0.0
        ramp = min(1.0, (self.epoch - self.warmup_epochs + 1) / self.ramp_epochs) if self.ramp_epochs else 1.0
        return self.lambda_expl * ramp

    def __call__(self, model, x, y, *, attack=None, weight=None, label_mask=None) -> ObjectiveOutput:
        if not isinstance(attack, PGD):
            raise TrixaiError(f"objective=tri_objective takes eps/alpha/steps from a PGD-type attack, got {attack!r}")
        multilabel = is_multilabel(y)
        x_adv = trades_adversary(model, x, attack, multilabel=multilabel)
        x_expl = x_adv if self.adversary == "trades" else attack(model, x, y)
        similarity, clean, adv = cam_ssim(model, x, x_expl, y, self.cam_layer, create_graph=True,
                                          window_size=self.ssim_window, window_sigma=self.ssim_sigma)
        logits = clean.logits
        logits_adv = adv.logits if x_expl is x_adv else model(x_adv)
        ce = classification_loss(logits, y, weight=weight, label_mask=label_mask)
        kl = output_divergence(logits_adv, logits, multilabel=multilabel).mean()
        similarity = similarity.mean()
        expl = 1.0 - similarity
        lam = self.current_lambda()
        loss = ce + self.beta * kl + lam * expl
        terms = {"ce": ce.detach(), "kl": kl.detach(), "expl": expl.detach(), "cam_ssim": similarity.detach(),
                 "lambda_expl": torch.tensor(lam)}
        return ObjectiveOutput(loss, logits, terms)
