"""Digital and intensity corruptions: pixelation, JPEG, brightness, contrast, gamma.

MedMNIST-C (Di Salvo et al. 2024) uses PIL's enhancers: brightness x f (``ImageEnhance.Brightness``), contrast
m + f (x - m) with m the mean luma (``ImageEnhance.Contrast``), gamma x^g (torchvision ``adjust_gamma``).
ImageNet-C (Hendrycks & Dietterich 2019) adds c to the HSV value (brightness) and scales around the per-channel
mean (contrast). Pixelation box-averages down to a fraction f of the size and enlarges with nearest neighbours;
JPEG is kornia's codec at quality q (``kornia.enhance.jpeg_codec_differentiable``, 4:2:0 chroma subsampling and
the libjpeg quality tables; its rounding is a smooth approximation). Factors and qualities do not scale.
"""

from __future__ import annotations

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor


def _luma(x: Tensor) -> Tensor:
    return x if x.shape[1] == 1 else kornia.color.rgb_to_grayscale(x)


def pixelate(x: Tensor, factor: float, generator: torch.Generator) -> Tensor:
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, int(h * factor)), max(1, int(w * factor))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest-exact")


def jpeg(x: Tensor, quality: float, generator: torch.Generator) -> Tensor:
    rgb = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    quality = torch.tensor([float(quality)], device=x.device, dtype=x.dtype)
    out = kornia.enhance.jpeg_codec_differentiable(rgb.contiguous(), quality)
    return _luma(out) if x.shape[1] == 1 else out


def brightness(x: Tensor, factor: float, generator: torch.Generator) -> Tensor:
    return x * factor


def contrast(x: Tensor, factor: float, generator: torch.Generator) -> Tensor:
    mean = _luma(x).mean(dim=(1, 2, 3), keepdim=True)
    return mean + factor * (x - mean)


def gamma(x: Tensor, g: float, generator: torch.Generator) -> Tensor:
    return kornia.enhance.adjust_gamma(x.clamp(0, 1), g)


def brightness_hsv(x: Tensor, c: float, generator: torch.Generator) -> Tensor:
    if x.shape[1] == 1:
        return x + c
    hsv = kornia.color.rgb_to_hsv(x.clamp(0, 1))
    hsv = torch.cat([hsv[:, :2], (hsv[:, 2:] + c).clamp(0, 1)], dim=1)
    return kornia.color.hsv_to_rgb(hsv)


def contrast_channel_mean(x: Tensor, c: float, generator: torch.Generator) -> Tensor:
    mean = x.mean(dim=(2, 3), keepdim=True)
    return mean + c * (x - mean)
