"""Training objectives: standard, Gaussian noise (Cohen), PGD-AT (Madry), Fast-AT (Wong), TRADES (Zhang),
MART (Wang), tri-objective; adversaries made in the model's eval or train mode (``adversary_mode``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.core.frozen import frozen_eval
from trixai.robust.attacks import PGD, Attack, gradient_ascent
from trixai.robust.losses import classification_loss, is_multilabel, output_divergence
from trixai.training.awp import check_gamma, perturb_weights
from trixai.xai.gradcam import CamResult, grad_cam
from trixai.xai.metrics.stability import WINDOW_SIGMA, WINDOW_SIZE, check_window, ssim

ADVERSARY_MODES = ("train", "eval")


@dataclass
class ObjectiveOutput:
    """The loss to minimise, the logits to score training metrics on, and every term for logging.

    ``adversarial_logits``: the logits of the adversarial batch (training robust accuracy), when there is one.
    ``restore``: called right after the optimiser step (AWP takes its weight perturbation off there).
    """

    loss: Tensor
    logits: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    adversarial_logits: Tensor | None = None
    restore: Callable[[], None] | None = None


class Objective(ABC):
    """``objective(model, x, y, attack=..., weight=..., label_mask=...)`` -> :class:`ObjectiveOutput`.

    ``attacks``: the ``attack`` group's choices the objective can use (``None``: no adversary needed).
    """

    name: str = ""
    attacks: tuple[str, ...] | None = None
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Called at each training epoch start (for schedules inside an objective)."""
        self.epoch = epoch

    def check(self, attack: Attack | None) -> None:
        """Refuse an adversary this objective cannot use, listing the ones that fit."""
        if self.attacks is None:
            return
        fits = attack is not None and (attack.name in self.attacks or
                                       ("pgd<k>" in self.attacks and type(attack) is PGD))
        if not fits:
            got = "none" if attack is None else attack.name
            raise TrixaiError(f"objective={self.name} cannot use attack={got}: choose attack="
                              + "|".join(a for a in self.attacks if a != "pgd<k>")
                              + (" (or any pgd<k>)" if "pgd<k>" in self.attacks else ""))

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


@dataclass(kw_only=True)
class GaussianNoise(Objective):
    """Cohen, Rosenfeld & Kolter 2019 (randomized smoothing), training with Gaussian data augmentation:
    loss = CE(f(x + sigma * n), y), n ~ N(0, I) drawn per pixel and batch, added to the [0, 1] image (before the
    model's normalisation) without clamping, as in the authors' ``code/train.py``. ``sigma = 0`` is :class:`Standard`.
    The training metrics score the noisy batch. No adversary is used (``attack`` serves evaluation only).
    """

    sigma: float = 0.25
    name = "gaussian_noise"

    def __post_init__(self) -> None:
        if not self.sigma >= 0:
            raise TrixaiError(f"objective.sigma={self.sigma}: the noise standard deviation must be >= 0 "
                              "(Cohen et al. 2019 train at 0.12, 0.25, 0.5 and 1.0)")

    def __call__(self, model, x, y, *, attack=None, weight=None, label_mask=None) -> ObjectiveOutput:
        logits = model(x + self.sigma * torch.randn_like(x))
        loss = classification_loss(logits, y, weight=weight, label_mask=label_mask)
        return ObjectiveOutput(loss, logits, {"ce_noisy": loss.detach()})


def check_adversary_mode(mode: str) -> None:
    if mode not in ADVERSARY_MODES:
        raise TrixaiError(f"objective.adversary_mode={mode!r} is not one of {list(ADVERSARY_MODES)}")


@contextmanager
def adversary_context(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    """The model as the adversary sees it; every module's mode, ``requires_grad`` and buffer restored after.

    ``eval``: :func:`~trixai.core.frozen.frozen_eval` (BatchNorm normalises with its running statistics).
    ``train``: the model's training behaviour (BatchNorm normalises with the batch's own statistics; dropout and
    drop-path are active) with the parameters frozen. Every buffer (BatchNorm ``running_mean``, ``running_var``,
    ``num_batches_tracked``) is saved before and copied back after, so the adversary's forwards leave the running
    statistics as they were: only the training step's own forwards move them.
    """
    check_adversary_mode(mode)
    with frozen_eval(model):
        if mode == "eval":
            yield model
            return
        saved = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
        model.train()
        try:
            yield model
        finally:
            with torch.no_grad():
                for buffer, value in saved:
                    buffer.copy_(value)


def run_attack(attack: Attack, model: nn.Module, x: Tensor, y: Tensor, *, mode: str) -> Tensor:
    """``attack``'s adversarial batch with the model in ``mode`` (see :func:`adversary_context`).

    ``eval`` is the attack's own call (it freezes eval mode itself); ``train`` calls its ``perturb`` inside
    :func:`adversary_context`, which gives the same guarantees (inputs detached, model state restored).
    """
    if mode == "eval":
        return attack(model, x, y)
    with adversary_context(model, mode):
        return attack.perturb(model, x.detach(), y.detach()).detach()


PGD_ATTACKS = ("fgsm", "pgd7", "pgd10", "pgd20", "pgd<k>")


@dataclass(kw_only=True)
class AdversarialObjective(Objective):
    """An objective on adversarial examples: :meth:`examples` makes them, :meth:`loss` scores the batch.

    ``adversary_mode``: ``eval`` or ``train``, the model's mode while the adversary runs (see
    :func:`adversary_context`); each objective defaults to its authors' code. ``awp_gamma`` (Wu et al. 2020;
    e.g. 5e-3): the training loss is taken at weights perturbed along the loss's own gradient (see
    :mod:`trixai.training.awp`) from epoch ``awp_warmup`` on (0-based, counting clean warm-up epochs);
    ``null`` turns it off.
    """

    awp_gamma: float | None = None
    awp_warmup: int = 0
    adversary_mode: str = "eval"
    attacks = PGD_ATTACKS

    def __post_init__(self) -> None:
        check_gamma(self.awp_gamma)
        check_adversary_mode(self.adversary_mode)
        if self.awp_warmup < 0:
            raise TrixaiError(f"objective.awp_warmup={self.awp_warmup}: expected epochs >= 0")

    @abstractmethod
    def examples(self, model: nn.Module, x: Tensor, y: Tensor, attack: Attack) -> Tensor:
        """The adversarial batch (made in ``adversary_mode``, model state restored)."""

    @abstractmethod
    def loss(self, model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor, *, weight: Tensor | None,
             label_mask: Tensor | None) -> ObjectiveOutput:
        """The training loss of the clean and adversarial batch at the model's current weights."""

    def __call__(self, model, x, y, *, attack=None, weight=None, label_mask=None) -> ObjectiveOutput:
        self.check(attack)
        x_adv = self.examples(model, x, y, attack)
        restore = None
        if self.awp_gamma is not None and self.epoch >= self.awp_warmup:
            def ascent_loss() -> Tensor:
                return self.loss(model, x, x_adv, y, weight=weight, label_mask=label_mask).loss

            restore = perturb_weights(model, ascent_loss, float(self.awp_gamma)).restore
        out = self.loss(model, x, x_adv, y, weight=weight, label_mask=label_mask)
        out.restore = restore
        return out


@dataclass(kw_only=True)
class PGDAT(AdversarialObjective):
    """Madry et al. 2018 adversarial training: loss = CE(f(x_adv), y), x_adv from the training attack.

    The adversary runs in train mode by default, as in the authors' code (MadryLab/cifar10_challenge builds the
    attacked model with ``mode='train'``: BatchNorm on batch statistics).
    """

    adversary_mode: str = "train"
    name = "pgd_at"
    attacks = (*PGD_ATTACKS, "apgd-ce", "apgd-dlr")

    def examples(self, model, x, y, attack) -> Tensor:
        return run_attack(attack, model, x, y, mode=self.adversary_mode)

    def loss(self, model, x, x_adv, y, *, weight, label_mask) -> ObjectiveOutput:
        logits_adv = model(x_adv)
        loss = classification_loss(logits_adv, y, weight=weight, label_mask=label_mask)
        return ObjectiveOutput(loss, logits_adv, {"ce_adv": loss.detach()}, adversarial_logits=logits_adv)


@dataclass(kw_only=True)
class FastAT(PGDAT):
    """Wong et al. 2020 ("Fast is better than free"): PGD-AT with one FGSM step of ``alpha_ratio * eps`` (1.25)
    from a uniform random start in the eps-ball, projected and clamped to [0, 1]; only ``eps`` comes from
    ``attack=fgsm``. The step is taken in train mode by default, as in the authors' code (BatchNorm on batch
    statistics). Fast-AT can overfit catastrophically: the ``collapse_guard`` callback watches it.
    """

    alpha_ratio: float = 1.25
    name = "fast_at"
    attacks = ("fgsm",)
    collapses = True  # the collapse guard watches this objective

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.alpha_ratio <= 2.0:
            raise TrixaiError(f"objective.alpha_ratio={self.alpha_ratio}: expected a step of (0, 2] x eps "
                              "(Wong et al. 2020 use 1.25)")

    def examples(self, model, x, y, attack) -> Tensor:
        step = PGD(eps=attack.eps, alpha=self.alpha_ratio * attack.eps, steps=1, random_start=True, norm=attack.norm)
        return run_attack(step, model, x, y, mode=self.adversary_mode)


@dataclass(kw_only=True)
class TRADES(AdversarialObjective):
    """loss = CE(f(x), y) + beta * KL_batchmean(f(x_adv) || f(x)) with the clean branch not detached.

    The adversary's eps/alpha/steps/norm come from the ``attack`` group; it runs in eval mode by default, as in
    the authors' code. Clean and adversarial batches use separate forwards (one concatenated batch would mix
    their BatchNorm statistics).
    """

    beta: float = 6.0
    name = "trades"

    def examples(self, model, x, y, attack) -> Tensor:
        return trades_adversary(model, x, attack, multilabel=is_multilabel(y), mode=self.adversary_mode)

    def loss(self, model, x, x_adv, y, *, weight, label_mask) -> ObjectiveOutput:
        return self.combine(model(x), model(x_adv), y, weight=weight, label_mask=label_mask)

    def combine(self, logits: Tensor, logits_adv: Tensor, y: Tensor, *, weight: Tensor | None,
                label_mask: Tensor | None) -> ObjectiveOutput:
        """The TRADES loss of given clean and adversarial logits."""
        ce = classification_loss(logits, y, weight=weight, label_mask=label_mask)
        kl = output_divergence(logits_adv, logits, multilabel=is_multilabel(y)).mean()
        return ObjectiveOutput(ce + self.beta * kl, logits, {"ce": ce.detach(), "kl": kl.detach()},
                               adversarial_logits=logits_adv)


@dataclass(kw_only=True)
class MART(AdversarialObjective):
    """Wang et al. 2020 (MART): x_adv from the training attack (PGD on CE), in eval mode by default as in the
    authors' code; loss = BCE(f(x_adv), y) + beta * mean_i KL(p(x_i) || p(x_adv_i)) * (1 - p_y(x_i)), with the
    boosted CE BCE = -log p_y(x_adv) - log(1 - max_{k != y} p_k(x_adv)). Multiclass only (defined on a softmax).
    """

    beta: float = 6.0
    name = "mart"

    def examples(self, model, x, y, attack) -> Tensor:
        if is_multilabel(y):
            raise TrixaiError("objective=mart is defined on softmax outputs (multiclass); for multi-label data use "
                              "objective=pgd_at or objective=trades")
        return run_attack(attack, model, x, y, mode=self.adversary_mode)

    def loss(self, model, x, x_adv, y, *, weight, label_mask) -> ObjectiveOutput:
        logits = model(x)
        logits_adv = model(x_adv)
        log_p_adv = F.log_softmax(logits_adv, dim=1)
        other = log_p_adv.scatter(1, y[:, None], float("-inf")).max(dim=1).values  # log max_{k != y} p_k
        ce_adv = F.nll_loss(log_p_adv, y, weight=weight)
        margin = -torch.log1p(-other.exp().clamp(max=1 - 1e-7)).mean()  # -log(1 - max_{k != y} p_k(x_adv))
        p_true = F.softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
        kl = (output_divergence(logits_adv, logits, multilabel=False) * (1 - p_true)).mean()
        loss = ce_adv + margin + self.beta * kl
        return ObjectiveOutput(loss, logits, {"bce_adv": (ce_adv + margin).detach(), "kl_weighted": kl.detach()},
                               adversarial_logits=logits_adv)


def trades_adversary(model: nn.Module, x: Tensor, attack: PGD, *, multilabel: bool, mode: str = "eval") -> Tensor:
    """TRADES inner maximisation in ``mode``: from x + 0.001 N(0, 1), sign ascent on sum KL(f(x) || f(x_adv))."""
    with adversary_context(model, mode):
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


@dataclass(kw_only=True)
class TriObjective(Objective):
    """:class:`TRADES` + lambda_expl * (1 - SSIM(CAM(x), CAM(x_adv))): accuracy, robustness and explanation
    stability. It holds a TRADES (``beta``, ``adversary_mode``) for the adversary and the CE + KL terms and adds
    the explanation term; AWP is not offered.

    The CAMs come from :func:`trixai.xai.gradcam.grad_cam` in its differentiable mode: the channel weights are
    gradients taken with ``create_graph=True``, so the term trains the parameters through the activations and
    the gradients themselves. The CAM forwards also give the logits of the CE and KL terms (no extra forward).
    Target per sample: the label (multiclass) or the top predicted label (multi-label). ``warmup_epochs``
    keeps lambda_expl at 0 for that many epochs, then ramps it linearly over ``ramp_epochs``.
    ``adversary``: ``trades`` (the TRADES example) or ``attack`` (a separate example from the attack group, made in
    ``adversary_mode`` too). ``ssim_window``/``ssim_sigma``: the SSIM Gaussian window of the training term
    (validation and test ``cam_ssim`` keep the standard 11 x 11, sigma 1.5 window so that runs stay comparable).
    """

    beta: float = 6.0
    lambda_expl: float = 0.3
    cam_layer: str = "final"
    warmup_epochs: int = 0
    ramp_epochs: int = 0
    adversary: str = "trades"
    adversary_mode: str = "eval"
    ssim_window: int = WINDOW_SIZE
    ssim_sigma: float = WINDOW_SIGMA
    name = "tri_objective"
    attacks = PGD_ATTACKS

    def __post_init__(self) -> None:
        if self.adversary not in ("trades", "attack"):
            raise TrixaiError(f"objective.adversary={self.adversary!r} is not one of ['trades', 'attack']")
        check_adversary_mode(self.adversary_mode)
        check_window(self.ssim_window, self.ssim_sigma, names=("objective.ssim_window", "objective.ssim_sigma"))

    @property
    def trades(self) -> TRADES:
        """The TRADES objective this one extends (same ``beta`` and ``adversary_mode``)."""
        return TRADES(beta=self.beta, adversary_mode=self.adversary_mode)

    def current_lambda(self) -> float:
        if self.epoch < self.warmup_epochs:
            return 0.0
        ramp = min(1.0, (self.epoch - self.warmup_epochs + 1) / self.ramp_epochs) if self.ramp_epochs else 1.0
        return self.lambda_expl * ramp

    def __call__(self, model, x, y, *, attack=None, weight=None, label_mask=None) -> ObjectiveOutput:
        self.check(attack)
        trades = self.trades
        x_adv = trades.examples(model, x, y, attack)
        x_expl = x_adv if self.adversary == "trades" else run_attack(attack, model, x, y, mode=self.adversary_mode)
        similarity, clean, adv = cam_ssim(model, x, x_expl, y, self.cam_layer, create_graph=True,
                                          window_size=self.ssim_window, window_sigma=self.ssim_sigma)
        logits_adv = adv.logits if x_expl is x_adv else model(x_adv)
        out = trades.combine(clean.logits, logits_adv, y, weight=weight, label_mask=label_mask)
        similarity = similarity.mean()
        expl = 1.0 - similarity
        lam = self.current_lambda()
        out.loss = out.loss + lam * expl
        out.terms.update(expl=expl.detach(), cam_ssim=similarity.detach(), lambda_expl=torch.tensor(lam))
        return out
