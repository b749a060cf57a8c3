"""Corruption augmentation for training (as AugMedMNIST-C, Di Salvo et al. 2024): each image of a batch is, with
probability ``p``, corrupted by one corruption of the set drawn uniformly, at a severity drawn uniformly from
``severities``; batched per (corruption, severity) on the images' device. AugMedMNIST-C draws a continuous
parameter between the severity-1 and severity-5 values and counts the identity among the choices; here the
severity is discrete and ``p`` sets how often an image is left unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from trixai.core.errors import TrixaiError
from trixai.robust.corruptions.base import SEVERITIES, make_generator
from trixai.robust.corruptions.registry import corruption_set, default_set


@dataclass
class CorruptionAugment:
    """``set`` (a set name or ``auto``: the dataset's), ``only`` (a subset of it), ``p``, ``severities``."""

    p: float = 0.5
    severities: list[int] = field(default_factory=lambda: [1, 2, 3])
    set: str = "auto"
    only: list[str] | None = None
    dataset: str | None = None  # the dataset's name, for set=auto

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.p) <= 1.0:
            raise TrixaiError(f"data.augment.corruptions.p={self.p!r}: expected a probability in [0, 1]")
        self.severities = [int(s) for s in self.severities]
        if not self.severities or any(s not in SEVERITIES for s in self.severities):
            raise TrixaiError(f"data.augment.corruptions.severities={self.severities}: expected values in "
                              f"{list(SEVERITIES)}")
        self.set = default_set(self.dataset) if self.set == "auto" else self.set
        self.corruptions = list(corruption_set(self.set, self.only).values())

    @classmethod
    def from_config(cls, cfg: Mapping | None, dataset: str | None = None) -> CorruptionAugment | None:
        """None for a missing or empty config (no augmentation)."""
        if not cfg:
            return None
        unknown = sorted(set(cfg) - {"p", "severities", "set", "only"})
        if unknown:
            raise TrixaiError(f"data.augment.corruptions has unknown keys {unknown}; allowed: p, severities, set, only")
        return cls(**dict(cfg), dataset=dataset)

    def __call__(self, x: Tensor, seed: int) -> Tensor:
        """``x`` (N, C, H, W) in [0, 1] with a random share of its images corrupted; draws come from ``seed``."""
        generator = make_generator(seed, x.device)
        n = len(x)
        chosen = torch.rand(n, generator=generator, device=x.device) < self.p
        which = torch.randint(len(self.corruptions), (n,), generator=generator, device=x.device)
        severity = torch.randint(len(self.severities), (n,), generator=generator, device=x.device)
        out = x.clone()
        for c, corruption in enumerate(self.corruptions):
            for s, level in enumerate(self.severities):
                rows = (chosen & (which == c) & (severity == s)).nonzero().squeeze(1)
                if len(rows):
                    out[rows] = corruption(x[rows], level, generator=generator)
        return out

    def settings(self) -> dict:
        return {"p": self.p, "severities": self.severities, "set": self.set,
                "corruptions": [c.name for c in self.corruptions]}
