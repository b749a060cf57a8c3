"""Localisation of saliency maps against ground-truth masks (datasets rasterise boxes into masks).

Pointing game (Zhang et al. 2016, excitation backprop; TorchRay's ``PointingGameBenchmark`` is the reference): a
hit when some mask pixel lies strictly within ``tolerance`` pixels (Euclidean) of the map's maximum, i.e. TorchRay's
``(u - x)^2 + (v - y)^2 < tolerance^2``; a peak inside the mask always hits. The first maximum in raster order
counts; an all-zero map points nowhere and misses. The paper's 15 px hold at the image's own (original) resolution:
datasets read from files give each image's ``pixel_scale`` (model pixels per original pixel, rows and columns), so
the tolerance is 15 * pixel_scale per axis; :func:`scaled_tolerance` is the fallback when the original size is
unknown (15 px at 224 px, scaled to the input).
The reported number is the mean over categories of each category's hit rate (:func:`pointing_game_per_category`).
Energy pointing game (Wang et al. 2020, Score-CAM): saliency mass inside the mask over the total.
Top-k IoU: IoU of the ``topk`` fraction of most salient pixels with the mask. Chance levels: the mask's area
fraction for the energy pointing game (a uniform map), the grown mask's for the pointing game (a random point).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from trixai.core.errors import TrixaiError


def _check(maps: Tensor, masks: Tensor) -> Tensor:
    if maps.shape != masks.shape or maps.dim() != 3:
        raise TrixaiError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} must both be (N, H, W)")
    return masks.bool()


POINTING_TOLERANCE = 15.0
POINTING_REFERENCE_SIZE = 224


def scaled_tolerance(tolerance: float, size: int, reference: int | None = POINTING_REFERENCE_SIZE) -> float:
    """Fallback when the original image size is unknown: ``tolerance`` holds at ``reference`` px and scales
    proportionally with the side ``size`` (15 px at 224 -> 2.14 px at 32); ``reference=None`` keeps it absolute."""
    if tolerance < 0:
        raise TrixaiError(f"pointing-game tolerance={tolerance} must be >= 0")
    return float(tolerance) if reference is None else float(tolerance) * size / reference


def _radii(tolerance: float | Tensor, n: int, device: torch.device) -> Tensor:
    """(N, 2) float64 radii (rows, columns) from a float, (N,) per-sample or (N, 2) per-sample per-axis radii."""
    radii = torch.as_tensor(tolerance, dtype=torch.float64).to(device)
    if radii.dim() == 0:
        radii = radii.expand(n, 2)
    elif radii.shape == (n,):
        radii = radii[:, None].expand(n, 2)
    elif radii.shape != (n, 2):
        raise TrixaiError(f"pointing-game tolerance must be a float, (N,) or (N, 2) with N = {n}, "
                          f"got {tuple(radii.shape)}")
    if not bool(torch.isfinite(radii).all()) or bool((radii < 0).any()):
        raise TrixaiError("pointing-game tolerance must be finite and >= 0")
    return radii


def _within(dy: Tensor, dx: Tensor, ry: Tensor, rx: Tensor) -> Tensor:
    """(dy / ry)^2 + (dx / rx)^2 < 1 without dividing (a zero radius admits nothing), broadcast."""
    return (dy * rx) ** 2 + (dx * ry) ** 2 < (ry * rx) ** 2


def dilate(masks: Tensor, tolerance: float | Tensor) -> Tensor:
    """Grow (N, H, W) boolean masks to every pixel strictly within ``tolerance`` of them (a disk, or an ellipse
    for (N, 2) per-axis radii): the pixels where a peak hits the pointing game."""
    n = masks.shape[0]
    radii = _radii(tolerance, n, masks.device)
    ky, kx = (int(math.floor(float(radii[:, axis].max()))) if n else 0 for axis in (0, 1))
    if ky == 0 and kx == 0:
        return masks
    dy = torch.arange(-ky, ky + 1, device=masks.device, dtype=torch.float64)
    dx = torch.arange(-kx, kx + 1, device=masks.device, dtype=torch.float64)
    ry, rx = radii[:, 0, None, None], radii[:, 1, None, None]
    kernels = (_within(dy[None, :, None], dx[None, None, :], ry, rx)).float().unsqueeze(1)  # (N, 1, kh, kw)
    grown = F.conv2d(masks.float().unsqueeze(0), kernels, padding=(ky, kx), groups=n)
    return (grown.squeeze(0) > 0) | masks


def pointing_game(maps: Tensor, masks: Tensor, tolerance: float | Tensor = 0.0) -> Tensor:
    """1.0 per sample whose (first) maximum lies strictly within ``tolerance`` px of the mask (or in it), else 0.0.

    ``tolerance``: one radius for all samples, a (N,) radius per sample, or (N, 2) radii (rows, columns) per
    sample, all in the maps' pixels (:func:`original_tolerance`, :func:`scaled_tolerance`).
    """
    masks = _check(maps, masks)
    n, h, w = maps.shape
    radii = _radii(tolerance, n, maps.device)
    flat = maps.flatten(1)
    peak = flat.argmax(dim=1)
    rows = torch.arange(h, device=maps.device, dtype=torch.float64)[None, :, None] - (peak // w)[:, None, None]
    cols = torch.arange(w, device=maps.device, dtype=torch.float64)[None, None, :] - (peak % w)[:, None, None]
    near = _within(rows, cols, radii[:, 0, None, None], radii[:, 1, None, None])
    hit = (masks & near).flatten(1).any(dim=1) | masks.flatten(1).gather(1, peak[:, None]).squeeze(1)
    return (hit & (flat.amax(dim=1) > 0)).float()


def pointing_game_per_category(hits: Tensor, categories: Tensor,
                               class_names: Sequence[str] | None = None) -> dict:
    """The pointing game as TorchRay reports it: each category's hit rate, then their mean (``mean``).

    ``hits``: (N,) per-sample hits (:func:`pointing_game`); ``categories``: (N,) integer category of each sample
    (the class whose mask is scored). The mean runs over the categories with at least one sample (TorchRay averages
    over all dataset classes, which on its VOC / COCO benchmarks all have samples). ``per_sample`` is the mean over
    samples (trixai 0.1's number). ``per_category`` and ``counts`` are keyed by class name (``class_names``) or
    index; an empty input gives NaN means.
    """
    hits, categories = hits.detach().double().flatten(), categories.detach().long().flatten()
    if hits.shape != categories.shape:
        raise TrixaiError(f"pointing-game hits {tuple(hits.shape)} and categories {tuple(categories.shape)} "
                          "must both be (N,)")
    present = torch.unique(categories).tolist()
    names = [class_names[c] if class_names is not None else str(c) for c in present]
    rates = [float(hits[categories == c].mean()) for c in present]
    counts = [int((categories == c).sum()) for c in present]
    return {"mean": sum(rates) / len(rates) if rates else float("nan"),
            "per_sample": float(hits.mean()) if len(hits) else float("nan"),
            "per_category": dict(zip(names, rates, strict=True)), "counts": dict(zip(names, counts, strict=True)),
            "n": int(len(hits)), "n_categories": len(present)}


def energy_pointing_game(maps: Tensor, masks: Tensor) -> Tensor:
    """Fraction of the (non-negative) saliency mass inside the mask; 0 for an all-zero map."""
    masks = _check(maps, masks)
    maps = maps.clamp_min(0)
    total = maps.flatten(1).sum(dim=1)
    inside = (maps * masks).flatten(1).sum(dim=1)
    return torch.where(total > 0, inside / total.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(total))


def topk_mask(maps: Tensor, fraction: float) -> Tensor:
    """Boolean (N, H, W): the round(fraction * H * W) most salient pixels (stable ranking)."""
    if not 0 < fraction <= 1:
        raise TrixaiError(f"localization topk={fraction} must be in (0, 1]")
    n, h, w = maps.shape
    k = max(1, round(fraction * h * w))
    order = maps.flatten(1).argsort(dim=1, descending=True, stable=True)[:, :k]
    chosen = torch.zeros(n, h * w, dtype=torch.bool, device=maps.device)
    chosen.scatter_(1, order, True)
    return chosen.view(n, h, w)


def topk_iou(maps: Tensor, masks: Tensor, fraction: float = 0.15) -> Tensor:
    """IoU of the top-``fraction`` map region with the mask, per sample."""
    masks = _check(maps, masks)
    chosen = topk_mask(maps, fraction)
    inter = (chosen & masks).flatten(1).sum(dim=1).float()
    union = (chosen | masks).flatten(1).sum(dim=1).float()
    return inter / union.clamp_min(1)


def area_fraction(masks: Tensor, tolerance: float | Tensor = 0.0) -> Tensor:
    """Area of the mask grown by ``tolerance`` (as in :func:`pointing_game`) over the image area per sample: the
    chance level of the pointing game with that tolerance (``tolerance=0``: of the energy pointing game)."""
    return dilate(masks.bool(), tolerance).flatten(1).float().mean(dim=1)
