"""Scores of one set of predictions (clean or under attack) against the targets, per task.

``accuracy`` is top-1 accuracy (multiclass) or exact-match accuracy, every label right (multi-label).
Multiclass adds top-2 (> 2 classes), balanced accuracy, macro F1 and per-class accuracy; multi-label adds
macro AUROC/AUPRC, macro F1, mean per-label accuracy and per-label accuracy.
Threshold metrics reuse :func:`trixai.core.metrics.classification_metrics`, the definitions used in training.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import classification as tmc

from trixai.core.metrics import IGNORE_INDEX, classification_metrics, metric_targets, probabilities
from trixai.robust.attacks.margins import is_fooled, margin


def score(logits: Tensor, targets: Tensor, clean_logits: Tensor, class_names: list[str], task: str,
          label_mask: Tensor | None = None) -> dict:
    """Metrics of ``logits`` (N, C) plus the attack success rate relative to ``clean_logits``."""
    logits, targets, clean_logits = logits.float().cpu(), targets.cpu(), clean_logits.float().cpu()
    probs, ints = probabilities(logits, task), metric_targets(targets, label_mask)
    collection = classification_metrics(task, len(class_names))
    values = {name: float(value) for name, value in collection(probs, ints).items()}
    fooled, clean_fooled = is_fooled(logits, targets), is_fooled(clean_logits, targets)
    initially_correct = int((~clean_fooled).sum())
    result = {"n": int(len(targets)), "accuracy": float((~fooled).float().mean()) if len(targets) else 0.0}
    if task == "multiclass":
        result["top2"] = values.get("top2")  # undefined (always 1) with two classes
        result["balanced_accuracy"] = values["bal_acc"]
        result["macro_f1"] = values["f1"]
        recall = tmc.MulticlassRecall(len(class_names), average=None)(probs, ints)
        result["per_class_accuracy"] = {name: float(v) for name, v in zip(class_names, recall, strict=True)}
    else:
        result["label_accuracy_macro"] = values["acc"]
        result["macro_f1"] = values["f1"]
        result["macro_auroc"] = values["auroc"]
        result["macro_auprc"] = values["auprc"]
        per_label = tmc.MultilabelAccuracy(len(class_names), average=None, ignore_index=IGNORE_INDEX)(probs, ints)
        result["per_label_accuracy"] = {name: float(v) for name, v in zip(class_names, per_label, strict=True)}
    result["initially_correct"] = initially_correct
    result["attack_success_rate"] = (float((fooled & ~clean_fooled).sum()) / initially_correct
                                     if initially_correct else 0.0)
    result["mean_margin"] = float(margin(logits, targets).mean()) if len(targets) else 0.0
    return result


def worst_case_logits(candidates: list[Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
    """Per point, the candidate (clean or an attack) that fools it first in list order, else the lowest margin.

    Returns ``(logits, chosen)`` with ``chosen`` the candidate index per point.
    """
    stacked = torch.stack([c.float() for c in candidates])
    fooled = torch.stack([is_fooled(c, targets) for c in stacked])
    margins = torch.stack([margin(c, targets) for c in stacked])
    order = torch.arange(len(candidates), dtype=torch.float32)[:, None].expand_as(margins)
    key = torch.where(fooled, order - 1e9, margins)
    chosen = key.argmin(dim=0)
    return stacked[chosen, torch.arange(len(targets))], chosen
