"""Localisation of saliency maps against ground-truth masks (datasets rasterise boxes into masks).

Pointing game (Zhang et al. 2016): a hit when the map's maximum lies inside the mask dilated by
``tolerance`` pixels (the first maximum in raster order; an all-zero map points nowhere and misses).
Energy pointing game (Wang et al. 2020, Score-CAM): saliency mass inside the mask over the total.
Top-k IoU: IoU of the ``topk`` fraction of most salient pixels with the mask. The chance baseline of both
pointing games is the mask's area fraction (a uniform map / a uniformly random point).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trixai.core.errors import TrixaiError


def _check(maps: Tensor, masks: Tensor) -> Tensor:
    if maps.shape != masks.shape or maps.dim() != 3:
        raise TrixaiError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} must both be (N, H, W)")
    return masks.bool()


def dilate(masks: Tensor, tolerance: int) -> Tensor:
    """Grow (N, H, W) boolean masks by ``tolerance`` pixels (square neighbourhood)."""
    if tolerance <= 0:
        return masks
    size = 2 * tolerance + 1
    return F.max_pool2d(masks.float().unsqueeze(1), size, stride=1, padding=tolerance).squeeze(1).bool()


def pointing_game(maps: Tensor, masks: Tensor, tolerance: int = 0) -> Tensor:
    """1.0 per sample whose (first) maximum falls in the mask grown by ``tolerance`` pixels, else 0.0."""
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


def area_fraction(masks: Tensor) -> Tensor:
    """Mask area over image area per sample: the chance level of both pointing games."""
    return masks.bool().flatten(1).float().mean(dim=1)

