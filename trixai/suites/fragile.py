"""The most fragile images of a robustness pass, kept while the batches stream by and drawn for report.html.

Fragility of a point the clean model gets right: how much the attack lowers the probability of its target
(multiclass: the target class's softmax probability; multi-label: the mean over the kept labels of the
probability of each label's target side). The ``k`` points with the largest drop are kept (ties: the lower split
index), with their clean and adversarial images, so the figure needs no second attack.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from trixai.core.formatting import eps_label
from trixai.core.records import Records
from trixai.robust.attacks.margins import is_fooled, masked_targets
from trixai.robust.losses import expected_hamming_loss
from trixai.suites.base import PointBatch
from trixai.xai import figures
from trixai.xai.explainers import GradCAM

FIGURE = "figures/fragile_images.png"


def target_probability(logits: Tensor, targets: Tensor, task: str) -> Tensor:
    """Per point, the probability the model gives its target (multi-label: mean over the kept labels, targets not
    -1, of the probability of the target side: one minus the expected Hamming loss)."""
    logits = logits.float()
    if task == "multiclass":
        return logits.softmax(dim=1).gather(1, targets.long()[:, None]).squeeze(1)
    return 1 - expected_hamming_loss(logits, targets)


@dataclass
class _Kept:
    drop: float
    index: int
    name: str
    target: Tensor
    clean: Tensor
    adversarial: Tensor
    clean_logits: Tensor
    adversarial_logits: Tensor


def cam_layer(model: nn.Module) -> str | None:
    """The layer the fragile images' maps use: the model's ``high`` (else ``final``) CAM preset, else its last
    convolution (a model without presets), None without one."""
    presets = getattr(model, "cam_layers", None) or {}
    for name in ("high", "final"):
        if name in presets:
            return name
    convolutions = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    return convolutions[-1] if convolutions else None


class FragileImages:
    """A running top-``k`` of the points by fragility (0 keeps nothing)."""

    def __init__(self, k: int, task: str) -> None:
        self.k, self.task = int(k), task
        self.kept: list[_Kept] = []

    def _drops(self, batch: PointBatch, clean_logits: Tensor, adversarial_logits: Tensor
               ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Each point's fragility and whether the clean model gets it right, with the masked targets and the logits
        on the CPU."""
        clean_logits, adversarial_logits = clean_logits.float().cpu(), adversarial_logits.float().cpu()
        target = masked_targets(batch.target, batch.label_mask).cpu()
        drop = (target_probability(clean_logits, target, self.task)
                - target_probability(adversarial_logits, target, self.task))
        return drop, ~is_fooled(clean_logits, target), target, clean_logits, adversarial_logits

    def _top(self, kept: list[_Kept]) -> list[_Kept]:
        return sorted(kept, key=lambda k: (-k.drop, k.index))[: self.k]

    def candidates(self, batch: PointBatch, clean_logits: Tensor, adversarial_logits: Tensor) -> Tensor:
        """The rows of the batch's own top ``k`` (the split's top ``k`` is among the blocks' top ``k``)."""
        drop, right = self._drops(batch, clean_logits, adversarial_logits)[:2]
        rows = right.nonzero().flatten().tolist()
        rows.sort(key=lambda r: (-float(drop[r]), int(batch.index[r])))
        return torch.tensor(rows[: self.k], dtype=torch.long)

    def add(self, batch: PointBatch, x: Tensor, x_adv: Tensor, clean_logits: Tensor, adversarial_logits: Tensor) -> None:
        """Offer the points of one batch (CPU tensors)."""
        if self.k <= 0:
            return
        drop, right, target, clean_logits, adversarial_logits = self._drops(batch, clean_logits, adversarial_logits)
        names = batch.name or tuple(str(int(i)) for i in batch.index)
        for row in right.nonzero().flatten().tolist():
            self.kept.append(_Kept(float(drop[row]), int(batch.index[row]), names[row], target[row], x[row].clone(),
                                   x_adv[row].clone(), clean_logits[row], adversarial_logits[row]))
        self.kept = self._top(self.kept)

    def records(self) -> Records:
        """The kept points as records (what a shard saves; the top ``k`` of the shards' kept points is the top ``k``
        of the whole split)."""
        if not self.kept:
            return Records(torch.empty(0, dtype=torch.long))
        fields = {"drop": torch.tensor([k.drop for k in self.kept], dtype=torch.float64),
                  **{name: torch.stack([getattr(k, name) for k in self.kept])
                     for name in ("target", "clean", "adversarial", "clean_logits", "adversarial_logits")}}
        return Records(torch.tensor([k.index for k in self.kept]), fields, {"names": [k.name for k in self.kept]})

    def restore(self, records: Records) -> None:
        """Keep the top ``k`` of merged :meth:`records`."""
        names = list(records.meta.get("names") or [])
        kept = [_Kept(float(records["drop"][i]), int(records.index[i]), names[i],
                      *(records[name][i] for name in ("target", "clean", "adversarial", "clean_logits",
                                                       "adversarial_logits")))
                for i in range(len(records))]
        self.kept = self._top(kept)

    def save(self, model: nn.Module, out_dir: Path, *, class_names: list[str], attack) -> str | None:
        """Draw the kept points (image, adversarial image, their Grad-CAM maps at the model's ``high`` layer);
        returns the figure's path relative to ``out_dir`` (None when nothing was kept)."""
        if not self.kept or attack is None:
            return None
        clean = torch.stack([k.clean for k in self.kept])
        adversarial = torch.stack([k.adversarial for k in self.kept])
        maps, maps_adv = self._maps(model, clean, adversarial)
        titles = [f"#{k.name} {self._label(k.target, class_names)}\n"
                  f"clean {self._prediction(k.clean_logits, class_names)}\n"
                  f"{attack.name} {eps_label(attack.attack.eps)}: {self._prediction(k.adversarial_logits, class_names)}"
                  for k in self.kept]
        path = Path(out_dir) / FIGURE
        path.parent.mkdir(parents=True, exist_ok=True)
        figures.save_gallery(path, clean, maps, titles, maps_adv=maps_adv, images_adv=adversarial)
        return FIGURE

    def _maps(self, model: nn.Module, clean: Tensor, adversarial: Tensor) -> tuple[Tensor, Tensor | None]:
        """Grad-CAM of the clean prediction on both images (at :func:`cam_layer`); a model that allows no hooks
        (TorchScript, ExportedProgram: its backbone says ``no_hooks``) or has no convolution gets blank maps."""
        if getattr(getattr(model, "backbone", None), "no_hooks", None):
            return torch.zeros(clean.shape[0], *clean.shape[-2:]), None
        device = next(model.parameters()).device
        layer = cam_layer(model)
        if layer is None:
            return torch.zeros(clean.shape[0], *clean.shape[-2:]), None
        explainer = GradCAM(layer=layer)
        targets = torch.stack([k.clean_logits.argmax() for k in self.kept]).to(device)
        return (explainer(model, clean.to(device), targets).maps.cpu(),
                explainer(model, adversarial.to(device), targets).maps.cpu())

    def _label(self, target: Tensor, class_names: list[str]) -> str:
        if self.task == "multiclass":
            return f"y={class_names[int(target)]}"
        positive = [class_names[i] for i in (target > 0.5).nonzero().flatten().tolist()]
        return "y=" + ("+".join(positive) if positive else "none")

    def _prediction(self, logits: Tensor, class_names: list[str]) -> str:
        if self.task == "multiclass":
            p = logits.softmax(0)
            top = int(p.argmax())
            return f"{class_names[top]} ({float(p[top]):.0%})"
        positive = [class_names[i] for i in (logits > 0).nonzero().flatten().tolist()]
        return "+".join(positive) if positive else "none"
