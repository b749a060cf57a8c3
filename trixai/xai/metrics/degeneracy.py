"""Degenerate models: when the predictions barely depend on the input, faithfulness numbers mean nothing.

A model that predicts one class for nearly every point, or whose top probability is saturated for nearly
every point, gives deletion/insertion curves, confidence changes and pointing-game hits that describe its bias,
not its explanations (deletion AUC 1.0 and pointing game 1.0 were seen on a model trained for 2 steps). The
check flags such a model so that reports can mark those metrics uninformative.
"""

from __future__ import annotations

import torch
from torch import Tensor

MAX_CLASS_SHARE = 0.95
SATURATION = 0.999
MAX_SATURATED_SHARE = 0.95


def top_probability(logits: Tensor, task: str) -> Tensor:
    """Per-sample highest class probability: softmax (multiclass) or sigmoid (multi-label)."""
    probs = torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits.double(), dim=1)
    return probs.amax(dim=1).double()


def degeneracy(logits: Tensor, task: str = "multiclass", *, max_class_share: float = MAX_CLASS_SHARE,
               saturation: float = SATURATION, max_saturated_share: float = MAX_SATURATED_SHARE) -> dict:
    """Whether the model is degenerate on these (N, K) logits, with the evidence and a reason.

    Degenerate when the arg-max class is the same for >= ``max_class_share`` of the points, or the top
    probability is >= ``saturation`` for >= ``max_saturated_share`` of them.
    """
    logits = logits.detach()
    n = int(logits.shape[0])
    predicted = logits.argmax(dim=1)
    counts = torch.bincount(predicted, minlength=logits.shape[1])
    majority = int(counts.argmax())
    class_share = float(counts[majority]) / max(n, 1)
    saturated_share = float((top_probability(logits, task) >= saturation).double().mean()) if n else 0.0
    reasons = []
    if n and class_share >= max_class_share:
        reasons.append(f"class {majority} is predicted for {class_share:.1%} of the {n} points "
                       f"(>= {max_class_share:.0%})")
    if n and saturated_share >= max_saturated_share:
        reasons.append(f"the top probability is >= {saturation} for {saturated_share:.1%} of the {n} points "
                       f"(>= {max_saturated_share:.0%})")
    return {"degenerate": bool(reasons), "reason": "; ".join(reasons) or None, "n": n,
            "majority_class": majority, "majority_class_share": class_share, "saturated_share": saturated_share,
            "thresholds": {"max_class_share": max_class_share, "saturation": saturation,
                           "max_saturated_share": max_saturated_share}}
