"""The corruption suite: every corruption of a set at every severity on each batch, metrics with bootstrap
confidence intervals, corruption errors relative to a baseline model.

:class:`CorruptionSuite` holds the settings (the ``corruptions`` config group); :meth:`CorruptionSuite.start`
opens a :class:`CorruptionPass` that takes one batch at a time (from :class:`~trixai.suites.runner.SuiteRun`, so
the test phase of ``trixai-train`` and ``trixai-eval`` share it). Corruptions run batched on the model's device,
seeded per (batch, corruption, severity), so a repeated evaluation draws the same noise.

Per corruption c and severity s: accuracy (top-1; exact match for multi-label), balanced accuracy (macro recall;
multi-label: mean over labels of (TPR + TNR) / 2 at 0.5, as MedMNIST-C) and macro AUROC, each with a percentile
bootstrap 95 % interval (one stratified index matrix for every cell: paired resamples). With E = 1 - accuracy:
CE_c = sum_s E_{s,c} / sum_s E^base_{s,c} and relative CE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^base_{s,c} -
E^base_clean) (ImageNet-C, Hendrycks & Dietterich 2019), mCE and relative mCE their means over c; with the
balanced error B = 1 - balanced accuracy: BE_c = mean_s B_{s,c} / mean_s B^base_{s,c} and rBE_c = (mean_s B_{s,c} -
B_clean) / (mean_s B^base_{s,c} - B^base_clean) (MedMNIST-C, Di Salvo et al. 2024). The baseline is another
model's ``corruptions.json`` with the same corruptions and severities.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from trixai.core.bootstrap import RESAMPLES, Bootstrap, point_estimates
from trixai.core.errors import TrixaiError
from trixai.core.frozen import frozen_eval
from trixai.core.metrics import (
    IGNORE_INDEX,
    THRESHOLD,
    macro_rank_metric,
    metric_targets,
    probabilities,
    weighted_metrics,
)
from trixai.robust.attacks.margins import is_fooled
from trixai.robust.corruptions import SEVERITIES, Corruption, corruption_set, default_set, describe, make_generator
from trixai.robust.corruptions.base import REFERENCE_SIZE

FORMAT = "trixai-corruptions/1"
METRICS = ("accuracy", "balanced_accuracy", "auroc")


def corruption_seed(seed: int, batch: int, corruption: int, severity: int) -> int:
    """The generator seed of one (batch, corruption, severity) cell."""
    return ((int(seed) * 1_000_003 + batch) * 1024 + corruption) * 8 + severity


@dataclass
class CorruptionSuite:
    """``set``: ``dermoscopy`` | ``chest_xray`` | ``generic`` | ``auto`` (the dataset's modality: ``dataset``);
    ``only``: a subset of the set; ``severities``: of 1-5; ``max_points``: only the first N points; ``seed``;
    ``bootstrap``: resamples of the 95 % intervals (0: none); ``baseline``: a baseline model's corruptions.json
    (or its run directory) for CE/mCE/BE/rBE; ``explanation_severity``: the severity at which the explanation
    suite compares CAMs of clean and corrupted images (null: not); ``gallery_severities``: columns of the gallery.
    """

    set: str = "auto"
    only: list[str] | None = None
    severities: list[int] = field(default_factory=lambda: list(SEVERITIES))
    max_points: int | None = None
    seed: int = 0
    bootstrap: int = RESAMPLES
    baseline: str | None = None
    explanation_severity: int | None = 3
    gallery_severities: list[int] = field(default_factory=lambda: [1, 3, 5])
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
        allowed = set(cls.__dataclass_fields__) - {"dataset"}
        unknown = sorted(set(cfg) - allowed)
        if unknown:
            raise TrixaiError(f"corruptions has unknown keys {unknown}; allowed: {sorted(allowed)}")
        cfg.setdefault("seed", seed)
        return cls(**cfg, dataset=dataset)

    def settings(self) -> dict:
        return {"set": self.set, "severities": self.severities, "seed": self.seed, "max_points": self.max_points,
                "reference_size": REFERENCE_SIZE, "corruptions": describe(self.corruptions)}

    def corrupt(self, images: Tensor, severity: int) -> dict[str, Tensor]:
        """Every corruption of ``images`` at ``severity`` (seeded as the suite's batch 0): the explanation suite's
        stability under corruption."""
        return {name: c(images, severity, generator=make_generator(corruption_seed(self.seed, 0, i, severity),
                                                                   images.device))
                for i, (name, c) in enumerate(self.corruptions.items())}

    def start(self, model: nn.Module, *, device: torch.device | str | None = None) -> CorruptionPass:
        return CorruptionPass(self, model, device=device)


class CorruptionPass:
    """Runs the suite batch by batch (:meth:`update`) and assembles the evaluation (:meth:`finish`)."""

    def __init__(self, suite: CorruptionSuite, model: nn.Module, *, device: torch.device | str | None) -> None:
        self.suite, self.model = suite, model
        self.device = torch.device(device) if device is not None else None
        self.batches = self.points = 0
        self.clean: list[Tensor] = []
        self.logits: dict[tuple[str, int], list[Tensor]] = {(c, s): [] for c in suite.corruptions
                                                            for s in suite.severities}
        self.targets: list[Tensor] = []
        self.masks: list[Tensor | None] = []
        self.first_image: Tensor | None = None

    @property
    def done(self) -> bool:
        return self.suite.max_points is not None and self.points >= self.suite.max_points

    def update(self, x: Tensor, y: Tensor, label_mask: Tensor | None = None) -> None:
        """Clean and every (corruption, severity) on this batch."""
        if self.done:
            return
        if self.suite.max_points is not None:
            keep = min(len(y), self.suite.max_points - self.points)
            x, y, label_mask = x[:keep], y[:keep], None if label_mask is None else label_mask[:keep]
        self.device = self.device or next(self.model.parameters()).device
        x = x.to(self.device)
        if self.first_image is None:
            self.first_image = x[:1].detach().cpu()
        with frozen_eval(self.model), torch.no_grad():
            self.clean.append(self.model(x).float().cpu())
            for i, (name, corruption) in enumerate(self.suite.corruptions.items()):
                for s in self.suite.severities:
                    generator = make_generator(corruption_seed(self.suite.seed, self.batches, i, s), self.device)
                    self.logits[(name, s)].append(self.model(corruption(x, s, generator=generator)).float().cpu())
        self.targets.append(y.cpu())
        self.masks.append(None if label_mask is None else label_mask.cpu())
        self.batches += 1
        self.points += len(y)

    def finish(self) -> dict:
        """The evaluation (JSON-ready): clean, every corruption x severity, summaries, baseline-relative errors."""
        if not self.batches:
            raise TrixaiError("the evaluation loader yielded no batches (empty split?)")
        suite = self.suite
        targets = torch.cat(self.targets)
        label_mask = None if any(m is None for m in self.masks) else torch.cat(self.masks)
        clean_logits = torch.cat(self.clean)
        task = getattr(self.model, "task", "multiclass")
        class_names = list(getattr(self.model, "class_names", [])) or [str(i) for i in range(clean_logits.shape[1])]
        ints = metric_targets(targets, label_mask)
        boot = Bootstrap.draw(ints, suite.bootstrap, suite.seed) if suite.bootstrap else None

        def scored(logits: Tensor) -> dict:
            return score_cell(logits, targets, ints, task, boot)

        clean = scored(clean_logits)
        results: dict[str, dict[str, dict]] = {}
        for name in suite.corruptions:
            per = {str(s): scored(torch.cat(self.logits[(name, s)])) for s in suite.severities}
            results[name] = {**per, "mean": {k: sum(per[str(s)][k] for s in suite.severities) / len(per)
                                             for k in METRICS if all(per[str(s)][k] is not None for s in suite.severities)}}
        evaluation = {
            "format": FORMAT, "task": task, "class_names": class_names, "n_points": len(targets),
            "image_size": list(self.first_image.shape[-2:]), "severities": suite.severities,
            "corruptions": list(suite.corruptions), "set": suite.set, "seed": suite.seed,
            "bootstrap": None if boot is None else {"resamples": suite.bootstrap, "seed": suite.seed, "level": 0.95,
                                                    "method": "percentile", "strata": "class" if task == "multiclass"
                                                    else "rarest positive label"},
            "clean": clean, "results": results, "settings": suite.settings(),
        }
        evaluation.update(summarise(evaluation, load_baseline(suite.baseline, evaluation) if suite.baseline else None))
        return evaluation

    def gallery(self) -> tuple[Tensor, dict[str, dict[int, Tensor]]] | None:
        """The first image and its corrupted versions at the gallery severities."""
        if self.first_image is None:
            return None
        x = self.first_image
        return x[0], {name: {s: c(x, s, generator=make_generator(corruption_seed(self.suite.seed, 0, i, s), "cpu"))[0]
                             for s in self.suite.gallery_severities}
                      for i, (name, c) in enumerate(self.suite.corruptions.items())}


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
        return out

    return metrics


def score_cell(logits: Tensor, targets: Tensor, ints: Tensor, task: str, boot: Bootstrap | None) -> dict:
    """Accuracy, balanced accuracy, macro AUROC (None where undefined), errors, and ``_ci95`` intervals."""
    metrics = cell_metrics(logits, targets, ints, task)
    entry: dict = {k: (None if v != v else v) for k, v in point_estimates(metrics, len(targets)).items()}
    if boot is not None:
        entry.update(boot.intervals(metrics))
    entry["error"] = 1 - entry["accuracy"]
    entry["balanced_error"] = None if entry["balanced_accuracy"] is None else 1 - entry["balanced_accuracy"]
    return entry


def load_baseline(path: str | Path, evaluation: Mapping) -> dict:
    """The baseline's corruptions.json (a file or a run directory holding one), checked against ``evaluation``."""
    path = Path(str(path)).expanduser()
    path = path / "corruptions.json" if path.is_dir() else path
    if not path.is_file():
        raise TrixaiError(f"corruptions.baseline={str(path)!r}: no corruptions.json there (run trixai-eval "
                          f"corruptions=... on the baseline model first)")
    baseline = json.loads(path.read_text())
    if baseline.get("format") != FORMAT:
        raise TrixaiError(f"corruptions.baseline={str(path)!r} is not a {FORMAT} report")
    missing = [f"{c}@{s}" for c in evaluation["corruptions"] for s in evaluation["severities"]
               if str(s) not in baseline.get("results", {}).get(c, {})]
    if missing:
        raise TrixaiError(f"corruptions.baseline={str(path)!r} lacks {missing[:6]}{' ...' if len(missing) > 6 else ''}: "
                          "evaluate the baseline with the same corruption set and severities")
    baseline["path"] = str(path)
    return baseline


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def summarise(evaluation: Mapping, baseline: Mapping | None) -> dict:
    """Per-corruption summaries, means over corruptions, the worst corruption and baseline-relative errors."""
    severities = [str(s) for s in evaluation["severities"]]
    clean = evaluation["clean"]
    summary: dict[str, dict] = {}
    for name, per in evaluation["results"].items():
        errors = [per[s]["error"] for s in severities]
        balanced = [per[s]["balanced_error"] for s in severities]
        row = {"mean_accuracy": 1 - sum(errors) / len(errors), "mean_error": sum(errors) / len(errors),
               "relative_error": sum(e - clean["error"] for e in errors) / len(errors)}
        if None not in balanced and clean["balanced_error"] is not None:
            row["mean_balanced_error"] = sum(balanced) / len(balanced)
            row["relative_balanced_error"] = row["mean_balanced_error"] - clean["balanced_error"]
        if baseline is not None:
            base, base_clean = baseline["results"][name], baseline["clean"]
            base_errors = [base[s]["error"] for s in severities]
            row["ce"] = _ratio(sum(errors), sum(base_errors))
            row["relative_ce"] = _ratio(sum(e - clean["error"] for e in errors),
                                        sum(e - base_clean["error"] for e in base_errors))
            base_balanced = [base[s].get("balanced_error") for s in severities]
            if "mean_balanced_error" in row and None not in base_balanced and base_clean.get("balanced_error") is not None:
                mean_base = sum(base_balanced) / len(base_balanced)
                row["be"] = _ratio(row["mean_balanced_error"], mean_base)
                row["rbe"] = _ratio(row["relative_balanced_error"], mean_base - base_clean["balanced_error"])
        summary[name] = row

    def mean(key: str) -> float | None:
        values = [row.get(key) for row in summary.values()]
        return None if not values or None in values else sum(values) / len(values)

    worst = min(summary, key=lambda n: summary[n]["mean_accuracy"])
    return {
        "summary": summary,
        "mean_accuracy": mean("mean_accuracy"), "mean_error": mean("mean_error"),
        "mean_balanced_error": mean("mean_balanced_error"),
        "mce": mean("ce"), "relative_mce": mean("relative_ce"), "be": mean("be"), "rbe": mean("rbe"),
        "worst_corruption": {"name": worst, "mean_accuracy": summary[worst]["mean_accuracy"],
                             "accuracy_at_max_severity": evaluation["results"][worst][severities[-1]]["accuracy"]},
        "baseline": None if baseline is None else {"path": baseline["path"], "model": baseline.get("source", {}).get("model"),
                                                   "clean_error": baseline["clean"]["error"]},
    }


def flat_metrics(evaluation: Mapping) -> dict[str, float]:
    """``corruption/<name>/mean_accuracy`` and the suite's means (``corruption/mce`` with a baseline)."""
    flat = {"corruption/clean/accuracy": evaluation["clean"]["accuracy"]}
    for name, row in evaluation["summary"].items():
        flat[f"corruption/{name}/mean_accuracy"] = row["mean_accuracy"]
    for key in ("mean_accuracy", "mean_error", "mean_balanced_error", "mce", "relative_mce", "be", "rbe"):
        if evaluation.get(key) is not None:
            flat[f"corruption/{key}"] = float(evaluation[key])
    return flat


__all__ = ["FORMAT", "CorruptionPass", "CorruptionSuite", "corruption_seed", "flat_metrics", "label_balanced_accuracy",
           "load_baseline", "score_cell", "summarise"]
