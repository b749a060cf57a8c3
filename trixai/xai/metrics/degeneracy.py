"""Degenerate models: when the predictions barely depend on the input, faithfulness numbers mean nothing.

A model that predicts one class for nearly every point, or whose top probability is saturated for nearly
every point, gives deletion/insertion curves, confidence changes and pointing-game hits that describe its bias,
not its explanations (deletion AUC 1.0 and pointing game 1.0 were seen on a model trained for 2 steps). The
check flags such a model so that reports can mark those metrics uninformative.

Both criteria are shares of the points, so they are judged only from ``min_points`` (30) points on: a handful of
explained samples, often of one class, says nothing about the model. For points drawn independently from a model
that predicts one class for 80 % of its inputs, the chance that >= 95 % of them share that class is 41 % at
n = 4 and 1.1 % at n = 30 (binomial tail). Pass the predictions of the whole evaluated set (e.g. the clean logits
of the robustness pass over every test point), not only those of the explained samples.
"""

from __future__ import annotations

import torch
from torch import Tensor

MAX_CLASS_SHARE = 0.95
SATURATION = 0.999
MAX_SATURATED_SHARE = 0.95
MIN_POINTS = 30


def top_probability(logits: Tensor, task: str) -> Tensor:
    """Per-sample highest class probability: softmax (multiclass) or sigmoid (multi-label)."""
    probs = torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits.double(), dim=1)
    return probs.amax(dim=1).double()


def degeneracy(logits: Tensor, task: str = "multiclass", *, min_points: int = MIN_POINTS,
               max_class_share: float = MAX_CLASS_SHARE, saturation: float = SATURATION,
               max_saturated_share: float = MAX_SATURATED_SHARE) -> dict:
    """Whether the model is degenerate on these (N, K) logits, with the evidence and a reason.

    Degenerate when the arg-max class is the same for >= ``max_class_share`` of the points, or the top
    probability is >= ``saturation`` for >= ``max_saturated_share`` of them. With fewer than ``min_points`` points
    nothing is judged: ``judged`` is False, ``degenerate`` False and ``reason`` says "not judged: too few points".
    """
    logits = logits.detach()
    n = int(logits.shape[0])
    predicted = logits.argmax(dim=1)
    counts = torch.bincount(predicted, minlength=logits.shape[1])
    majority = int(counts.argmax())
    class_share = float(counts[majority]) / max(n, 1)
    saturated_share = float((top_probability(logits, task) >= saturation).double().mean()) if n else 0.0
    judged = n >= min_points
    reasons = []
    if judged and class_share >= max_class_share:
        reasons.append(f"class {majority} is predicted for {class_share:.1%} of the {n} points "
                       f"(>= {max_class_share:.0%})")
    if judged and saturated_share >= max_saturated_share:
        reasons.append(f"the top probability is >= {saturation} for {saturated_share:.1%} of the {n} points "
                       f"(>= {max_saturated_share:.0%})")
    reason = "; ".join(reasons) if judged else f"not judged: too few points (n={n} < {min_points})"
    return {"degenerate": bool(reasons), "judged": judged, "reason": reason or None, "n": n,
            "majority_class": majority, "majority_class_share": class_share, "saturated_share": saturated_share,
            "thresholds": {"min_points": min_points, "max_class_share": max_class_share, "saturation": saturation,
                           "max_saturated_share": max_saturated_share}}
