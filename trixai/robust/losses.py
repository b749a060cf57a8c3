"""Task-aware losses: cross-entropy for multiclass targets (int), BCE-with-logits for multi-label (float).

A multi-label target of -1 (:data:`IGNORED`) marks a label without a usable target (CheXpert's uncertain labels under
U-Ignore, applied to the targets by the suites): it is left out of the loss, as ``label_mask == 0`` is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORED = -1.0


def is_multilabel(target: Tensor) -> bool:
    """Multi-label targets are float (N, L) in {0, 1} (-1: ignored); multiclass targets are int (N,)."""
    return target.is_floating_point()


def kept_labels(target: Tensor) -> Tensor:
    """Bool (N, L): the multi-label targets that are not :data:`IGNORED`."""
    return target >= 0


def classification_loss(
    logits: Tensor,
    target: Tensor,
    *,
    reduction: str = "mean",
    weight: Tensor | None = None,
    label_mask: Tensor | None = None,
) -> Tensor:
    """CE (optionally class-weighted) or BCE-with-logits; ``label_mask`` (N, L) drops ignored labels.

    ``weight`` is the per-class weight for CE, or the positive weight per label for BCE.
    With ``reduction="none"`` the result is per sample (BCE summed over valid labels).
    """
    if not is_multilabel(target):
        return F.cross_entropy(logits, target, weight=weight, reduction=reduction)
    kept = kept_labels(target).to(logits.dtype)
    mask = kept if label_mask is None else kept * label_mask
    per_label = F.binary_cross_entropy_with_logits(logits, target.clamp_min(0), pos_weight=weight, reduction="none")
    if label_mask is not None or not bool(kept.all()):
        per_label = per_label * mask
        count = mask.sum()
    else:
        count = torch.tensor(float(per_label.numel()), device=logits.device)
    if reduction == "none":
        return per_label.sum(dim=1)
    if reduction == "sum":
        return per_label.sum()
    return per_label.sum() / count.clamp_min(1.0)


def expected_hamming_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Per point, the expected Hamming loss of the multi-label prediction: the mean over the kept labels of the
    probability the model puts on the wrong side, ``sigmoid((1 - 2 y_l) z_l)``. Bounded per label (a flipped label
    saturates at 1), so maximising it moves every label towards its wrong side — BCE, unbounded, keeps pushing
    labels already flipped and leaves the others, which is a weak attack on per-label ranking (AUROC)."""
    kept = kept_labels(target).to(logits.dtype)
    wrong = torch.sigmoid(torch.where(target > 0.5, -logits, logits))
    return (wrong * kept).sum(dim=1) / kept.sum(dim=1).clamp_min(1.0)


def attack_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Per point, the loss by which the suites rank attack outputs: cross-entropy (multiclass), the expected
    Hamming loss (multi-label, :func:`expected_hamming_loss`)."""
    if is_multilabel(target):
        return expected_hamming_loss(logits, target)
    return F.cross_entropy(logits, target, reduction="none")


def output_divergence(logits_adv: Tensor, logits_clean: Tensor, *, multilabel: bool) -> Tensor:
    """Per-sample KL(p_clean || p_adv): softmax over classes, or Bernoulli per label summed over labels.

    Both sides enter as log-probabilities: with the clean branch not detached (TRADES), ``kl_div(log q, p)``
    would back-propagate log p = -inf wherever a float32 softmax underflows to 0, and turn the step into NaN.
    """
    if not multilabel:
        return F.kl_div(F.log_softmax(logits_adv, dim=1), F.log_softmax(logits_clean, dim=1),
                        reduction="none", log_target=True).sum(dim=1)
    p = torch.sigmoid(logits_clean)
    log_p, log_1mp = F.logsigmoid(logits_clean), F.logsigmoid(-logits_clean)
    log_q, log_1mq = F.logsigmoid(logits_adv), F.logsigmoid(-logits_adv)
    return (p * (log_p - log_q) + (1 - p) * (log_1mp - log_1mq)).sum(dim=1)
