"""torchmetrics collections for multiclass and multi-label tasks (clean and robust share one definition)."""

from __future__ import annotations

import torchmetrics
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
