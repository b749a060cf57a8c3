"""Blur: Gaussian, defocus (disk), motion (one-sided Gaussian streak at a random angle), zoom.

Parameters are in pixels at 224 px (scaled by :func:`~trixai.robust.corruptions.base.spatial_scale`) except the
zoom factors. Gaussian blur (MedMNIST-C): kernel size k with torchvision's sigma 0.3 ((k - 1) / 2 - 1) + 0.8;
ImageNet-C's Gaussian blur gives sigma (kernel 2 ceil(4 sigma) + 1, as scikit-image). Defocus: a disk of radius r
smoothed by a Gaussian of sigma a (ImageNet-C's ``disk``). Motion: 2r + 1 taps with weights exp(-i^2 / 2 s^2),
i = 0..2r, along an angle drawn from U(-45, 45) degrees per image, borders replicated (ImageNet-C's
ImageMagick-like kernel). Zoom: the mean of the image and its centre zooms by each factor (bilinear).
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from trixai.robust.corruptions.base import odd, spatial_scale, uniform


def _gaussian(x: Tensor, sigma: float, size: int) -> Tensor:
    if size < 3 or sigma <= 0:
        return x
    size = min(size, 2 * (min(x.shape[-2:]) // 2) - 1)  # reflect padding needs the kernel inside the image
    return kornia.filters.gaussian_blur2d(x, (size, size), (sigma, sigma), border_type="reflect")


def gaussian_blur_kernel(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    scale = spatial_scale(x)
    sigma = (0.3 * ((k - 1) * 0.5 - 1) + 0.8) * scale
    return _gaussian(x, sigma, odd(k * scale))


def gaussian_blur_sigma(x: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    sigma = sigma * spatial_scale(x)
    return _gaussian(x, sigma, 2 * math.ceil(4 * sigma) + 1)


def disk_kernel(radius: float, alias_sigma: float, device: torch.device) -> Tensor:
    """A normalised disk of ``radius`` px smoothed by a Gaussian of ``alias_sigma`` px, (1, K, K)."""
    half = math.ceil(radius) + math.ceil(2 * alias_sigma) + 1
    coords = torch.arange(-half, half + 1, device=device, dtype=torch.float32)
    disk = ((coords[:, None] ** 2 + coords[None, :] ** 2) <= radius ** 2).float()
    if alias_sigma > 0:
        size = 2 * math.ceil(2 * alias_sigma) + 1
        disk = kornia.filters.gaussian_blur2d(disk[None, None], (size, size), (alias_sigma, alias_sigma),
                                              border_type="constant")[0, 0]
    return (disk / disk.sum())[None]


def defocus_blur(x: Tensor, params: tuple[float, float], generator: torch.Generator) -> Tensor:
    radius, alias = params
    scale = spatial_scale(x)
    kernel = disk_kernel(radius * scale, alias * scale, x.device)
    if kernel.shape[-1] >= min(x.shape[-2:]):
        return kornia.filters.filter2d(x, kernel, border_type="replicate")
    return kornia.filters.filter2d(x, kernel, border_type="reflect")


def motion_blur(x: Tensor, params: tuple[float, float], generator: torch.Generator) -> Tensor:
    radius, sigma = params
    scale = spatial_scale(x)
    width = 2 * max(0, round(radius * scale)) + 1
    sigma = max(sigma * scale, 1e-3)
    taps = torch.arange(width, device=x.device, dtype=torch.float32)
    weights = torch.exp(-taps ** 2 / (2 * sigma ** 2))
    weights = weights / weights.sum()
    angle = torch.deg2rad(uniform(generator, len(x), -45.0, 45.0))
    dy = -torch.ceil(taps[None] * torch.sin(angle)[:, None] - 0.5)  # (N, taps): the streak's pixel offsets
    dx = -torch.ceil(taps[None] * torch.cos(angle)[:, None] - 0.5)
    h, w = x.shape[-2:]
    rows = torch.arange(h, device=x.device, dtype=torch.float32)
    cols = torch.arange(w, device=x.device, dtype=torch.float32)
    out = torch.zeros_like(x)
    for i in range(width):  # out(p) = sum_i w_i x(p - d_i), border values replicated
        src_y = (rows[None, :] - dy[:, i:i + 1]).clamp(0, h - 1)  # (N, H)
        src_x = (cols[None, :] - dx[:, i:i + 1]).clamp(0, w - 1)  # (N, W)
        grid = torch.stack([(src_x * 2 / max(w - 1, 1) - 1)[:, None, :].expand(-1, h, -1),
                            (src_y * 2 / max(h - 1, 1) - 1)[:, :, None].expand(-1, -1, w)], dim=-1).to(x.dtype)
        out = out + weights[i] * F.grid_sample(x, grid, mode="nearest", align_corners=True)
    return out


def zoom_blur(x: Tensor, factors: tuple[float, ...], generator: torch.Generator) -> Tensor:
    out = x.clone()
    for z in factors:
        theta = torch.tensor([[1 / z, 0, 0], [0, 1 / z, 0]], device=x.device, dtype=x.dtype)
        grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
        out = out + F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out / (len(factors) + 1)
