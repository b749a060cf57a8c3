"""Calibration and selective prediction of a classifier's confidence, for many weightings of the points at once.

- ECE (Guo et al. 2017, "On calibration of modern neural networks", ICML, eq. 3): M equal-width confidence bins
  ``I_m = ((m-1)/M, m/M]`` (right-closed; a confidence of exactly 0 counts in the first), ECE =
  ``sum_m |B_m|/n * |acc(B_m) - conf(B_m)|``, M = 15. ``binning="torchmetrics"`` is torchmetrics' binning
  (``_binning_bucketize``): left-closed bins ``[(m-1)/M, m/M)`` and one more bin holding the confidences equal to 1.
- Risk-coverage curve and AURC (Geifman & El-Yaniv 2017, "Selective classification for deep neural networks";
  Geifman et al. 2019, "Bias-reduced uncertainty estimation for deep neural classifiers", ICLR): points sorted by
  confidence, highest first; at coverage k/n the selective risk is the error rate among the k most confident points;
  AURC = mean of the risks over k = 1..n. Ties: points of equal confidence are one group (a threshold cannot split
  them). At the end of a group the risk is the threshold's risk; inside it, the expected risk over the orders of the
  tied points (their error count interpolated linearly). So AURC is the mean of AURC over random tie-breaks, and
  depends neither on the order of the input nor on how ties would be broken.

Every batched function takes ``weights`` (B, N) (bootstrap resample counts, or ones(1, N) for the point estimate, as
:func:`trixai.core.metrics.weighted_metrics`) and returns (B,) float64: a point drawn c times counts c times.
Multiclass: confidence = max softmax probability, correct = argmax == target. Multi-label: per label, confidence =
max(p, 1 - p) of its sigmoid probability p, correct = (p > 0.5) == y, masked labels left out; the reported ECE/AURC
is the mean over the labels of each label's value.
"""

from __future__ import annotations

import torch
from torch import Tensor

from trixai.core.errors import TrixaiError
from trixai.core.kinds import TASKS
from trixai.core.metrics import IGNORE_INDEX, THRESHOLD, metric_targets, probabilities

BINS = 15
BINNINGS = ("guo", "torchmetrics")


def ece(confidence: Tensor, correct: Tensor, weights: Tensor | None = None, bins: int = BINS,
        binning: str = "guo") -> Tensor:
    """Expected calibration error (Guo et al. 2017) of ``confidence`` (N,) against ``correct`` (N,) for every row
    of ``weights`` (B, N) (default: each point once), (B,); NaN where a row weighs no point.

    With weights, sum_m |B_m|/n * |acc - conf| = sum_m |sum_{i in B_m} w_i (correct_i - confidence_i)| / sum_i w_i.
    """
    weights = _weights(weights, confidence)
    index, slots = _bin_index(confidence, bins, binning)
    gap = correct.to(weights.device, torch.float64) - confidence.to(weights.device, torch.float64)
    per_bin = weights @ (torch.nn.functional.one_hot(index.to(weights.device), slots) * gap[:, None])
    return _ratio(per_bin.abs().sum(1), weights.sum(1))


def reliability(confidence: Tensor, correct: Tensor, bins: int = BINS, binning: str = "guo") -> dict[str, list]:
    """The data of a reliability diagram: per bin its ``lower`` and ``upper`` edge, ``count``, ``accuracy`` and mean
    ``confidence`` (None for an empty bin). ``binning="torchmetrics"`` adds the bin [1, 1]."""
    index, slots = _bin_index(confidence, bins, binning)
    index = index.cpu()
    count = torch.zeros(slots, dtype=torch.float64).index_add_(0, index, torch.ones(len(index), dtype=torch.float64))
    right = torch.zeros(slots, dtype=torch.float64).index_add_(0, index, correct.cpu().double())
    conf = torch.zeros(slots, dtype=torch.float64).index_add_(0, index, confidence.cpu().double())
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64).tolist()
    lower, upper = edges[:-1] + [1.0] * (slots - bins), edges[1:] + [1.0] * (slots - bins)
    return {"lower": lower, "upper": upper, "count": [int(c) for c in count],
            "accuracy": [float(r / c) if c > 0 else None for r, c in zip(right, count, strict=True)],
            "confidence": [float(s / c) if c > 0 else None for s, c in zip(conf, count, strict=True)]}


def risk_coverage(confidence: Tensor, correct: Tensor) -> tuple[Tensor, Tensor]:
    """Coverage k/n and selective risk (error rate of the k most confident points, ties as in the module
    docstring) for k = 1..n, (n,) float64 each."""
    n = len(confidence)
    order, group, groups = _descending_groups(confidence)
    errors = 1 - correct.cpu().double()[order]
    size = torch.zeros(groups, dtype=torch.float64).index_add_(0, group, torch.ones(n, dtype=torch.float64))
    wrong = torch.zeros_like(size).index_add_(0, group, errors)
    before, wrong_before = size.cumsum(0) - size, wrong.cumsum(0) - wrong
    k = torch.arange(1, n + 1, dtype=torch.float64)
    expected_errors = wrong_before[group] + (k - before[group]) * wrong[group] / size[group]
    return k / n, expected_errors / k


def aurc(confidence: Tensor, correct: Tensor, weights: Tensor | None = None) -> Tensor:
    """Area under the risk-coverage curve (Geifman et al. 2019): the mean selective risk over k = 1..n, for every
    row of ``weights`` (B, N), (B,); NaN where a row weighs no point.

    A group of tied points with weight g, weighted errors e, and m points (E errors) before it adds
    sum_{j=1..g} (E + j e/g) / (m + j) = e + (E - m e/g) (H(m + g) - H(m)), H the harmonic numbers
    (digamma(x + 1) + Euler's constant, which also serves non-integer weights).
    """
    weights = _weights(weights, confidence)
    order, group, groups = _descending_groups(confidence)
    order, group = order.to(weights.device), group.to(weights.device)
    w = weights.index_select(1, order)
    errors = 1 - correct.to(weights.device, torch.float64)[order]
    shape = (w.shape[0], groups)
    size = w.new_zeros(shape).index_add_(1, group, w)
    wrong = w.new_zeros(shape).index_add_(1, group, w * errors)
    before, wrong_before = size.cumsum(1) - size, wrong.cumsum(1) - wrong
    rate = torch.where(size > 0, wrong / size.clamp_min(1e-300), 0.0)
    harmonic = torch.digamma(before + size + 1) - torch.digamma(before + 1)
    return _ratio((wrong + (wrong_before - before * rate) * harmonic).sum(1), weights.sum(1))


def calibration_inputs(logits: Tensor, targets: Tensor, task: str, label_mask: Tensor | None = None
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """Per output (N, L): confidence, correct (bool) and valid (bool). Multiclass: one output (L = 1), the top
    label. Multi-label: one per label; a label is left out (valid False) where ``label_mask`` is 0 or its target
    is ``IGNORE_INDEX``."""
    if task not in TASKS:
        raise TrixaiError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    probs = probabilities(logits.detach().float(), task)
    if task == "multiclass":
        confidence, predicted = probs.max(1)
        correct = predicted == targets.to(predicted.device).long()
        return confidence[:, None], correct[:, None], torch.ones_like(correct)[:, None]
    targets = metric_targets(targets.to(probs.device))
    if label_mask is not None:  # also for integer targets, which metric_targets leaves alone
        targets = targets.masked_fill(label_mask.to(targets.device) == 0, IGNORE_INDEX)
    return torch.maximum(probs, 1 - probs), (probs > THRESHOLD) == (targets == 1), targets != IGNORE_INDEX


def per_output_calibration(logits: Tensor, targets: Tensor, task: str, weights: Tensor,
                           label_mask: Tensor | None = None, bins: int = BINS, binning: str = "guo"
                           ) -> dict[str, Tensor]:
    """``{"ece": (B, L), "aurc": (B, L)}``: each output of :func:`calibration_inputs` on its valid points."""
    confidence, correct, valid = calibration_inputs(logits, targets, task, label_mask)
    weights = weights.to(torch.float64)
    out: dict[str, list[Tensor]] = {"ece": [], "aurc": []}
    for k in range(confidence.shape[1]):
        w = weights * valid[:, k].to(weights.device)
        out["ece"].append(ece(confidence[:, k], correct[:, k], w, bins, binning))
        out["aurc"].append(aurc(confidence[:, k], correct[:, k], w))
    return {name: torch.stack(values, 1) for name, values in out.items()}


def calibration_metrics(logits: Tensor, targets: Tensor, task: str, weights: Tensor,
                        label_mask: Tensor | None = None, bins: int = BINS, binning: str = "guo"
                        ) -> dict[str, Tensor]:
    """``{"ece": (B,), "aurc": (B,)}`` for every row of ``weights`` (B, N), as
    :func:`trixai.core.metrics.weighted_metrics`: multiclass the top-label values, multi-label the mean over the
    labels with valid points of the per-label values."""
    return {name: values.nanmean(1) for name, values in
            per_output_calibration(logits, targets, task, weights, label_mask, bins, binning).items()}


def calibration_curves(logits: Tensor, targets: Tensor, task: str, label_mask: Tensor | None = None,
                       points: int = 101) -> dict:
    """The reliability diagram's bins and the risk-coverage curve (at most ``points`` coverages, evenly spaced) of
    the top label (multiclass) or of every kept (point, label) pair pooled (multi-label)."""
    confidence, correct, valid = calibration_inputs(logits, targets, task, label_mask)
    confidence, correct = confidence[valid].double(), correct[valid]
    coverage, risk = risk_coverage(confidence, correct)
    if len(coverage) > points:
        keep = torch.linspace(0, len(coverage) - 1, points).round().long()
        coverage, risk = coverage[keep], risk[keep]
    return {"reliability": reliability(confidence, correct),
            "risk_coverage": {"coverage": coverage.tolist(), "risk": risk.tolist()}}


def _weights(weights: Tensor | None, confidence: Tensor) -> Tensor:
    if weights is None:
        return torch.ones(1, len(confidence), dtype=torch.float64, device=confidence.device)
    if weights.dim() != 2 or weights.shape[1] != len(confidence):
        raise TrixaiError(f"weights must have shape (B, {len(confidence)}), got {tuple(weights.shape)}")
    return weights.to(torch.float64)


def _bin_index(confidence: Tensor, bins: int, binning: str) -> tuple[Tensor, int]:
    """Bin of every confidence and the number of bins (``bins``, or ``bins + 1`` with torchmetrics' binning)."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise TrixaiError(f"bins must be a positive integer, got {bins!r}")
    if binning not in BINNINGS:
        raise TrixaiError(f"binning must be one of {', '.join(BINNINGS)}, got {binning!r}")
    confidence = confidence.detach().contiguous()
    edges = torch.linspace(0, 1, bins + 1, dtype=confidence.dtype, device=confidence.device)
    if binning == "guo":
        return (torch.bucketize(confidence, edges) - 1).clamp(0, bins - 1), bins
    return torch.bucketize(confidence, edges, right=True) - 1, bins + 1


def _descending_groups(confidence: Tensor) -> tuple[Tensor, Tensor, int]:
    """The points by confidence, highest first, the tie group of each sorted point (0, 1, ...) and the number of
    groups."""
    values, order = confidence.detach().cpu().sort(descending=True, stable=True)
    new = torch.ones_like(values, dtype=torch.long)
    new[1:] = (values[1:] != values[:-1]).long()
    return order, new.cumsum(0) - 1, int(new.sum())


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.nan)
