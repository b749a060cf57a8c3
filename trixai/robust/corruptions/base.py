"""A corruption: a batched torch operation with five severities, seeded, on the images' device.

Images are float (N, C, H, W) in [0, 1] (C = 1 or 3) and stay so: every corruption returns the same shape and dtype,
clamped to [0, 1]. Randomness comes only from the ``torch.Generator`` passed in (on the images' device), so a
corruption is deterministic under a seed. Severity parameters are the published ones (MedMNIST-C, ImageNet-C),
which were set for 224 px images: parameters in pixels (blur radii and sigmas, kernel sizes, text height, strand
width) are multiplied by ``min(H, W) / 224`` (:func:`spatial_scale`); parameters relative to the image (noise
levels, intensities, pixelation and zoom factors, the frame radius) are used as published.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from trixai.core.errors import TrixaiError

REFERENCE_SIZE = 224  # the resolution the published severity parameters were set for
SEVERITIES = (1, 2, 3, 4, 5)

Operation = Callable[[Tensor, Any, torch.Generator], Tensor]


def spatial_scale(x: Tensor) -> float:
    """Pixel-unit parameters are multiplied by this: the image's shorter side over 224 px."""
    return min(x.shape[-2:]) / REFERENCE_SIZE


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (the global generators are never touched)."""
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed) % (1 << 63))


def odd(value: float) -> int:
    """The nearest odd integer >= 1 (kernel sizes)."""
    k = max(1, round(value))
    return k if k % 2 else k + 1


@dataclass(frozen=True)
class Corruption:
    """``op(x, parameter, generator)`` at five severities (``parameters[s - 1]`` for severity ``s``).

    ``source``: where the operation and its parameters come from; ``scaling``: ``pixels`` (parameters scaled by
    :func:`spatial_scale`) or ``relative`` (used as published); ``note``: how this implementation differs.
    """

    name: str
    op: Operation
    parameters: tuple
    source: str
    scaling: str = "relative"
    note: str = ""

    def __post_init__(self) -> None:
        if len(self.parameters) != len(SEVERITIES):
            raise ValueError(f"{self.name}: {len(self.parameters)} severity parameters, expected {len(SEVERITIES)}")

    def __call__(self, x: Tensor, severity: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``x`` (N, C, H, W) in [0, 1] corrupted at ``severity`` (1-5); same shape, dtype and device."""
        if severity not in SEVERITIES:
            raise TrixaiError(f"{self.name}: severity={severity!r} is not one of {list(SEVERITIES)}")
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise TrixaiError(f"{self.name}: expected images (N, 1 or 3, H, W), got {tuple(x.shape)}")
        generator = generator if generator is not None else make_generator(0, x.device)
        if generator.device.type != x.device.type:
            raise TrixaiError(f"{self.name}: the generator is on {generator.device}, the images on {x.device}")
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()  # half precision: computed in float32
        out = self.op(work, self.parameters[severity - 1], generator)
        return out.clamp(0.0, 1.0).to(x.dtype)

    def describe(self) -> dict:
        """Parameters per severity, source and scaling, for reports."""
        return {"parameters": {str(s): _plain(p) for s, p in zip(SEVERITIES, self.parameters, strict=True)},
                "source": self.source, "scaling": self.scaling, **({"note": self.note} if self.note else {})}


def _plain(value: Any) -> Any:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return float(value) if isinstance(value, float) else value


def uniform(generator: torch.Generator, n: int, low: float, high: float) -> Tensor:
    """``n`` draws from U(low, high) on the generator's device (float32)."""
    return low + (high - low) * torch.rand(n, generator=generator, device=generator.device)


def randint(generator: torch.Generator, n: int, low: int, high: int) -> Tensor:
    """``n`` integers in [low, high] (inclusive) on the generator's device."""
    return torch.randint(int(low), int(high) + 1, (n,), generator=generator, device=generator.device)
