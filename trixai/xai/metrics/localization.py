"""Localisation of saliency maps against ground-truth masks (datasets rasterise boxes into masks).

Pointing game (Zhang et al. 2016): a hit when the map's maximum lies within ``tolerance`` pixels (Euclidean
distance) of the mask; the paper's 15 px hold at 224 px and scale with the image side (:func:`scaled_tolerance`).
The first maximum in raster order counts; an all-zero map points nowhere and misses.
Energy pointing game (Wang et al. 2020, Score-CAM): saliency mass inside the mask over the total.
Top-k IoU: IoU of the ``topk`` fraction of most salient pixels with the mask. Chance levels: the mask's area
fraction for the energy pointing game (a uniform map), the grown mask's for the pointing game (a random point).
"""

from __future__ import annotations

import math

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
    """Tolerance in pixels at an image side of ``size``: ``tolerance`` holds at ``reference`` px and scales
    proportionally (15 px at 224 -> 2.14 px at 32); ``reference=None`` keeps it absolute."""
    if tolerance < 0:
        raise TrixaiError(f"pointing-game tolerance={tolerance} must be >= 0")
    return float(tolerance) if reference is None else float(tolerance) * size / reference


def dilate(masks: Tensor, tolerance: float) -> Tensor:
    """Grow (N, H, W) boolean masks to every pixel within Euclidean distance ``tolerance`` of them (a disk)."""
    radius = int(math.floor(tolerance))
    if radius < 1:
        return masks
    offsets = torch.arange(-radius, radius + 1, device=masks.device, dtype=torch.float32)
    disk = ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= tolerance**2).float()
    grown = F.conv2d(masks.float().unsqueeze(1), disk.view(1, 1, *disk.shape), padding=radius)
    return grown.squeeze(1) > 0


def pointing_game(maps: Tensor, masks: Tensor, tolerance: float = 0.0) -> Tensor:
    """1.0 per sample whose (first) maximum lies within ``tolerance`` px of the mask, else 0.0."""
    masks = dilate(_check(maps, masks), tolerance)
    flat = maps.flatten(1)
    peak = flat.argmax(dim=1)
    hit = masks.flatten(1).gather(1, peak[:, None]).squeeze(1)
    return (hit & (flat.amax(dim=1) > 0)).float()


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


def area_fraction(masks: Tensor, tolerance: float = 0.0) -> Tensor:
    """Area of the mask grown by ``tolerance`` px over the image area per sample: the chance level of the
    pointing game with that tolerance (``tolerance=0``: of the energy pointing game)."""
    return dilate(masks.bool(), tolerance).flatten(1).float().mean(dim=1)

