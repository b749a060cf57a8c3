"""The certification suite: certified L2 radii of the smoothed classifier by randomized smoothing (the ``certify``
group of ``trixai-eval``), per-point records and the :class:`~trixai.core.reports.CertificationReport`.

Each point gets CERTIFY's class and radius (Cohen, Rosenfeld & Kolter 2019; :mod:`trixai.robust.smoothing`: n0
selection and n estimation samples, one-sided Clopper-Pearson bound at alpha, radius sigma * Phi^-1(p_A), abstain
below 1/2) and, with ``predict``, PREDICT's class. A point counts as certified at radius r when CERTIFY's class is its
label and its radius is at least r; abstentions count as wrong. Every noise draw derives from (seed, the point's index
in the split), so batching never changes a number. This is a guarantee for the smoothed classifier g, not for the
model f that the other suites attack (docs/robustness.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from trixai.core.errors import TrixaiError
from trixai.core.intervals import proportion_interval
from trixai.core.records import Records
from trixai.core.reports import Cell, CertificationReport
from trixai.core.settings import CertificationSettings, field_values, from_mapping
from trixai.robust.smoothing import ABSTAIN, Smoothing, certified_accuracy, linf_equivalent_radius
from trixai.suites.base import PointBatch, SuitePass

CURVE_POINTS = 51


@dataclass
class CertificationSuite(CertificationSettings):
    """The suite of the settings (:class:`~trixai.core.settings.CertificationSettings`) with ``seed``."""

    seed: int = 0

    def __post_init__(self) -> None:
        self.smoothing = Smoothing(sigma=float(self.sigma), n0=int(self.n0), n=int(self.n), alpha=float(self.alpha),
                                   max_rows=int(self.max_rows), seed=int(self.seed))
        if any(r < 0 for r in self.radii):
            raise TrixaiError(f"certify.radii={list(self.radii)}: radii are L2 distances, >= 0")

    @classmethod
    def from_config(cls, cfg, *, seed: int = 0) -> CertificationSuite | None:
        """The suite of a ``certify`` config (None: no certification); an unknown key is an error naming it."""
        if cfg is None:
            return None
        settings = from_mapping(CertificationSettings, dict(cfg), key="certify")
        return cls(**field_values(settings), seed=seed)

    def start(self, model: nn.Module, *, device: torch.device | str | None = None) -> CertificationPass:
        return CertificationPass(self, model, device=device)


class CertificationPass(SuitePass):
    """CERTIFY (and PREDICT) on each batch's points; the report from the records."""

    name = "certification"

    def __init__(self, suite: CertificationSuite, model: nn.Module, *, device: torch.device | str | None) -> None:
        super().__init__(model, max_points=suite.max_points, device=device)
        if getattr(model, "task", "multiclass") != "multiclass":
            raise TrixaiError("certify=smoothing certifies the arg-max of a multiclass model; this model is "
                              f"{model.task} (certify=none)")
        self.suite = suite
        self.dimension = 0

    def process(self, batch: PointBatch) -> None:
        x = self.to_device(batch)
        self.dimension = int(x[0].numel())
        start = time.perf_counter()
        certified = self.suite.smoothing.certify(self.model, x, batch.index)
        fields = {"targets": batch.target.cpu(), "certify/prediction": certified.prediction,
                  "certify/radius": certified.radius, "certify/p_lower": certified.p_lower,
                  "certify/n_a": certified.n_a}
        if self.suite.predict:
            predicted = self.suite.smoothing.predict(self.model, x, batch.index)
            fields |= {"predict/prediction": predicted.prediction, "predict/p_value": predicted.p_value}
        with torch.no_grad():
            fields["base/prediction"] = self.model(x).argmax(1).cpu()
        elapsed = time.perf_counter() - start
        fields["seconds"] = torch.full((len(batch),), elapsed / len(batch), dtype=torch.float64)
        self.builder.add(batch.index, fields)
        self.count(batch)

    def meta(self) -> dict:
        return {**super().meta(), "dimension": self.dimension}

    def finish(self, out_dir: Path) -> CertificationReport:
        return certification_report(self.records(), self.suite)


def certification_report(records: Records, suite: CertificationSuite) -> CertificationReport:
    """The report of the records: certified accuracy at every radius (a curve and the chosen radii, with their
    L-inf equivalents), abstain rate, PREDICT's accuracy, the base model's accuracy, the cost."""
    targets = records["targets"]
    prediction, radius = records["certify/prediction"], records["certify/radius"].double()
    n = len(targets)
    correct = prediction == targets
    dimension = int(records.meta.get("dimension") or 1)
    top = float(radius[correct].max()) if bool(correct.any()) else 0.0
    grid = torch.linspace(0.0, max(top, max(suite.radii, default=0.0), 1e-9), CURVE_POINTS).tolist()
    at = [{"radius": float(r), "linf_equivalent": float(linf_equivalent_radius(float(r), dimension)),
           "linf_equivalent_255": float(linf_equivalent_radius(float(r), dimension)) * 255,
           "certified_accuracy": value,
           "certified_accuracy_ci95": proportion_interval(round(value * n), n)}
          for r, value in zip(suite.radii, certified_accuracy(radius, correct, suite.radii), strict=True)]
    certified = int(correct.sum())
    smoothed = None
    if "predict/prediction" in records:
        right = int((records["predict/prediction"] == targets).sum())
        smoothed = Cell({"accuracy": right / n, "abstain_rate": float((records["predict/prediction"] == ABSTAIN)
                                                                         .double().mean())},
                        {"accuracy": proportion_interval(right, n)})
    seconds = float(records["seconds"].sum())
    return CertificationReport(
        sigma=float(suite.sigma), n0=int(suite.n0), n=int(suite.n), alpha=float(suite.alpha), n_points=n,
        dimension=dimension, at_radii=at,
        curve={"radius": grid, "certified_accuracy": certified_accuracy(radius, correct, grid)},
        abstain_rate=float((prediction == ABSTAIN).double().mean()),
        certified_accuracy=Cell({"accuracy": certified / n}, {"accuracy": proportion_interval(certified, n)}),
        smoothed_accuracy=smoothed, base_accuracy=float((records["base/prediction"] == targets).double().mean()),
        mean_radius=float(torch.where(correct, radius, 0.0).mean()),
        seconds_per_image=seconds / n if n and math.isfinite(seconds) else None, seed=suite.seed)


__all__ = ["CertificationPass", "CertificationSuite", "certification_report"]
