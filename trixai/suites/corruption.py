"""The corruption suite: every corruption of a set at every severity on each batch, metrics with bootstrap
confidence intervals, corruption errors relative to a baseline model.

:class:`CorruptionSuite` holds the settings (the ``corruptions`` config group); :meth:`CorruptionSuite.start`
opens a :class:`CorruptionPass` that takes one batch at a time (from :class:`~trixai.suites.runner.SuiteRun`, so
the test phase of ``trixai-train`` and ``trixai-eval`` share it). Corruptions run batched on the model's device,
seeded per (block of points, corruption, severity), so the batch size and the shards never change the noise.

Per corruption c and severity s: accuracy (top-1; exact match for multi-label), balanced accuracy (macro recall;
multi-label: mean over labels of (TPR + TNR) / 2 at 0.5, as MedMNIST-C), macro AUROC, and calibration (ECE, AURC),
each with a 95 % interval: the proportions' keep their coverage at 0 and 1 (Jeffreys; Brodersen et al. 2010 for
balanced accuracy), the others' are percentile-bootstrap intervals (one stratified index matrix for every cell:
paired resamples). With E = 1 - accuracy:
CE_c = sum_s E_{s,c} / sum_s E^base_{s,c} and relative CE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^base_{s,c} -
E^base_clean) (ImageNet-C, Hendrycks & Dietterich 2019), mCE and relative mCE their means over c; with the
balanced error B = 1 - balanced accuracy: BE_c = mean_s B_{s,c} / mean_s B^base_{s,c} and rBE_c = (mean_s B_{s,c} -
B_clean) / (mean_s B^base_{s,c} - B^base_clean) (MedMNIST-C, Di Salvo et al. 2024). The baseline is another
model's ``corruptions.json`` with the same corruptions and severities.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from trixai.core.bootstrap import SUFFIX, Bootstrap, point_estimates
from trixai.core.calibration import calibration_metrics
from trixai.core.errors import TrixaiError
from trixai.core.frozen import frozen_eval, memory_format
from trixai.core.metrics import (
    IGNORE_INDEX,
    THRESHOLD,
    macro_rank_metric,
    metric_targets,
    probabilities,
    weighted_metrics,
)
from trixai.core.records import Records
from trixai.core.reports import Cell, CorruptionReport, CorruptionSummary
from trixai.core.settings import CorruptionSettings, field_values, from_mapping
from trixai.robust.attacks.margins import is_fooled, masked_targets
from trixai.robust.corruptions import SEVERITIES, Corruption, corruption_set, default_set, describe, make_generator
from trixai.robust.corruptions.base import REFERENCE_SIZE
from trixai.suites.base import PointBatch, SuitePass, class_names_of
from trixai.suites.figures import GALLERY, save_corruption_gallery
from trixai.suites.scoring import proportion_intervals


def corruption_seed(seed: int, batch: int, corruption: int, severity: int) -> int:
    """The generator seed of one (block of points, corruption, severity) cell."""
    return ((int(seed) * 1_000_003 + batch) * 1024 + corruption) * 8 + severity


@dataclass
class CorruptionSuite(CorruptionSettings):
    """The suite of the settings (:class:`~trixai.core.settings.CorruptionSettings`, the ``corruptions`` group) with
    ``seed`` and ``dataset`` (the dataset's name: ``set: auto`` picks its modality's set)."""

    seed: int = 0
    dataset: str | None = None

    def __post_init__(self) -> None:
        self.set = default_set(self.dataset) if self.set == "auto" else self.set
        self.corruptions: dict[str, Corruption] = corruption_set(self.set, self.only)
        for key in ("severities", "gallery_severities"):
            values = [int(s) for s in getattr(self, key)]
            if not values or any(s not in SEVERITIES for s in values):
                raise TrixaiError(f"corruptions.{key}={values}: expected a non-empty list of values in {list(SEVERITIES)}")
            setattr(self, key, sorted(set(values)))
        if self.explanation_severity is not None and self.explanation_severity not in SEVERITIES:
            raise TrixaiError(f"corruptions.explanation_severity={self.explanation_severity!r}: expected one of "
                              f"{list(SEVERITIES)} or null")
        if self.max_points is not None and int(self.max_points) < 1:
            raise TrixaiError(f"corruptions.max_points={self.max_points}: expected a positive number of points or null")
        if int(self.bootstrap) < 0:
            raise TrixaiError(f"corruptions.bootstrap={self.bootstrap}: expected resamples >= 0")

    @classmethod
    def from_config(cls, cfg: Mapping | None, *, dataset: str | None = None, seed: int = 0) -> CorruptionSuite | None:
        """The suite of a ``corruptions`` config (None: no corruption suite)."""
        if cfg is None:
            return None
        cfg = dict(cfg)
        seed = int(cfg.pop("seed", seed))
        settings = from_mapping(CorruptionSettings, cfg, key="corruptions")
        return cls(**field_values(settings), seed=seed, dataset=dataset)

    def settings(self) -> dict:
        return {"set": self.set, "severities": self.severities, "seed": self.seed, "max_points": self.max_points,
                "reference_size": REFERENCE_SIZE, "corruptions": describe(self.corruptions)}

    def apply(self, images: Tensor, name: str, severity: int, block: int = 0) -> Tensor:
        """Corruption ``name`` of ``images`` at ``severity``, its noise seeded by (seed, ``block`` of points,
        corruption, severity)."""
        number = list(self.corruptions).index(name)
        generator = make_generator(corruption_seed(self.seed, block, number, severity), images.device)
        return self.corruptions[name](images, severity, generator=generator)

    def corrupt(self, images: Tensor, severity: int, block: int = 0) -> dict[str, Tensor]:
        """Every corruption of ``images`` at ``severity`` (seeded as the suite's ``block``): the explanation suite's
        stability under corruption."""
        return {name: self.apply(images, name, severity, block) for name in self.corruptions}

    def start(self, model: nn.Module, *, device: torch.device | str | None = None, channels_last: bool = False
              ) -> CorruptionPass:
        return CorruptionPass(self, model, device=device, channels_last=channels_last)


class CorruptionPass(SuitePass):
    """Runs the suite batch by batch (:meth:`update`), keeps per-point records and gives the report
    (:meth:`finish`)."""

    name = "corruptions"

    def __init__(self, suite: CorruptionSuite, model: nn.Module, *, device: torch.device | str | None,
                 channels_last: bool = False) -> None:
        super().__init__(model, max_points=suite.max_points, device=device, channels_last=channels_last)
        self.suite = suite
        self.first_image: Tensor | None = None
        self.first_index = 0

    def process(self, batch: PointBatch) -> None:
        """Clean and every (corruption, severity) on this batch."""
        x = batch.image.to(self.device)
        if self.first_image is None:
            self.first_image, self.first_index = x[:1].detach().cpu(), int(batch.index[0])
        fields: dict[str, Tensor] = {"targets": masked_targets(batch.target, batch.label_mask).cpu()}
        with frozen_eval(self.model), memory_format(self.model, self.channels_last), torch.no_grad():
            fields["clean/logits"] = self.model(x.contiguous(memory_format=self.memory_format)).float().cpu()
            for name in self.suite.corruptions:
                for s in self.suite.severities:
                    corrupted = self.suite.apply(x, name, s, self.block_of(batch))
                    corrupted = corrupted.contiguous(memory_format=self.memory_format)
                    fields[f"corruption/{name}/{s}/logits"] = self.model(corrupted).float().cpu()
        self.builder.add(batch.index, fields)
        self.count(batch)

    def meta(self) -> dict:
        return {**super().meta(), "image_size": None if self.first_image is None else list(self.first_image.shape[-2:])}

    def parts(self) -> dict[str, Records]:
        if self.restored is not None:
            return dict(self.restored)
        first = (Records(torch.empty(0, dtype=torch.long)) if self.first_image is None
                 else Records(torch.tensor([self.first_index]), {"image": self.first_image}))
        return {**super().parts(), f"{self.name}_first": first}

    def restore(self, parts: Mapping[str, Records]) -> None:
        super().restore(parts)
        first = parts[f"{self.name}_first"]
        self.first_image = first["image"][:1] if len(first) else None  # merged in split order: the split's first

    def finish(self, out_dir: Path) -> CorruptionReport:
        """The report of the records (and the gallery of the first image in ``out_dir``)."""
        records = self.records()
        outputs = int(records["clean/logits"].shape[1])
        report = corruption_report(records, self.suite, task=getattr(self.model, "task", "multiclass"),
                                   class_names=class_names_of(self.model, outputs))
        gallery = self.gallery()
        if gallery is not None:
            report.figures.append(save_corruption_gallery(*gallery, Path(out_dir) / GALLERY).relative_to(out_dir).as_posix())
        return report

    def gallery(self) -> tuple[Tensor, dict[str, dict[int, Tensor]]] | None:
        """The first image and its corrupted versions at the gallery severities."""
        if self.first_image is None:
            return None
        x = self.first_image
        return x[0], {name: {s: self.suite.apply(x, name, s)[0] for s in self.suite.gallery_severities}
                      for name in self.suite.corruptions}


def corruption_report(records: Records, suite: CorruptionSuite, *, task: str, class_names: list[str]
                      ) -> CorruptionReport:
    """The report of a corruption pass's records: clean, every cell, summaries, baseline-relative errors."""
    targets = records["targets"]  # multi-label: -1 marks an ignored label (label_mask applied)
    ints = metric_targets(targets)
    boot = Bootstrap.draw(ints, suite.bootstrap, suite.seed) if suite.bootstrap else None

    def scored(logits: Tensor) -> Cell:
        return score_cell(logits, targets, ints, task, boot)

    results = {name: {str(s): scored(records[f"corruption/{name}/{s}/logits"]) for s in suite.severities}
               for name in suite.corruptions}
    report = CorruptionReport(
        task=task, class_names=class_names, n_points=len(targets), image_size=list(records.meta.get("image_size") or []),
        set=suite.set, severities=list(suite.severities), corruptions=list(suite.corruptions),
        clean=scored(records["clean/logits"]), results=results, summary={}, worst_corruption={},
        settings=suite.settings(), seed=suite.seed,
        bootstrap=None if boot is None else {"resamples": suite.bootstrap, "seed": suite.seed, "level": 0.95,
                                             "method": "percentile", "strata": "class" if task == "multiclass"
                                             else "rarest positive label"})
    summarise(report, load_baseline(suite.baseline, report) if suite.baseline else None)
    return report


def label_balanced_accuracy(probs: Tensor, ints: Tensor, weights: Tensor) -> Tensor:
    """Mean over labels of (TPR + TNR) / 2 at the 0.5 threshold, per weighting (B,) (MedMNIST-C's multi-label
    balanced accuracy); masked labels (``IGNORE_INDEX``) are left out, a label without positives or negatives
    counts the defined rate alone."""
    valid = (ints != IGNORE_INDEX).float()
    actual, predicted = (ints == 1).float() * valid, (probs > THRESHOLD).float() * valid
    tp, positives = weights @ (predicted * actual), weights @ actual
    tn, negatives = weights @ ((1 - predicted) * (valid - actual)), weights @ (valid - actual)
    tpr = torch.where(positives > 0, tp / positives.clamp_min(1e-12), torch.nan)
    tnr = torch.where(negatives > 0, tn / negatives.clamp_min(1e-12), torch.nan)
    return torch.stack([tpr, tnr]).nanmean(0).nanmean(1)


def cell_metrics(logits: Tensor, targets: Tensor, ints: Tensor, task: str) -> Callable[[Tensor], dict[str, Tensor]]:
    """The suite's metrics of one cell as a function of point weights (B, N) -> (B,) each."""
    probs = probabilities(logits.float(), task)
    correct = (~is_fooled(logits.float(), targets)).float()

    def metrics(weights: Tensor) -> dict[str, Tensor]:
        out = {"accuracy": weights @ correct / weights.sum(1)}
        if task == "multiclass":
            m = weighted_metrics(probs, ints, task, weights)
            out["balanced_accuracy"], out["auroc"] = m["bal_acc"], m["auroc"]
        else:
            out["balanced_accuracy"] = label_balanced_accuracy(probs, ints, weights)
            out["auroc"] = macro_rank_metric(probs, ints, task, "auroc", weights)
        return out | {k: v.float() for k, v in calibration_metrics(logits, targets, task, weights).items()}

    return metrics


def score_cell(logits: Tensor, targets: Tensor, ints: Tensor, task: str, boot: Bootstrap | None) -> Cell:
    """Accuracy, balanced accuracy, macro AUROC (None where undefined), ECE and AURC, errors, and their intervals
    (proportions: :func:`~trixai.suites.scoring.proportion_intervals`; the others: the percentile bootstrap)."""
    metrics = cell_metrics(logits, targets, ints, task)
    values: dict = {k: (None if v != v else v) for k, v in point_estimates(metrics, len(targets)).items()}
    values["error"] = 1 - values["accuracy"]
    values["balanced_error"] = None if values["balanced_accuracy"] is None else 1 - values["balanced_accuracy"]
    intervals = {}
    if boot is not None:
        intervals = {k.removesuffix(SUFFIX): v for k, v in boot.intervals(metrics).items()}
        correct = ~is_fooled(logits.float(), targets)
        proportions = proportion_intervals(correct, targets, task, classes=logits.shape[1])
        intervals |= {k: v for k, v in proportions.items() if k in ("accuracy", "balanced_accuracy")}
    return Cell(values, intervals)


def load_baseline(path: str | Path, report: CorruptionReport) -> CorruptionReport:
    """The baseline's corruptions.json (a file or a run directory holding one), checked against ``report``."""
    path = Path(str(path)).expanduser()
    path = path / "corruptions.json" if path.is_dir() else path
    if not path.is_file():
        raise TrixaiError(f"corruptions.baseline={str(path)!r}: no corruptions.json there (run trixai-eval "
                          f"corruptions=... on the baseline model first)")
    data = json.loads(path.read_text())
    if not str(data.get("format", "")).startswith("trixai-corruptions/"):
        raise TrixaiError(f"corruptions.baseline={str(path)!r} is not a trixai corruption report")
    missing = [f"{c}@{s}" for c in report.corruptions for s in report.severities
               if str(s) not in (data.get("results") or {}).get(c, {})]
    if missing:
        raise TrixaiError(f"corruptions.baseline={str(path)!r} lacks {missing[:6]}{' ...' if len(missing) > 6 else ''}: "
                          "evaluate the baseline with the same corruption set and severities")
    baseline = CorruptionReport.from_json({**data, "severities": report.severities})
    baseline.source = {**baseline.source, "path": str(path)}
    return baseline


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _mean(values: list[float | None]) -> float | None:
    return None if not values or None in values else sum(values) / len(values)


def summarise(report: CorruptionReport, baseline: CorruptionReport | None) -> None:
    """Fill ``report``'s per-corruption summaries, the means over corruptions, the worst corruption and the
    baseline-relative errors."""
    severities = [str(s) for s in report.severities]
    clean_error, clean_balanced = report.clean.get("error"), report.clean.get("balanced_error")
    for name, per in report.results.items():
        errors = [per[s].get("error") for s in severities]
        balanced = [per[s].get("balanced_error") for s in severities]
        row = CorruptionSummary(mean_accuracy=1 - sum(errors) / len(errors), mean_error=sum(errors) / len(errors),
                                relative_error=sum(e - clean_error for e in errors) / len(errors),
                                balanced_accuracy_mean=_mean([per[s].get("balanced_accuracy") for s in severities]),
                                auroc_mean=_mean([per[s].get("auroc") for s in severities]))
        if None not in balanced and clean_balanced is not None:
            row.mean_balanced_error = sum(balanced) / len(balanced)
            row.relative_balanced_error = row.mean_balanced_error - clean_balanced
        if baseline is not None:
            base, base_clean = baseline.results[name], baseline.clean
            base_errors = [base[s].get("error") for s in severities]
            row.ce = _ratio(sum(errors), sum(base_errors))
            row.relative_ce = _ratio(sum(e - clean_error for e in errors),
                                     sum(e - base_clean.get("error") for e in base_errors))
            base_balanced = [base[s].get("balanced_error") for s in severities]
            if row.mean_balanced_error is not None and None not in base_balanced \
                    and base_clean.get("balanced_error") is not None:
                mean_base = sum(base_balanced) / len(base_balanced)
                row.be = _ratio(row.mean_balanced_error, mean_base)
                row.rbe = _ratio(row.relative_balanced_error, mean_base - base_clean.get("balanced_error"))
        report.summary[name] = row

    def mean(key: str) -> float | None:
        return _mean([getattr(row, key) for row in report.summary.values()])

    report.mean_accuracy, report.mean_error = mean("mean_accuracy"), mean("mean_error")
    report.mean_balanced_error = mean("mean_balanced_error")
    report.mce, report.relative_mce, report.be, report.rbe = mean("ce"), mean("relative_ce"), mean("be"), mean("rbe")
    worst = min(report.summary, key=lambda n: report.summary[n].mean_accuracy)
    report.worst_corruption = {"name": worst, "mean_accuracy": report.summary[worst].mean_accuracy,
                               "accuracy_at_max_severity": report.results[worst][severities[-1]].get("accuracy")}
    report.baseline = None if baseline is None else {
        "path": baseline.source.get("path"), "model": baseline.source.get("model"),
        "clean_error": baseline.clean.get("error")}


__all__ = ["CorruptionPass", "CorruptionSuite", "corruption_report", "corruption_seed", "label_balanced_accuracy",
           "load_baseline", "score_cell", "summarise"]
