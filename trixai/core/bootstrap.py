"""Percentile-bootstrap confidence intervals over test points (Efron & Tibshirani 1993, ch. 13).

The index matrix (B resamples × N points) is drawn once, stratified: each stratum (multiclass: the class;
multi-label: the point's rarest positive label, points without positives forming one stratum) keeps its size in
every resample. Metrics are then computed for all resamples at once from resample counts (B, N) as batched tensors
(:func:`trixai.core.metrics.weighted_metrics`): a resample with point ``i`` drawn ``c`` times is the weighting
``c_i``. The interval is the 2.5th and 97.5th percentiles of the B replicates (linear interpolation, as
``numpy.percentile``); replicates where the metric is undefined (NaN) are left out.
Reports put ``k_ci95: [low, high]`` beside every metric ``k``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

RESAMPLES = 1000
LEVEL = 0.95
SUFFIX = "_ci95"
CHUNK_ELEMENTS = 1 << 24  # resample counts per chunk (B_chunk × N), bounds memory on large test sets


def strata(targets: Tensor) -> Tensor:
    """Stratum per point: the class (int targets), or the rarest positive label (multi-label, (N, L) with 1 for
    positive; ``-1`` for points without a positive label)."""
    if not targets.is_floating_point() and targets.dim() == 1:
        return targets.long()
    positive = targets == 1
    frequency = positive.sum(0).float()
    rarity = torch.where(positive, frequency[None, :], torch.inf)
    rarest = rarity.argmin(1)
    return torch.where(positive.any(1), rarest, torch.full_like(rarest, -1))


def draw_indices(groups: Tensor, resamples: int = RESAMPLES, seed: int = 0) -> Tensor:
    """(resamples, N) point indices: every stratum of ``groups`` (N,) resampled with replacement to its size."""
    generator = torch.Generator().manual_seed(int(seed))
    groups = groups.cpu()
    columns = []
    for value in groups.unique(sorted=True):
        members = (groups == value).nonzero().squeeze(1)
        picks = torch.randint(len(members), (resamples, len(members)), generator=generator)
        columns.append(members[picks])
    return torch.cat(columns, 1) if columns else torch.empty(resamples, 0, dtype=torch.long)


def percentile_interval(values: Tensor, level: float = LEVEL) -> list[float] | None:
    """``[low, high]``: the (1 - level)/2 and (1 + level)/2 quantiles of the finite replicates; None if none."""
    values = values.double()
    values = values[torch.isfinite(values)]
    if values.numel() == 0:
        return None
    tail = (1 - level) / 2
    low, high = torch.quantile(values, torch.tensor([tail, 1 - tail], dtype=values.dtype))
    return [float(low), float(high)]


@dataclass(frozen=True)
class Bootstrap:
    """One index matrix (B, N) shared by every metric of an evaluation (paired resamples across attacks)."""

    indices: Tensor

    @classmethod
    def draw(cls, targets: Tensor, resamples: int = RESAMPLES, seed: int = 0) -> Bootstrap:
        """Stratified resamples of the points of ``targets`` (see :func:`strata`)."""
        return cls(draw_indices(strata(targets.cpu()), resamples, seed))

    @property
    def points(self) -> int:
        return self.indices.shape[1]

    def weights(self, device: torch.device | str = "cpu") -> Iterator[Tensor]:
        """Resample counts (b, N) chunk by chunk: how often each point was drawn in each resample."""
        rows = max(1, CHUNK_ELEMENTS // max(self.points, 1))
        for chunk in self.indices.split(rows):
            chunk = chunk.to(device)
            counts = torch.zeros(chunk.shape[0], self.points, device=device)
            yield counts.scatter_add_(1, chunk, torch.ones_like(chunk, dtype=counts.dtype))

    def replicates(self, metrics: Callable[[Tensor], dict[str, Tensor]], device: torch.device | str = "cpu"
                   ) -> dict[str, Tensor]:
        """Every metric of ``metrics(weights)`` ((b,) per name) on every resample, (B,) per name."""
        parts: dict[str, list[Tensor]] = {}
        for weights in self.weights(device):
            for name, values in metrics(weights).items():
                parts.setdefault(name, []).append(values.detach().cpu())
        return {name: torch.cat(chunks) for name, chunks in parts.items()}

    def intervals(self, metrics: Callable[[Tensor], dict[str, Tensor]], level: float = LEVEL,
                  device: torch.device | str = "cpu") -> dict[str, list[float] | None]:
        """``{name + "_ci95": [low, high]}`` for every metric of ``metrics(weights)``."""
        return {f"{name}{SUFFIX}": percentile_interval(values, level)
                for name, values in self.replicates(metrics, device).items()}


def point_estimates(metrics: Callable[[Tensor], dict[str, Tensor]], n: int, device: torch.device | str = "cpu"
                    ) -> dict[str, float]:
    """``metrics`` with every point weighted once (the metric on the evaluated set itself)."""
    return {name: float(values[0]) for name, values in metrics(torch.ones(1, n, device=device)).items()}
