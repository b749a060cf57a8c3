"""Scores of one set of predictions (clean or under attack) against the targets, per task, with bootstrap CIs.

``accuracy`` is top-1 accuracy (multiclass) or exact-match accuracy, every label right (multi-label); it and the
attack success rate come from ``accuracy_logits`` (where an attack may keep a point's first fooling example:
exact for accuracy). Every other metric comes from ``logits``, the full-budget attack on every point.
Multiclass adds top-2 (> 2 classes), balanced accuracy, macro F1, macro AUROC (one-vs-rest) and per-class
accuracy; multi-label adds macro AUROC/AUPRC, macro F1, mean per-label accuracy, per-label accuracy and AUROC.
The metric definitions are :func:`trixai.core.metrics.weighted_metrics`, those of training; undefined AUROCs
(no positives or no negatives) are left out of macro means with a warning. With a :class:`Bootstrap`, every
scalar ``k`` gets ``k_ci95: [low, high]``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import classification as tmc

from trixai.core.bootstrap import Bootstrap, point_estimates
from trixai.core.metrics import (
    IGNORE_INDEX,
    metric_targets,
    per_output_auroc,
    probabilities,
    undefined_outputs,
    warn_undefined,
    weighted_metrics,
)
from trixai.robust.attacks.margins import is_fooled, margin
from trixai.robust.losses import classification_loss

#: Report names of :func:`weighted_metrics`' metrics per task.
NAMES = {"multiclass": {"top2": "top2", "bal_acc": "balanced_accuracy", "f1": "macro_f1", "auroc": "macro_auroc"},
         "multilabel": {"acc": "label_accuracy_macro", "f1": "macro_f1", "auroc": "macro_auroc",
                        "auprc": "macro_auprc"}}


def score(logits: Tensor, targets: Tensor, clean_logits: Tensor, class_names: list[str], task: str,
          label_mask: Tensor | None = None, *, accuracy_logits: Tensor | None = None,
          bootstrap: Bootstrap | None = None) -> dict:
    """Metrics of ``logits`` (N, C) (accuracy and success rate from ``accuracy_logits``, default ``logits``)
    plus the attack success rate relative to ``clean_logits``; ``bootstrap``: add ``_ci95`` intervals."""
    logits, targets, clean_logits = logits.float().cpu(), targets.cpu(), clean_logits.float().cpu()
    accuracy_logits = logits if accuracy_logits is None else accuracy_logits.float().cpu()
    probs, ints = probabilities(logits, task), metric_targets(targets, label_mask)
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
        return out

    n = len(targets)
    if n:
        warn_undefined(probs, ints, task, class_names)
    result: dict = {"n": n, **(point_estimates(metrics, n) if n else {})}
    result["initially_correct"] = int(clean_right.sum())
    if task == "multiclass":
        recall = tmc.MulticlassRecall(len(class_names), average=None)(probabilities(accuracy_logits, task), ints)
        result["per_class_accuracy"] = {name: float(v) for name, v in zip(class_names, recall, strict=True)}
    else:
        per_label = tmc.MultilabelAccuracy(len(class_names), average=None, ignore_index=IGNORE_INDEX)(probs, ints)
        result["per_label_accuracy"] = {name: float(v) for name, v in zip(class_names, per_label, strict=True)}
    if n:
        key = "per_class_auroc" if task == "multiclass" else "per_label_auroc"
        result[key] = per_output_auroc(probs, ints, task, class_names)
        result["auroc_undefined"] = [class_names[k] for k in undefined_outputs(probs, ints, task)]
    if bootstrap is not None and n:
        result.update(bootstrap.intervals(metrics))
    return result


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


def highest_loss_logits(candidates: list[Tensor], targets: Tensor, label_mask: Tensor | None = None
                        ) -> tuple[Tensor, Tensor]:
    """Per point, the attack output with the highest attack loss (cross-entropy, or BCE summed over the labels
    kept by ``label_mask``): the worst case of every metric other than accuracy. Returns ``(logits, chosen)``."""
    stacked = torch.stack([c.float() for c in candidates])
    mask = None if label_mask is None else label_mask.to(stacked.device)
    losses = torch.stack([classification_loss(c, targets.to(c.device), reduction="none", label_mask=mask)
                          for c in stacked])
    chosen = losses.argmax(dim=0)
    return stacked[chosen, torch.arange(len(targets))], chosen
