"""torchmetrics collections for multiclass and multi-label tasks (clean and robust share one definition)."""

from __future__ import annotations

import torchmetrics
from torch import Tensor
from torchmetrics import classification as tmc

# Labels masked out (CheXpert U-Ignore) are passed to multi-label metrics as this value.
IGNORE_INDEX = -1


def classification_metrics(task: str, num_classes: int) -> torchmetrics.MetricCollection:
    """Multiclass: acc, top2 (>2 classes), bal_acc (macro recall), f1 (macro), auroc (macro, one-vs-rest).

    Multi-label: auroc and auprc (macro), acc and f1 (macro over labels, threshold 0.5).
    """
    if task == "multiclass":
        metrics = {
            "acc": tmc.MulticlassAccuracy(num_classes, average="micro"),
            "bal_acc": tmc.MulticlassRecall(num_classes, average="macro"),
            "f1": tmc.MulticlassF1Score(num_classes, average="macro"),
            "auroc": tmc.MulticlassAUROC(num_classes, average="macro"),
        }
        if num_classes > 2:
            metrics["top2"] = tmc.MulticlassAccuracy(num_classes, top_k=2, average="micro")
        return torchmetrics.MetricCollection(metrics)
    kwargs = {"num_labels": num_classes, "average": "macro", "ignore_index": IGNORE_INDEX}
    return torchmetrics.MetricCollection({
        "auroc": tmc.MultilabelAUROC(**kwargs),
        "auprc": tmc.MultilabelAveragePrecision(**kwargs),
        "acc": tmc.MultilabelAccuracy(**kwargs),
        "f1": tmc.MultilabelF1Score(**kwargs),
    })


def primary_metric(task: str) -> str:
    """The metric that ranks checkpoints: accuracy (multiclass) or macro AUROC (multi-label)."""
    return "acc" if task == "multiclass" else "auroc"


def probabilities(logits: Tensor, task: str) -> Tensor:
    """Softmax (multiclass) or sigmoid (multi-label), so metrics never guess whether inputs are logits."""
    return logits.softmax(dim=1) if task == "multiclass" else logits.sigmoid()


def metric_targets(targets: Tensor, label_mask: Tensor | None = None) -> Tensor:
    """Integer targets for torchmetrics; multi-label labels masked out (U-Ignore) become ``IGNORE_INDEX``."""
    if not targets.is_floating_point():
        return targets
    targets = targets.round().long()
    return targets if label_mask is None else targets.masked_fill(label_mask == 0, IGNORE_INDEX)
