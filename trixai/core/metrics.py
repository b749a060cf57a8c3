"""Classification metrics for multiclass and multi-label tasks (clean and robust share one definition).

Training, validation and test log a torchmetrics collection (:func:`classification_metrics`); the rank metrics in it
(AUROC, AUPRC) are :class:`MacroRankMetric`, which leaves a class or label out of the macro mean when it is
undefined there (no positives or no negatives among the evaluated points; torchmetrics would count it as 0) and
warns naming it. :func:`weighted_metrics` computes the same metrics for many weightings of the points at once
(``weights`` (B, N): bootstrap resample counts, or ones for the point estimate) as batched tensors.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torchmetrics
from torch import Tensor
from torchmetrics import classification as tmc
from torchmetrics.utilities import dim_zero_cat

# Labels masked out (CheXpert U-Ignore) are passed to multi-label metrics as this value.
IGNORE_INDEX = -1
THRESHOLD = 0.5  # multi-label: a label is predicted positive when its probability exceeds this


def classification_metrics(task: str, num_classes: int, names: Sequence[str] | None = None
                           ) -> torchmetrics.MetricCollection:
    """Multiclass: acc, top2 (>2 classes), bal_acc (macro recall), f1 (macro), auroc (macro, one-vs-rest).

    Multi-label: auroc and auprc (macro), acc and f1 (macro over labels, threshold 0.5). Macro AUROC/AUPRC leave
    out (with a warning naming them, from ``names``) classes or labels that have no positives or no negatives.
    """
    names = list(names) if names is not None else [str(i) for i in range(num_classes)]
    if task == "multiclass":
        metrics = {
            "acc": tmc.MulticlassAccuracy(num_classes, average="micro"),
            "bal_acc": tmc.MulticlassRecall(num_classes, average="macro"),
            "f1": tmc.MulticlassF1Score(num_classes, average="macro"),
            "auroc": MacroRankMetric(task, "auroc", names),
        }
        if num_classes > 2:
            metrics["top2"] = tmc.MulticlassAccuracy(num_classes, top_k=2, average="micro")
        # no compute groups: torchmetrics merges metrics whose states agree after the first update, and a first
        # block where every target is the top-1 class would merge top2 into acc for good
        return torchmetrics.MetricCollection(metrics, compute_groups=False)
    kwargs = {"num_labels": num_classes, "average": "macro", "ignore_index": IGNORE_INDEX}
    return torchmetrics.MetricCollection({
        "auroc": MacroRankMetric(task, "auroc", names),
        "auprc": MacroRankMetric(task, "auprc", names),
        "acc": tmc.MultilabelAccuracy(**kwargs),
        "f1": tmc.MultilabelF1Score(**kwargs),
    }, compute_groups=False)


def in_top2(scores: Tensor, targets: Tensor) -> Tensor:
    """Multiclass: whether each point's target is among its two highest scores (N,) bool."""
    return (scores.topk(2, dim=1).indices == targets.long()[:, None]).any(1)


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


def one_vs_rest(probs: Tensor, targets: Tensor, task: str) -> tuple[Tensor, Tensor, Tensor]:
    """Per class/label (columns): scores (N, K), positives (N, K) and valid points (N, K) (not ``IGNORE_INDEX``)."""
    if task == "multiclass":
        positive = torch.nn.functional.one_hot(targets.long(), probs.shape[1]).bool()
        return probs, positive, torch.ones_like(positive)
    return probs, targets == 1, targets != IGNORE_INDEX


def weighted_auroc(scores: Tensor, positive: Tensor, weights: Tensor) -> Tensor:
    """Area under the ROC curve of ``scores`` (N,) for labels ``positive`` (N,) with point weights (B, N): the
    Mann-Whitney statistic, ties counted 1/2 (= the trapezoid ROC area, Hanley & McNeil 1982); NaN (B,) where the
    weighted points have no positives or no negatives."""
    gp, gn = _tie_groups(scores, positive, weights)
    negatives_below = gn.cumsum(1) - gn
    pos, neg = gp.sum(1), gn.sum(1)
    area = (gp * (negatives_below + 0.5 * gn)).sum(1)
    return torch.where((pos > 0) & (neg > 0), area / (pos * neg).clamp_min(1e-12), torch.nan)


def weighted_average_precision(scores: Tensor, positive: Tensor, weights: Tensor) -> Tensor:
    """Average precision ``sum_k (R_k - R_{k-1}) P_k`` over the distinct thresholds, highest first (the
    step-wise area under the precision-recall curve, as torchmetrics and scikit-learn compute it); NaN without
    positives or negatives (B,)."""
    gp, gn = _tie_groups(scores, positive, weights)
    tp, fp = gp.flip(1).cumsum(1), gn.flip(1).cumsum(1)
    pos, neg = gp.sum(1, keepdim=True), gn.sum(1, keepdim=True)
    precision = torch.where(tp + fp > 0, tp / (tp + fp).clamp_min(1e-12), 0.0)
    ap = (gp.flip(1) / pos.clamp_min(1e-12) * precision).sum(1)
    return torch.where((pos.squeeze(1) > 0) & (neg.squeeze(1) > 0), ap, torch.nan)


def _tie_groups(scores: Tensor, positive: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Weights of the positives and negatives per group of equal scores, groups in ascending order, (B, G) each."""
    scores, order = scores.float().sort()
    w = weights.index_select(1, order.to(weights.device))
    pos = positive[order].to(device=w.device, dtype=w.dtype)
    gp = w * pos
    gn = w - gp
    new = torch.ones_like(scores, dtype=torch.bool)
    new[1:] = scores[1:] != scores[:-1]
    if bool(new.all()):  # no ties: every point is its own group
        return gp, gn
    group = (new.long().cumsum(0) - 1).to(w.device)
    shape = (w.shape[0], int(group[-1]) + 1)
    return w.new_zeros(shape).index_add_(1, group, gp), w.new_zeros(shape).index_add_(1, group, gn)


def per_output_rank_metric(probs: Tensor, targets: Tensor, task: str, kind: str, weights: Tensor) -> Tensor:
    """AUROC or AUPRC (``kind``) of every class (one-vs-rest) or label, (B, K); NaN where undefined."""
    fn = weighted_auroc if kind == "auroc" else weighted_average_precision
    scores, positive, valid = one_vs_rest(probs, targets, task)
    return torch.stack([fn(scores[:, k], positive[:, k], weights * valid[:, k]) for k in range(scores.shape[1])], 1)


def per_output_auroc(probs: Tensor, targets: Tensor, task: str, names: Sequence[str]) -> dict[str, float | None]:
    """AUROC of every class (one-vs-rest) or label by name; None where undefined."""
    values = per_output_rank_metric(probs, targets, task, "auroc", probs.new_ones(1, len(probs)))[0]
    return {name: None if bool(v.isnan()) else float(v) for name, v in zip(names, values, strict=True)}


def undefined_outputs(probs: Tensor, targets: Tensor, task: str) -> list[int]:
    """Classes/labels without positives or without negatives among the (valid) points."""
    _, positive, valid = one_vs_rest(probs, targets, task)
    pos, total = (positive & valid).sum(0), valid.sum(0)
    return [k for k in range(positive.shape[1]) if not 0 < int(pos[k]) < int(total[k])]


def warn_undefined(probs: Tensor, targets: Tensor, task: str, names: Sequence[str], what: str = "AUROC/AUPRC") -> None:
    """Warn naming each class/label whose rank metrics are undefined and left out of the macro mean."""
    missing = undefined_outputs(probs, targets, task)
    if missing:
        _, positive, valid = one_vs_rest(probs, targets, task)
        kind, kinds = ("class", "classes") if task == "multiclass" else ("label", "labels")
        detail = ", ".join(f"{names[k]!r} ({'no positives' if not (positive & valid)[:, k].any() else 'no negatives'})"
                           for k in missing)
        warnings.warn(f"{what} undefined for {kind} {detail} among {len(targets)} points: left out of the macro "
                      f"mean ({positive.shape[1] - len(missing)} of {positive.shape[1]} {kinds} averaged)",
                      UndefinedMetricWarning, stacklevel=2)


class UndefinedMetricWarning(UserWarning):
    """A class or label has no positives or no negatives: its AUROC/AUPRC is undefined and left out."""


def macro_rank_metric(probs: Tensor, targets: Tensor, task: str, kind: str, weights: Tensor) -> Tensor:
    """Macro mean over the classes/labels where ``kind`` is defined, per weighting (B,); NaN when none is."""
    return per_output_rank_metric(probs, targets, task, kind, weights).nanmean(dim=1)


class MacroRankMetric(torchmetrics.Metric):
    """Macro AUROC or AUPRC (``kind``) over the classes/labels where it is defined (undefined ones are left out
    with a warning naming them), for the training, validation and test collections."""

    full_state_update = False

    def __init__(self, task: str, kind: str, names: Sequence[str]) -> None:
        super().__init__()
        self.task, self.kind, self.names = task, kind, list(names)
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, probs: Tensor, targets: Tensor) -> None:
        self.probs.append(probs.detach().float())
        self.targets.append(targets.detach())

    def compute(self) -> Tensor:
        probs, targets = dim_zero_cat(self.probs), dim_zero_cat(self.targets)
        warn_undefined(probs, targets, self.task, self.names, self.kind.upper())
        return macro_rank_metric(probs, targets, self.task, self.kind, probs.new_ones(1, len(probs)))[0]


def weighted_metrics(probs: Tensor, targets: Tensor, task: str, weights: Tensor) -> dict[str, Tensor]:
    """:func:`classification_metrics`' metrics (same names and definitions) for every row of ``weights`` (B, N)
    at once, (B,) each: ``weights`` = resample counts gives bootstrap replicates, ones the point estimate."""
    probs, weights = probs.float(), weights.float()
    if task == "multiclass":
        k = probs.shape[1]
        predicted = torch.nn.functional.one_hot(probs.argmax(1), k).float()
        actual = torch.nn.functional.one_hot(targets.long(), k).float()
        tp, pred_pos, act_pos = weights @ (predicted * actual), weights @ predicted, weights @ actual
        fp, fn = pred_pos - tp, act_pos - tp
        present = (tp + fp + fn) > 0  # torchmetrics' macro average leaves out classes never seen nor predicted
        total = weights.sum(1)
        out = {"acc": tp.sum(1) / total,
               "bal_acc": _present_mean(_safe(tp, tp + fn), present),
               "f1": _present_mean(_safe(2 * tp, 2 * tp + fp + fn), present),
               "auroc": macro_rank_metric(probs, targets, task, "auroc", weights)}
        if k > 2:
            out["top2"] = weights @ in_top2(probs, targets).float() / total
        return out
    valid = (targets != IGNORE_INDEX).float()
    actual, predicted = (targets == 1).float() * valid, (probs > THRESHOLD).float() * valid
    tp, pred_pos, act_pos, counted = (weights @ m for m in (predicted * actual, predicted, actual, valid))
    fp, fn = pred_pos - tp, act_pos - tp
    tn = counted - tp - fp - fn
    return {"auroc": macro_rank_metric(probs, targets, task, "auroc", weights),
            "auprc": macro_rank_metric(probs, targets, task, "auprc", weights),
            "acc": _safe(tp + tn, counted).mean(1),
            "f1": _safe(2 * tp, 2 * tp + fp + fn).mean(1)}


def _safe(num: Tensor, den: Tensor) -> Tensor:
    return torch.where(den > 0, num / den.clamp_min(1e-12), 0.0)


def _present_mean(values: Tensor, present: Tensor) -> Tensor:
    return _safe((values * present).sum(1), present.sum(1).float())
