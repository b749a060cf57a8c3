"""Faithfulness (Petsiuk et al. 2018, RISE; Chattopadhyay et al. 2018, Grad-CAM++).

Deletion removes the most salient pixels first (replacing them by a baseline image) and integrates the
target probability over the removed fraction (lower = more faithful); insertion starts from the baseline
and adds the most salient pixels first (higher = more faithful). All step images come from one ranking per
sample and run through the model in batches; the two paths share their end points (the image and the baseline).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.core.frozen import frozen_eval, memory_format

BASELINES = ("blur", "constant")


def class_probability(logits: Tensor, targets: Tensor, task: str) -> Tensor:
    """Probability of each sample's target: softmax (multiclass) or sigmoid of that label (multi-label)."""
    chosen = logits.gather(1, targets[:, None]).squeeze(1)
    if task == "multilabel":
        return torch.sigmoid(chosen)
    return F.softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur (kernel radius 3 sigma, reflect padding) of (N, C, H, W) images."""
    radius = max(1, min(int(math.ceil(3 * sigma)), min(x.shape[-2:]) - 1))
    coords = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (coords / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def make_baseline(x: Tensor, kind: str, *, blur_sigma: float = 5.0, value: float = 0.0) -> Tensor:
    """The image that replaces removed pixels: ``blur`` (Gaussian-blurred copy) or ``constant`` (``value``)."""
    if kind == "blur":
        return gaussian_blur(x, blur_sigma)
    if kind == "constant":
        return torch.full_like(x, value)
    raise TrixaiError(f"faithfulness baseline {kind!r} is not one of {list(BASELINES)}")


def step_masks(maps: Tensor, steps: int) -> Tensor:
    """(N, steps + 1, H, W) masks; step k marks the round(k / steps * H * W) most salient pixels.

    One stable descending argsort per sample defines every step (ties keep raster order).
    """
    if steps < 1:
        raise TrixaiError(f"faithfulness steps={steps} must be >= 1")
    n, h, w = maps.shape
    order = maps.flatten(1).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=maps.device).expand(n, -1))
    counts = torch.round(torch.arange(steps + 1, device=maps.device, dtype=torch.float64) / steps * (h * w)).long()
    return (rank[:, None, :] < counts[None, :, None]).view(n, steps + 1, h, w)


def _step_probabilities(model: nn.Module, x: Tensor, base: Tensor, masks: Tensor, targets: Tensor, task: str,
                        batch_size: int, layout: torch.memory_format) -> tuple[Tensor, Tensor]:
    """Target probabilities along the deletion and insertion paths; returns two (N, steps + 1) tensors.

    Deletion step k shows ``x`` with ``masks[:, k]`` replaced by ``base``; insertion step k shows ``base`` with
    ``masks[:, k]`` taken from ``x``. The paths share their end points (``x`` and ``base``), which run once; the
    inner steps of both paths stream through the model together in batches of ``batch_size`` (in ``layout``).
    """
    n, k = masks.shape[:2]
    inner = masks[:, 1:-1].flatten(0, 1)  # (N * (K - 2), H, W): sample i's step j + 1 at row i * (K - 2) + j
    rows_per_path = inner.shape[0]
    probs = torch.empty(2 * n + 2 * rows_per_path, device=x.device)
    ends = torch.cat([x, base])
    for begin in range(0, 2 * n, batch_size):
        rows = torch.arange(begin, min(begin + batch_size, 2 * n), device=x.device)
        probs[rows] = class_probability(model(ends[rows].contiguous(memory_format=layout)), targets[rows % n], task)
    for begin in range(0, 2 * rows_per_path, batch_size):
        rows = torch.arange(begin, min(begin + batch_size, 2 * rows_per_path), device=x.device)
        insertion = rows >= rows_per_path  # the deletion path first, then the insertion path
        step = rows - insertion.long() * rows_per_path
        sample = step // (k - 2)
        m = inner[step].unsqueeze(1).to(x.dtype)
        start = torch.where(insertion.view(-1, 1, 1, 1), base[sample], x[sample])
        end = torch.where(insertion.view(-1, 1, 1, 1), x[sample], base[sample])
        images = (start * (1 - m) + end * m).contiguous(memory_format=layout)
        probs[2 * n + rows] = class_probability(model(images), targets[sample], task)
    p_x, p_base = probs[:n, None], probs[n:2 * n, None]
    deletion_inner, insertion_inner = probs[2 * n:].view(2, n, k - 2)
    return torch.cat([p_x, deletion_inner, p_base], dim=1), torch.cat([p_base, insertion_inner, p_x], dim=1)


def trapezoid_auc(curve: Tensor) -> Tensor:
    """Area under (N, steps + 1) curves sampled at fractions 0, 1/steps, ..., 1."""
    return torch.trapezoid(curve, dx=1.0 / (curve.shape[1] - 1), dim=1)


@torch.no_grad()
def deletion_insertion(
    model: nn.Module, x: Tensor, maps: Tensor, targets: Tensor, *, steps: int = 20, baseline: str = "blur",
    blur_sigma: float = 5.0, task: str = "multiclass", batch_size: int = 256, channels_last: bool = True,
) -> dict[str, Tensor]:
    """Deletion and insertion curves (N, steps + 1) and AUCs (N,) for saliency ``maps`` (N, H, W).

    ``channels_last``: run the step images and the model's weights in that memory format (faster convolutions;
    the model's layout is restored afterwards).
    """
    if maps.shape != (x.shape[0], *x.shape[-2:]):
        raise TrixaiError(f"maps {tuple(maps.shape)} must be (N, H, W) at the image size {tuple(x.shape)}")
    masks = step_masks(maps, steps)
    base = make_baseline(x, baseline, blur_sigma=blur_sigma)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    with frozen_eval(model), memory_format(model, channels_last), torch.no_grad():
        deletion, insertion = _step_probabilities(model, x, base, masks, targets, task, batch_size, layout)
    return {"deletion_curve": deletion, "insertion_curve": insertion,
            "deletion_auc": trapezoid_auc(deletion), "insertion_auc": trapezoid_auc(insertion)}


@torch.no_grad()
def confidence_change(model: nn.Module, x: Tensor, maps: Tensor, targets: Tensor, *,
                      task: str = "multiclass") -> dict[str, Tensor]:
    """Average drop and increase in confidence (Grad-CAM++) for the image masked by its map, ``x * map``.

    Per sample: ``drop = max(0, p(x) - p(x * map)) / p(x)`` and ``increase = p(x * map) > p(x)``.
    """
    with frozen_eval(model), torch.no_grad():
        full = class_probability(model(x), targets, task)
        masked = class_probability(model(x * maps.unsqueeze(1)), targets, task)
    return {"average_drop": (full - masked).clamp_min(0) / full.clamp_min(1e-12),
            "increase_in_confidence": (masked > full).float()}
