"""Scores of one set of predictions (clean or under attack) against the targets, per task, with bootstrap CIs.
Multi-label targets of -1 are ignored labels (the label mask applied): left out of every metric.

``accuracy`` is top-1 accuracy (multiclass) or exact-match accuracy, every label right (multi-label); it and the
attack success rate come from ``accuracy_logits`` (where an attack may keep a point's first fooling example:
exact for accuracy). Every other metric comes from ``logits``, the full-budget attack on every point.
Multiclass adds top-2 (> 2 classes), balanced accuracy, macro F1, macro AUROC (one-vs-rest) and per-class
accuracy; multi-label adds macro AUROC/AUPRC, macro F1, mean per-label accuracy, per-label accuracy and AUROC.
The metric definitions are :func:`trixai.core.metrics.weighted_metrics`, those of training; undefined AUROCs
(no positives or no negatives) are left out of macro means with a warning. Calibration of the same outputs
(:mod:`trixai.core.calibration`): ``ece`` (Guo et al. 2017, 15 equal-width bins; multi-label: mean of the per-label
ECEs) and ``aurc`` (the area under the risk-coverage curve, Geifman & El-Yaniv 2017), with the reliability diagram's
bins and the risk-coverage curve (``curves``). With a :class:`Bootstrap`, every scalar gets a 95 % interval
(``k_ci95: [low, high]`` in the JSON report): proportions keep their coverage at 0 and 1 (:func:`proportion_intervals`),
the other metrics take the percentile bootstrap.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import classification as tmc

from trixai.core.bootstrap import SUFFIX, Bootstrap, point_estimates
from trixai.core.calibration import calibration_curves, calibration_metrics, per_output_calibration
from trixai.core.intervals import mean_of_proportions_interval, proportion_interval
from trixai.core.metrics import (
    IGNORE_INDEX,
    in_top2,
    metric_targets,
    per_output_auroc,
    probabilities,
    undefined_outputs,
    warn_undefined,
    weighted_metrics,
)
from trixai.core.reports import Scores, finite_or_none
from trixai.robust.attacks.margins import is_fooled, margin
from trixai.robust.losses import attack_loss

#: Report names of :func:`weighted_metrics`' metrics per task.
NAMES = {"multiclass": {"top2": "top2", "bal_acc": "balanced_accuracy", "f1": "macro_f1", "auroc": "macro_auroc"},
         "multilabel": {"acc": "label_accuracy_macro", "f1": "macro_f1", "auroc": "macro_auroc",
                        "auprc": "macro_auprc"}}


def score(logits: Tensor, targets: Tensor, clean_logits: Tensor, class_names: list[str], task: str,
          *, accuracy_logits: Tensor | None = None,
          bootstrap: Bootstrap | None = None) -> Scores:
    """Metrics of ``logits`` (N, C) (accuracy and success rate from ``accuracy_logits``, default ``logits``)
    plus the attack success rate relative to ``clean_logits``; ``bootstrap``: add ``_ci95`` intervals."""
    logits, targets, clean_logits = logits.float().cpu(), targets.cpu(), clean_logits.float().cpu()
    accuracy_logits = logits if accuracy_logits is None else accuracy_logits.float().cpu()
    probs, ints = probabilities(logits, task), metric_targets(targets)
    robust = (~is_fooled(accuracy_logits, targets)).float()
    broken = (is_fooled(accuracy_logits, targets) & ~is_fooled(clean_logits, targets)).float()
    clean_right = (~is_fooled(clean_logits, targets)).float()
    margins = margin(logits, targets)
    names = NAMES[task]

    def metrics(weights: Tensor) -> dict[str, Tensor]:
        total = weights.sum(1)
        right = weights @ clean_right
        out = {"accuracy": weights @ robust / total,
               **{names[k]: v for k, v in weighted_metrics(probs, ints, task, weights).items() if k in names},
               "attack_success_rate": torch.where(right > 0, weights @ broken / right.clamp_min(1e-12), 0.0),
               "mean_margin": weights @ margins / total}
        return out | {k: v.float() for k, v in calibration_metrics(logits, targets, task, weights).items()}

    n = len(targets)
    if n:
        warn_undefined(probs, ints, task, class_names)
    result = Scores(point_estimates(metrics, n) if n else {}, n=n, initially_correct=int(clean_right.sum()))
    if task == "multiclass":
        recall = tmc.MulticlassRecall(len(class_names), average=None)(probabilities(accuracy_logits, task), ints)
        result.per_output["per_class_accuracy"] = {name: float(v) for name, v in zip(class_names, recall, strict=True)}
    else:
        per_label = tmc.MultilabelAccuracy(len(class_names), average=None, ignore_index=IGNORE_INDEX)(probs, ints)
        result.per_output["per_label_accuracy"] = {name: float(v) for name, v in zip(class_names, per_label, strict=True)}
    if n:
        key = "per_class_auroc" if task == "multiclass" else "per_label_auroc"
        result.per_output[key] = per_output_auroc(probs, ints, task, class_names)
        result.auroc_undefined = [class_names[k] for k in undefined_outputs(probs, ints, task)]
    if task == "multilabel":
        result.per_output["per_label_ece"] = dict(zip(class_names, (
            finite_or_none(v) for v in per_output_calibration(logits, targets, task, torch.ones(1, n))["ece"][0]),
            strict=True)) if n else {}
    result.curves = calibration_curves(logits, targets, task) if n else {}
    if bootstrap is not None and n:
        result.intervals = {k.removesuffix(SUFFIX): v for k, v in bootstrap.intervals(metrics).items()}
        proportions = proportion_intervals(robust.bool(), targets, task, classes=len(class_names),
                                           clean_right=clean_right.bool(), broken=broken.bool(),
                                           top2=_in_top2(probs, targets, task))
        result.intervals |= {k: v for k, v in proportions.items() if k != "per_class_accuracy"}
        if "per_class_accuracy" in proportions:
            result.per_output["per_class_accuracy_ci95"] = dict(zip(class_names, proportions["per_class_accuracy"],
                                                                    strict=True))
    return result


def _in_top2(probs: Tensor, targets: Tensor, task: str) -> Tensor | None:
    if task != "multiclass" or probs.shape[1] <= 2:
        return None
    return in_top2(probs, targets)


def proportion_intervals(correct: Tensor, targets: Tensor, task: str, *, classes: int,
                         clean_right: Tensor | None = None, broken: Tensor | None = None,
                         top2: Tensor | None = None) -> dict:
    """95 % intervals that keep their coverage at 0 and 1 (a stratified percentile bootstrap has zero width there):
    ``accuracy`` (top-1 or exact match), ``top2`` and ``attack_success_rate`` (broken among the clean-right points):
    Jeffreys intervals (Brown, Cai & DasGupta 2001); multiclass ``balanced_accuracy``: the posterior of the mean of
    the per-class Jeffreys posteriors (Brodersen et al. 2010); ``per_class_accuracy``: Jeffreys per class."""
    out: dict = {"accuracy": proportion_interval(int(correct.sum()), len(correct))}
    if top2 is not None:
        out["top2"] = proportion_interval(int(top2.sum()), len(top2))
    if broken is not None and clean_right is not None:
        out["attack_success_rate"] = proportion_interval(int((broken & clean_right).sum()), int(clean_right.sum()))
    if task == "multiclass":
        trials = torch.bincount(targets.long(), minlength=classes)
        successes = torch.bincount(targets.long(), weights=correct.double(), minlength=classes).round()
        out["balanced_accuracy"] = mean_of_proportions_interval(successes, trials)
        out["per_class_accuracy"] = [proportion_interval(int(x), int(k)) for x, k in zip(successes, trials, strict=True)]
    return out


def worst_case_logits(candidates: list[Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
    """Per point, the candidate (clean or an attack) that fools it first in list order, else the lowest margin:
    the worst case for accuracy. Returns ``(logits, chosen)`` with ``chosen`` the candidate index per point.
    """
    stacked = torch.stack([c.float() for c in candidates])
    fooled = torch.stack([is_fooled(c, targets) for c in stacked])
    margins = torch.stack([margin(c, targets) for c in stacked])
    order = torch.arange(len(candidates), dtype=torch.float32)[:, None].expand_as(margins)
    key = torch.where(fooled, order - 1e9, margins)
    chosen = key.argmin(dim=0)
    return stacked[chosen, torch.arange(len(targets))], chosen


def highest_loss_logits(candidates: list[Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
    """Per point, the attack output with the highest attack loss (cross-entropy; multi-label: the expected Hamming
    loss over the kept labels, targets not -1). Returns ``(logits, chosen)``."""
    stacked = torch.stack([c.float() for c in candidates])
    losses = torch.stack([attack_loss(c, targets.to(c.device)) for c in stacked])
    chosen = losses.argmax(dim=0)
    return stacked[chosen, torch.arange(len(targets))], chosen
