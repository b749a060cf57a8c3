"""Attacks on the explanation itself: Ghorbani et al.'s top-k attack and Dombrowski et al.'s targeted manipulation.

Both perturb the input inside the L-inf eps-ball of [0, 1] pixel space with signed-gradient steps, projected
onto the ball and the [0, 1] box after every step, with the gradient taken through trixai's own differentiable
CAM (:func:`~trixai.xai.gradcam.grad_cam` / :func:`~trixai.xai.multiscale.multiscale_grad_cam` with
``create_graph=True``): the map's gradient w.r.t. the input needs the derivative of the channel weights, a
second derivative of the model. The model runs frozen in eval mode (mode, ``requires_grad`` and BatchNorm
statistics restored), gradients come from ``torch.autograd.grad`` w.r.t. the input only (no parameter
``.grad`` is written), and every per-sample quantity is summed over the batch, so a point's result does not
depend on the batch it is in (in exact arithmetic: rounding that differs between batch sizes, ~1e-7 on a map,
can still flip a near-zero gradient sign or a top-k near-tie). Neither attack draws random numbers (neither
paper uses a random start).

The attacked map ``h`` is the explainer's non-negative map at input size (``explainer``: ``gradcam`` at
``layer``, the ReLU'd Grad-CAM before trixai's min-max normalisation, or ``multiscale_gradcam`` with
``weights``, the fused map), divided by its sum as both papers normalise their saliency maps. Reported maps
are the explainer's own output (Grad-CAM min-max normalised, the fused multi-scale map), recomputed without
graph on the original model.

ReLU models: a ReLU network's second derivatives vanish almost everywhere. For Grad-CAM this only removes the
part of the map's gradient that flows through the channel weights (the activations still carry a first-order
term; for a CAM layer followed by pooling and a linear head the weights do not depend on the input at all, so
nothing is lost). Both papers take the attack direction from a copy of the network with ReLU replaced by
softplus (Ghorbani et al.'s surrogate ``NET2``; Dombrowski et al.'s code grows beta from 10 to 100 over the
iterations); ``softplus_beta`` does that with one fixed beta (every ``nn.ReLU`` module becomes
``nn.Softplus(beta)`` for the gradient steps only; functional ``F.relu`` calls are not replaced), while maps,
predictions and the acceptance rule always use the original model. Without it a ReLU model is attacked
through its exact (almost everywhere) first-order map gradient. SiLU networks (EfficientNet) are smooth and
need nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.core.frozen import frozen_eval
from trixai.xai.base import normalize_maps
from trixai.xai.gradcam import grad_cam
from trixai.xai.metrics.stability import spearman, ssim
from trixai.xai.multiscale import DEFAULT_WEIGHTS, multiscale_grad_cam

EXPLAINERS = ("gradcam", "multiscale_gradcam")
MapLoss = Callable[[Tensor, Tensor], Tensor]


@dataclass
class ManipulationResult:
    """Manipulated images ``x_adv`` (N, C, H, W); clean and manipulated maps (N, H, W) of the explainer;
    the explained class per sample; ``kept`` (N,): the arg-max class of ``x_adv`` equals that of ``x``
    (measured on the original model); ``metrics``: per-point values (N,) named by each attack."""

    x_adv: Tensor
    clean_maps: Tensor
    maps: Tensor
    targets: Tensor
    kept: Tensor
    metrics: dict[str, Tensor]


def sum_normalize(maps: Tensor) -> Tensor:
    """(N, H, W) non-negative maps divided by their per-sample sum; an all-zero map stays zero."""
    total = maps.flatten(1).sum(dim=1).view(-1, 1, 1)
    return maps / total.clamp_min(torch.finfo(maps.dtype).tiny)


def topk_members(maps: Tensor, k: int) -> Tensor:
    """Boolean (N, H*W): each map's ``k`` largest pixels, ties broken by the lower flat index (as ``tf.nn.top_k``)."""
    order = maps.flatten(1).argsort(dim=1, descending=True, stable=True)[:, :k]
    return torch.zeros(maps.shape[0], maps[0].numel(), dtype=torch.bool, device=maps.device).scatter_(1, order, True)


def topk_intersection(clean: Tensor, manipulated: Tensor, k: int) -> Tensor:
    """Ghorbani et al.'s top-k intersection per sample: the share of the clean map's top-k pixels that are
    also among the manipulated map's top-k."""
    return (topk_members(clean, k) & topk_members(manipulated, k)).sum(dim=1).float() / k


@contextmanager
def softplus_surrogate(model: nn.Module, beta: float | None) -> Iterator[None]:
    """Inside, every ``nn.ReLU`` submodule of ``model`` is replaced by ``nn.Softplus(beta)``; restored on exit.
    ``beta`` None: the model as it is."""
    if beta is None:
        yield
        return
    swapped = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if isinstance(child, nn.ReLU)]
    if not swapped:
        raise TrixaiError(f"manipulation.softplus_beta={beta}: the model has no nn.ReLU module to smooth; "
                          "set softplus_beta=null")
    try:
        for parent, name, _ in swapped:
            setattr(parent, name, nn.Softplus(beta=beta))
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


def vanished(maps: Tensor) -> Tensor:
    """1.0 where a (N, H, W) map is all zero (the explainer shows nothing), else 0.0."""
    return (maps.flatten(1).amax(dim=1) <= 0).float()


def project(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Projection onto the L-inf eps-ball around ``x`` and the [0, 1] box."""
    return (x + (x_adv - x).clamp(-eps, eps)).clamp(0.0, 1.0)


@dataclass(kw_only=True)
class Manipulation:
    """Settings shared by the explanation attacks: the threat model (``eps``, ``steps`` signed steps of size
    ``alpha``), the attacked explainer (``explainer``, its ``layer`` or fusion ``weights``) and the optional
    softplus surrogate for ReLU models (``softplus_beta``)."""

    eps: float = 8 / 255
    alpha: float = 1 / 255
    steps: int = 100
    explainer: str = "gradcam"
    layer: str = "final"
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    softplus_beta: float | None = None
    name = "manipulation"

    def __post_init__(self) -> None:
        if self.eps < 0 or self.alpha <= 0 or self.steps < 1:
            raise TrixaiError(f"manipulation needs eps >= 0, alpha > 0 and steps >= 1 "
                              f"(got eps={self.eps}, alpha={self.alpha}, steps={self.steps})")
        if self.explainer not in EXPLAINERS:
            raise TrixaiError(f"manipulation.explainer={self.explainer!r} is not one of {list(EXPLAINERS)}")
        if self.softplus_beta is not None and self.softplus_beta <= 0:
            raise TrixaiError(f"manipulation.softplus_beta={self.softplus_beta}: expected > 0 or null")

    def settings(self) -> dict:
        """Every setting, for reports and metadata."""
        return {"attack": self.name, **asdict(self), "weights": dict(self.weights)}

    def saliency(self, model: nn.Module, x: Tensor, targets: Tensor | None, *,
                 create_graph: bool) -> tuple[Tensor, Tensor, Tensor]:
        """The attacked map (N, H, W) >= 0 (Grad-CAM before min-max, or the fused multi-scale map), logits,
        explained classes."""
        if self.explainer == "gradcam":
            result = grad_cam(model, x, targets, self.layer, create_graph=create_graph, normalize=False)
            return result.maps[self.layer], result.logits, result.targets
        result = multiscale_grad_cam(model, x, targets, dict(self.weights), create_graph=create_graph)
        return result.maps["fused"], result.logits, result.targets

    def shown(self, maps: Tensor) -> Tensor:
        """The explainer's reported map from :meth:`saliency`'s map (Grad-CAM: exact min-max)."""
        return normalize_maps(maps) if self.explainer == "gradcam" else maps

    def gradient(self, model: nn.Module, x_adv: Tensor, targets: Tensor, loss: MapLoss) -> tuple[Tensor, Tensor, Tensor]:
        """d sum_i loss_i / d x_adv through the differentiable map (on the softplus surrogate when set), and the
        map and logits at ``x_adv`` of that pass (detached)."""
        x_adv = x_adv.detach().requires_grad_(True)
        with softplus_surrogate(model, self.softplus_beta):
            maps, logits, _ = self.saliency(model, x_adv, targets, create_graph=True)
            (grad,) = torch.autograd.grad(loss(maps, logits).sum(), x_adv)
        return grad, maps.detach(), logits.detach()

    def check(self, model: nn.Module, x: Tensor) -> None:
        if getattr(model, "task", "multiclass") != "multiclass":
            raise TrixaiError(f"explanation manipulation needs a multiclass model (softmax output, arg-max "
                              f"prediction); got task={model.task!r}")
        if x.dim() != 4:
            raise TrixaiError(f"manipulation takes images (N, C, H, W), got shape {tuple(x.shape)}")

    def outcome(self, model: nn.Module, x_adv: Tensor, targets: Tensor, prediction: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Attacked map, logits and ``kept`` of the final images, without graph, on the original model."""
        maps, logits, _ = self.saliency(model, x_adv, targets, create_graph=False)
        return maps, logits, logits.argmax(dim=1) == prediction


@dataclass(kw_only=True)
class TopKManipulation(Manipulation):
    """Ghorbani, Abid & Zou 2019 ("Interpretation of neural networks is fragile", AAAI), top-k attack.

    With ``K`` the clean map's ``topk`` pixels and ``h`` the map normalised to sum 1, each step ascends the
    dissimilarity ``D(x') = -sum_{i in K} h(x')_i``: ``x' <- proj(x' + alpha sign(grad D))``. Acceptance rule
    (their Algorithm 1): only iterates whose arg-max class equals the clean one are candidates; among
    ``x^(1) .. x^(steps)`` the result is the candidate with the lowest top-k intersection (the selection of
    their reference code, ``iterative_attack(measure="intersection")`` in amiratag/InterpretationFragility),
    ties broken by the larger ``D`` (the paper's criterion). A point without any candidate keeps its clean
    image (``accepted`` 0). Defaults are the reference code's: ``topk`` = 1,000 pixels (2 % of 224 x 224,
    so set it for smaller images), 100 iterations of 1/255, eps = 8/255.

    Metrics per point: ``topk_intersection`` (clean vs manipulated map), ``ssim`` and ``spearman`` of the
    clean vs manipulated reported maps, ``topk_mass_clean``/``topk_mass`` (sum-1 mass of ``K`` before/after),
    ``accepted``, ``vanished``; ``kept`` is measured on the returned image (always true under the acceptance
    rule). A vanished map (all zero: the attack can switch the CAM off) has no top-k of its own: its pixels
    rank by index, and its Spearman correlation is NaN.
    """

    topk: int = 1000
    name = "topk_manipulation"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.topk < 1:
            raise TrixaiError(f"manipulation.topk={self.topk}: expected a pixel count >= 1")

    def __call__(self, model: nn.Module, x: Tensor, targets: Tensor | int | None = None) -> ManipulationResult:
        """Manipulate ``x`` (N, C, H, W) in [0, 1]; ``targets``: the explained class (None: the predicted one)."""
        self.check(model, x)
        pixels = x.shape[-2] * x.shape[-1]
        if self.topk >= pixels:
            raise TrixaiError(f"manipulation.topk={self.topk} must be smaller than the {pixels} pixels of a "
                              f"{x.shape[-2]} x {x.shape[-1]} map")
        x = x.detach()
        with frozen_eval(model):
            clean, logits, targets = self.saliency(model, x, targets, create_graph=False)
            prediction = logits.argmax(dim=1)
            members = topk_members(clean, self.topk).view_as(clean)

            def topk_mass(maps: Tensor) -> Tensor:
                return (sum_normalize(maps) * members).flatten(1).sum(dim=1)

            best = x.clone()
            best_overlap = torch.full((x.shape[0],), float("inf"), device=x.device)
            best_score = torch.full_like(best_overlap, float("-inf"))
            x_adv = x
            for step in range(self.steps + 1):
                if step < self.steps:
                    grad, maps, logits = self.gradient(model, x_adv, targets, lambda maps, _: -topk_mass(maps))
                if step > 0:
                    if step == self.steps or self.softplus_beta is not None:
                        maps, logits, _ = self.saliency(model, x_adv, targets, create_graph=False)
                    overlap = topk_intersection(clean, maps, self.topk)
                    score = -topk_mass(maps)
                    better = (logits.argmax(dim=1) == prediction) & (
                        (overlap < best_overlap) | ((overlap == best_overlap) & (score > best_score)))
                    best[better] = x_adv[better]
                    best_overlap = torch.where(better, overlap, best_overlap)
                    best_score = torch.where(better, score, best_score)
                if step < self.steps:
                    x_adv = project(x_adv + self.alpha * grad.sign(), x, self.eps)
            maps, _, kept = self.outcome(model, best, targets, prediction)
        clean_shown, shown = self.shown(clean), self.shown(maps)
        metrics = {
            "topk_intersection": topk_intersection(clean, maps, self.topk),
            "ssim": ssim(clean_shown, shown),
            "spearman": spearman(clean_shown, shown),
            "topk_mass_clean": topk_mass(clean),
            "topk_mass": topk_mass(maps),
            "accepted": torch.isfinite(best_overlap).float(),
            "vanished": vanished(maps),
        }
        return ManipulationResult(best, clean_shown, shown, targets, kept, metrics)


@dataclass(kw_only=True)
class TargetedManipulation(Manipulation):
    """Dombrowski et al. 2019 ("Explanations can be manipulated and geometry is to blame", NeurIPS).

    Descends ``L = mean_pixels (h(x') - h_t)^2 + gamma * mean_classes (g(x') - g(x))^2`` with ``h`` and the
    target ``h_t`` normalised to sum 1 and ``g`` the softmax output, as in their reference code
    (pankessel/adv_explanation_ref, ``src/run_attack.py``: ``F.mse_loss`` on both terms with prefactors
    1e11 and 1e6, i.e. ``gamma`` = 1e6 / 1e11 = 1e-5, the default here; the paper writes the loss with squared
    norms and calls gamma a hyperparameter). With mean-squared terms the balance shifts with the image size
    (sum-1 map entries scale with 1 / (H W)) and the class count: tune ``gamma`` per setting. The paper's
    optimiser (Adam, 1,500 iterations, clamped to the image range, no eps-ball) is replaced by trixai's
    threat model: ``steps`` signed steps of ``alpha`` projected onto the eps-ball; the last iterate is returned,
    as in their code. There is no acceptance rule: the penalty only discourages a change of output, and
    ``kept`` is measured.

    Metrics per point, of the clean (``_before``) and the manipulated (``_after``) map against the target:
    ``mse``, the loss's map term (mean squared difference of the sum-1 maps, their code's ``F.mse_loss``),
    and ``ssim`` of the per-sample min-max maps (data range 1); ``output_change`` ``||g(x') - g(x)||_2``;
    ``vanished``.
    """

    gamma: float = 1e-5
    name = "targeted_manipulation"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gamma < 0:
            raise TrixaiError(f"manipulation.gamma={self.gamma}: expected >= 0")

    def __call__(self, model: nn.Module, x: Tensor, targets: Tensor | int | None = None, *,
                 target_maps: Tensor) -> ManipulationResult:
        """Move the maps of ``x`` (N, C, H, W) in [0, 1] for ``targets`` (None: the predicted class) towards
        ``target_maps`` (N, H, W), non-negative with a positive sum (e.g. the map of another image)."""
        self.check(model, x)
        if target_maps.shape != (x.shape[0], *x.shape[-2:]):
            raise TrixaiError(f"target_maps has shape {tuple(target_maps.shape)}; expected "
                              f"{(x.shape[0], *x.shape[-2:])} (one map per image at input size)")
        if bool((target_maps < 0).any()) or not bool((target_maps.flatten(1).sum(dim=1) > 0).all()):
            raise TrixaiError("target_maps must be non-negative with a positive sum per map")
        x, target = x.detach(), sum_normalize(target_maps.detach().to(x.device, x.dtype))
        with frozen_eval(model):
            clean, logits, targets = self.saliency(model, x, targets, create_graph=False)
            prediction, probs = logits.argmax(dim=1), F.softmax(logits, dim=1)

            def distance(maps: Tensor) -> Tensor:
                return (sum_normalize(maps) - target).pow(2).flatten(1).mean(dim=1)

            def loss(maps: Tensor, logits: Tensor) -> Tensor:
                return distance(maps) + self.gamma * (F.softmax(logits, dim=1) - probs).pow(2).mean(dim=1)

            x_adv = x
            for _ in range(self.steps):
                grad, _, _ = self.gradient(model, x_adv, targets, loss)
                x_adv = project(x_adv - self.alpha * grad.sign(), x, self.eps)
            maps, logits_adv, kept = self.outcome(model, x_adv, targets, prediction)
        before, after, goal = normalize_maps(clean), normalize_maps(maps), normalize_maps(target)
        metrics = {
            "mse_before": distance(clean),
            "mse_after": distance(maps),
            "ssim_before": ssim(before, goal),
            "ssim_after": ssim(after, goal),
            "output_change": (F.softmax(logits_adv, dim=1) - probs).norm(dim=1),
            "vanished": vanished(maps),
        }
        return ManipulationResult(x_adv, self.shown(clean), self.shown(maps), targets, kept, metrics)
