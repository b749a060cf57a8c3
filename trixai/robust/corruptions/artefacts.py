"""Acquisition artefacts of dermoscopy: the dermatoscope's black frame, ink marks (characters), hair strands.

``black_corner`` and ``characters`` follow MedMNIST-C (Di Salvo et al. 2024): everything outside a centred circle
of radius ``m`` x half the shorter side is black; 1..W words of 3..L random lowercase letters in random colours,
text height 22 px x a font scale drawn from U(0.14, F) at 224 px (OpenCV's Hershey font is 22 px tall at scale 1),
placed at random. The letters here are PIL's default font (rendered once); the height keeps a floor of 3 px so the
marks survive at 28-64 px. ``hair`` is trixai's own: n dark strands, quadratic Bezier curves of random position,
direction, length (0.3-0.8 of the image) and bend, ``w`` px wide at 224 px, anti-aliased.
"""

from __future__ import annotations

import functools
import string

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from trixai.robust.corruptions.base import randint, spatial_scale, uniform

TEXT_HEIGHT = 22.0  # px of OpenCV's FONT_HERSHEY_DUPLEX at font scale 1
MIN_TEXT_HEIGHT = 3


def black_corner(x: Tensor, multiplier: float, generator: torch.Generator) -> Tensor:
    h, w = x.shape[-2:]
    cy, cx = h // 2, w // 2
    radius = min(cx, cy, w - cx, h - cy) * multiplier
    yy = torch.arange(h, device=x.device, dtype=torch.float32)[:, None] - cy
    xx = torch.arange(w, device=x.device, dtype=torch.float32)[None, :] - cx
    inside = (yy ** 2 + xx ** 2) <= radius ** 2
    return x * inside.to(x.dtype)


@functools.lru_cache(maxsize=1)
def glyphs() -> tuple[Tensor, ...]:
    """Coverage masks (H, W_letter) in [0, 1] of the 26 lowercase letters, one common height."""
    font = ImageFont.load_default(size=40)
    top, bottom = font.getbbox(string.ascii_lowercase)[1], font.getbbox(string.ascii_lowercase)[3]
    masks = []
    for letter in string.ascii_lowercase:
        width = max(1, int(font.getlength(letter)))
        canvas = Image.new("L", (width + 2, bottom - top))
        ImageDraw.Draw(canvas).text((1, -top), letter, fill=255, font=font)
        masks.append(torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0))
    return tuple(masks)


def _word_mask(letters: list[int], height: int, device: torch.device) -> Tensor:
    parts = []
    for index in letters:
        glyph = glyphs()[index]
        width = max(1, round(glyph.shape[1] * height / glyph.shape[0]))
        parts.append(F.interpolate(glyph[None, None], size=(height, width), mode="area")[0, 0])
    return torch.cat(parts, dim=1).to(device)


def characters(x: Tensor, params: tuple[int, int, float], generator: torch.Generator) -> Tensor:
    max_words, max_letters, max_font_scale = params
    scale = spatial_scale(x)
    h, w = x.shape[-2:]
    out = x.clone()
    words = randint(generator, len(x), 1, max_words).tolist()
    for i, n_words in enumerate(words):
        for _ in range(n_words):
            n = int(randint(generator, 1, 3, max_letters))
            letters = randint(generator, n, 0, 25).tolist()
            font_scale = float(uniform(generator, 1, 0.14, max_font_scale))
            colour = uniform(generator, 3, 0.0, 1.0)
            colour = colour[: x.shape[1]] if x.shape[1] == 3 else colour.mean(0, keepdim=True)
            mask = _word_mask(letters, max(MIN_TEXT_HEIGHT, round(TEXT_HEIGHT * font_scale * scale)), x.device)
            mh, mw = mask.shape
            left = int(randint(generator, 1, round(10 * scale), max(round(10 * scale), w - round(8 * scale * n))))
            bottom = int(randint(generator, 1, max(mh, round(10 * scale)), max(mh, h - round(10 * scale))))
            top = bottom - mh
            mask = mask[max(0, -top): mh - max(0, bottom - h), : max(0, min(mw, w - left))]
            if mask.numel() == 0:
                continue
            rows, cols = slice(max(0, top), max(0, top) + mask.shape[0]), slice(left, left + mask.shape[1])
            region = out[i, :, rows, cols]
            out[i, :, rows, cols] = region * (1 - mask) + colour[:, None, None].to(x.dtype) * mask
    return out


def _segment_distance(pixels: Tensor, a: Tensor, ab: Tensor) -> Tensor:
    """Distance (1, P) from each pixel (1, P, 2) to the nearest of the segments a -> a + ab (1, S, 2)."""
    ry, rx = pixels[..., 0][:, None] - a[..., 0:1], pixels[..., 1][:, None] - a[..., 1:2]  # (1, S, P)
    by, bx = ab[..., 0:1], ab[..., 1:2]
    s = ((ry * by + rx * bx) / (by * by + bx * bx).clamp_min(1e-12)).clamp(0, 1)
    return ((ry - s * by) ** 2 + (rx - s * bx) ** 2).amin(dim=1).sqrt()


def hair(x: Tensor, params: tuple[int, float], generator: torch.Generator) -> Tensor:
    count, width = params
    n, h, w = len(x), *x.shape[-2:]
    size = float(min(h, w))
    half_width = max(width * spatial_scale(x), 0.5) / 2
    ys = torch.arange(h, device=x.device, dtype=torch.float32)
    xs = torch.arange(w, device=x.device, dtype=torch.float32)
    pixels = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).view(1, -1, 2)  # (1, HW, 2) as (y, x)
    t = torch.linspace(0, 1, 9, device=x.device)[None, :, None]
    out = x.clone()
    for _ in range(int(count)):
        start = torch.stack([uniform(generator, n, 0, h - 1), uniform(generator, n, 0, w - 1)], dim=1)
        angle = uniform(generator, n, 0, 2 * torch.pi)
        length = uniform(generator, n, 0.3, 0.8) * size
        direction = torch.stack([torch.sin(angle), torch.cos(angle)], dim=1)
        end = start + length[:, None] * direction
        normal = torch.stack([direction[:, 1], -direction[:, 0]], dim=1)
        control = (start + end) / 2 + (uniform(generator, n, -0.25, 0.25) * length)[:, None] * normal
        curve = ((1 - t) ** 2 * start[:, None] + 2 * (1 - t) * t * control[:, None] + t ** 2 * end[:, None])
        a, ab = curve[:, :-1], curve[:, 1:] - curve[:, :-1]  # (N, S, 2) segments of the curve
        distance = torch.cat([_segment_distance(pixels, a[i:i + 1], ab[i:i + 1]) for i in range(n)])
        alpha = (half_width + 0.5 - distance).clamp(0, 1).view(n, 1, h, w) * 0.9
        value = uniform(generator, n, 0.05, 0.2)
        colour = torch.stack([value, 0.75 * value, 0.6 * value], dim=1)[:, : x.shape[1]]
        if x.shape[1] == 1:
            colour = colour.mean(1, keepdim=True)
        out = out * (1 - alpha) + colour[:, :, None, None].to(x.dtype) * alpha
    return out
