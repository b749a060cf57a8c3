"""Decision margins shared by the AutoAttack family: when a point is fooled, and the losses that get it there.

Multiclass targets are int (N,): a point is fooled when ``argmax != y``. Multi-label targets are float (N, L)
with 1/0 per label and -1 (:data:`IGNORED`) for a label without a usable target (CheXpert's uncertain labels
under U-Ignore): a point is fooled when any kept label's thresholded prediction (logit > 0) differs from its target
("flip any label"); its margin is the smallest signed logit over the kept labels ``min_l (2 y_l - 1) z_l``. Ignored
labels never fool a point, never set its margin and are never chosen as targets while a kept label is left.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trixai.robust.losses import IGNORED, is_multilabel, kept_labels


def is_fooled(logits: Tensor, y: Tensor) -> Tensor:
    """Bool (N,): the prediction is wrong (multiclass) or at least one kept label is wrong (multi-label)."""
    if is_multilabel(y):
        return (((logits > 0) != (y > 0.5)) & kept_labels(y)).any(dim=1)
    return logits.argmax(dim=1) != y


def masked_targets(y: Tensor, label_mask: Tensor | None) -> Tensor:
    """Multi-label targets with the labels ``label_mask`` drops (0) set to :data:`IGNORED`; others unchanged."""
    if label_mask is None or not is_multilabel(y):
        return y
    return y.masked_fill(label_mask.to(y.device) == 0, IGNORED)


def margin(logits: Tensor, y: Tensor) -> Tensor:
    """Per-point margin, negative once fooled: ``z_y - max_{k != y} z_k`` or ``min_l (2 y_l - 1) z_l`` over the
    kept labels (+inf when none is kept)."""
    if is_multilabel(y):
        signed = torch.where(kept_labels(y), signed_label_margins(logits, y), float("inf"))
        return signed.min(dim=1).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return true - others.max(dim=1).values


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Untargeted DLR (Croce & Hein 2020), per point: ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``."""
    ranked = logits.sort(dim=1, descending=True).values
    return -margin(logits, y) / (ranked[:, 0] - ranked[:, 2] + 1e-12)


def targeted_dlr_loss(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR, per point: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``; needs >= 4 classes."""
    ranked = logits.sort(dim=1, descending=True).values
    diff = logits.gather(1, y[:, None]).squeeze(1) - logits.gather(1, target[:, None]).squeeze(1)
    return -diff / (ranked[:, 0] - 0.5 * (ranked[:, 2] + ranked[:, 3]) + 1e-12)


def targeted_ce_loss(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Targeted cross-entropy ascent loss, per point: ``-CE(z, t)`` (the few-class stand-in for targeted DLR)."""
    return -F.cross_entropy(logits, target, reduction="none")


def signed_label_margins(logits: Tensor, y: Tensor) -> Tensor:
    """Multi-label, (N, L): ``(2 y_l - 1) z_l``, positive while label ``l`` is right (ignored labels read as
    negatives here; :func:`margin` and :func:`target_order` leave them out)."""
    return (2 * y.clamp_min(0) - 1) * logits


def label_flip_loss(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Multi-label targeted loss, per point: minus the signed logit of the label ``target`` to flip."""
    return -signed_label_margins(logits, y).gather(1, target[:, None]).squeeze(1)


def target_count(requested: int, num_outputs: int, multilabel: bool) -> int:
    """Targets a targeted attack can use: at most C - 1 wrong classes, or L labels to flip."""
    return min(requested, num_outputs if multilabel else num_outputs - 1)


def target_order(logits: Tensor, y: Tensor, count: int) -> Tensor:
    """The ``count`` most likely wrong outcomes per point, most likely first, (N, count).

    Multiclass: the highest-scoring classes other than ``y``. Multi-label: the kept labels with the smallest
    signed margin (the labels easiest to flip); a point with fewer kept labels than ``count`` repeats its first.
    """
    if is_multilabel(y):
        kept = kept_labels(y)
        order = torch.where(kept, signed_label_margins(logits, y), float("inf")).argsort(dim=1, stable=True)[:, :count]
        usable = kept.gather(1, order) | ~kept.any(dim=1, keepdim=True)
        return torch.where(usable, order, order[:, :1])
    others = logits.scatter(1, y[:, None], float("-inf"))
    return others.argsort(dim=1, descending=True)[:, :count]

