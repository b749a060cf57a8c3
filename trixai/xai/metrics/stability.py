"""Stability of explanations: SSIM (differentiable, usable as a loss) and Spearman rank correlation.

SSIM (Wang et al. 2004) with the standard window by default: Gaussian, 11 x 11, sigma 1.5, data range 1,
K1 = 0.01, K2 = 0.03, population (biased) local statistics, valid convolution (no padding); the window
shrinks to the largest odd size that fits maps smaller than the window. Evaluation metrics keep the default
window; a training loss may choose another.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trixai.core.errors import TrixaiError

WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
DATA_RANGE = 1.0
K1, K2 = 0.01, 0.03


def gaussian_window(size: int = WINDOW_SIZE, sigma: float = WINDOW_SIGMA, *, device=None,
                    dtype=torch.float32) -> Tensor:
    """Normalised 2-D Gaussian window (size, size)."""
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-0.5 * (coords / sigma) ** 2)
    g = g / g.sum()
    return g[:, None] * g[None, :]


def check_window(size: int, sigma: float, *, names: tuple[str, str] = ("window_size", "window_sigma")) -> None:
    """Raise unless the Gaussian window is usable: ``size`` odd and >= 1, ``sigma`` > 0 (``names`` for the message)."""
    if size < 1 or size % 2 == 0 or sigma <= 0:
        raise TrixaiError(f"{names[0]} must be odd and >= 1 and {names[1]} > 0 (got {size}, {sigma})")


def ssim(a: Tensor, b: Tensor, *, data_range: float = DATA_RANGE, window_size: int = WINDOW_SIZE,
         window_sigma: float = WINDOW_SIGMA) -> Tensor:
    """Mean SSIM per sample of (N, H, W) or (N, 1, H, W) maps; differentiable w.r.t. both inputs.

    ``window_size`` (odd, >= 1) and ``window_sigma`` (> 0) set the Gaussian window.
    """
    check_window(window_size, window_sigma, names=("ssim window_size", "window_sigma"))
    if a.shape != b.shape:
        raise TrixaiError(f"ssim needs maps of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() == 3:
        a, b = a.unsqueeze(1), b.unsqueeze(1)
    if a.dim() != 4 or a.shape[1] != 1:
        raise TrixaiError(f"ssim takes (N, H, W) or (N, 1, H, W) maps, got {tuple(a.shape)}")
    size = min(window_size, *a.shape[-2:])
    size -= 1 - size % 2
    window = gaussian_window(size, window_sigma, device=a.device, dtype=a.dtype).view(1, 1, size, size)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_a, mu_b = F.conv2d(a, window), F.conv2d(b, window)
    # (co)variances are shift-invariant: take them of per-map centred inputs to limit float cancellation
    a_c, b_c = a - a.mean(dim=(2, 3), keepdim=True), b - b.mean(dim=(2, 3), keepdim=True)
    mu_ac, mu_bc = F.conv2d(a_c, window), F.conv2d(b_c, window)
    var_a = F.conv2d(a_c * a_c, window) - mu_ac**2
    var_b = F.conv2d(b_c * b_c, window) - mu_bc**2
    cov = F.conv2d(a_c * b_c, window) - mu_ac * mu_bc
    score = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return score.flatten(1).mean(dim=1)


def average_ranks(values: Tensor) -> Tensor:
    """Ranks 1..n of a 1-D tensor with ties sharing their average rank."""
    unique, inverse, counts = torch.unique(values, sorted=True, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)
    return (ends - (counts.to(torch.float64) - 1) / 2)[inverse]


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation per sample of (N, ...) maps (tie-aware); NaN where a map is constant."""
    if a.shape != b.shape:
        raise TrixaiError(f"spearman needs maps of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    out = torch.empty(a.shape[0], dtype=torch.float64, device=a.device)
    for i, (x, y) in enumerate(zip(a.flatten(1).detach(), b.flatten(1).detach(), strict=True)):
        rx, ry = average_ranks(x), average_ranks(y)
        rx, ry = rx - rx.mean(), ry - ry.mean()
        denom = (rx.norm() * ry.norm())
        out[i] = (rx * ry).sum() / denom if denom > 0 else torch.nan
    return out.float()
