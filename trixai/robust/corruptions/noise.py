"""Noise: Gaussian, speckle, shot (Poisson) and impulse (salt and pepper), per pixel and channel.

Definitions as in ImageNet-C (Hendrycks & Dietterich 2019) and MedMNIST-C (Di Salvo et al. 2024): Gaussian
x + N(0, c^2); speckle x + x N(0, c^2); shot Poisson(c x) / c; impulse: a fraction c of the values set to 0 or
1 with equal probability (scikit-image ``random_noise(mode="s&p")``). Noise is per pixel, so it does not scale.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gaussian_noise(x: Tensor, c: float, generator: torch.Generator) -> Tensor:
    return x + c * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def speckle_noise(x: Tensor, c: float, generator: torch.Generator) -> Tensor:
    return x + x * c * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def shot_noise(x: Tensor, c: float, generator: torch.Generator) -> Tensor:
    return torch.poisson(x.clamp(0, 1) * c, generator=generator) / c


def impulse_noise(x: Tensor, c: float, generator: torch.Generator) -> Tensor:
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    out = torch.where(u < c / 2, torch.zeros_like(x), x)
    return torch.where((u >= c / 2) & (u < c), torch.ones_like(x), out)
