"""The LightningModule: an objective for training; clean and robust metrics for validation and test."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch import Tensor
from torch.optim import Optimizer

from trixai.errors import TrixaiError
from trixai.metrics import IGNORE_INDEX, classification_metrics
from trixai.models.factory import TrixModel
from trixai.robust.attacks import Attack
from trixai.robust.objectives import Objective, Standard, cam_ssim


class TrixModule(L.LightningModule):
    """Trains ``model`` with ``objective`` (adversary ``attack``); scores clean and ``eval_attack`` metrics.

    Metrics are logged as ``{stage}/{name}`` (clean) and ``{stage}/rob_{name}`` (under ``eval_attack``).
    ``meta`` (the model.json content) is stored in every checkpoint so a ``.ckpt`` alone rebuilds the model.
    ``clean_warmup_epochs``: train with the standard objective for that many epochs before ``objective``;
    ``warmup_class_weights``: whether that warm-up uses ``class_weights`` too (``objective`` always does).
    ``channels_last``: model and image batches in that memory format (faster convolutions on CPU and GPU).
    ``cam_ssim_layer``: also log ``{stage}/cam_ssim``, the SSIM between Grad-CAM maps of clean and attacked
    images at that layer (same per-sample target: the label, or the top prediction for multi-label).
    """

    def __init__(self, model: TrixModel, objective: Objective, *, attack: Attack | None = None,
                 eval_attack: Attack | None = None, optimizer: Callable[..., Optimizer],
                 scheduler: Callable | None = None, scheduler_interval: str = "epoch",
                 class_weights: Tensor | None = None, robust_eval: bool = True,
                 clean_warmup_epochs: int = 0, warmup_class_weights: bool = True, cam_ssim_layer: str | None = None,
                 channels_last: bool = False) -> None:
        super().__init__()
        objective.check(attack)
        self.model, self.objective, self.warmup_objective = model, objective, Standard()
        self.clean_warmup_epochs, self.warmup_class_weights = int(clean_warmup_epochs), bool(warmup_class_weights)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.cam_ssim_layer = cam_ssim_layer
        self.attack, self.eval_attack = attack, eval_attack if robust_eval else None
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval = scheduler_interval
        self.register_buffer("class_weights", class_weights, persistent=False)
        metrics = classification_metrics(model.task, model.num_classes)
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics, self.val_robust = metrics.clone(prefix="val/"), metrics.clone(prefix="val/rob_")
        self.test_metrics, self.test_robust = metrics.clone(prefix="test/"), metrics.clone(prefix="test/rob_")
        self.meta: dict = {}

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def _scores(self, logits: Tensor) -> Tensor:
        return logits.softmax(dim=1) if self.model.task == "multiclass" else logits.sigmoid()

    @staticmethod
    def _metric_target(batch: dict) -> Tensor:
        target = batch["target"]
        if not target.is_floating_point():
            return target
        target = target.long()
        if "label_mask" in batch:
            target = target.masked_fill(batch["label_mask"] == 0, IGNORE_INDEX)
        return target

    def setup(self, stage: str) -> None:
        # before the strategy wraps the model (DDP) and the optimiser is built
        self.model.to(memory_format=self.memory_format)

    def _images(self, batch: dict) -> Tensor:
        return batch["image"].contiguous(memory_format=self.memory_format)

    def on_train_epoch_start(self) -> None:
        self.objective.set_epoch(self.current_epoch)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        warmup = self.current_epoch < self.clean_warmup_epochs
        objective = self.warmup_objective if warmup else self.objective
        weight = self.class_weights if self.warmup_class_weights or not warmup else None
        out = objective(self.model, self._images(batch), batch["target"], attack=self.attack, weight=weight,
                        label_mask=batch.get("label_mask"))
        if not torch.isfinite(out.loss):
            terms = ", ".join(f"{k}={v.item():.4g}" for k, v in out.terms.items())
            raise TrixaiError(
                f"non-finite training loss ({out.loss.item()}) at epoch {self.current_epoch}, global step "
                f"{self.global_step}, batch {batch_idx} [{terms}]: lower optimizer.lr or check the data"
            )
        batch_size = len(batch["image"])
        self.log("train/loss", out.loss, prog_bar=True, batch_size=batch_size)
        self.log_dict({f"train/{k}": v for k, v in out.terms.items()}, batch_size=batch_size)
        self.train_metrics.update(self._scores(out.logits.detach()), self._metric_target(batch))
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, batch_size=batch_size)
        return out.loss

    def _evaluate(self, batch: dict, stage: str) -> None:
        clean, robust = (self.val_metrics, self.val_robust) if stage == "val" else (self.test_metrics, self.test_robust)
        if torch.is_inference_mode_enabled():
            raise TrixaiError("robust metrics need gradients: set trainer.inference_mode=false")
        x, target = self._images(batch), self._metric_target(batch)
        clean.update(self._scores(self.model(x)), target)
        self.log_dict(clean, batch_size=len(x))
        if self.eval_attack is not None:
            x_adv = self.eval_attack(self.model, x, batch["target"])
            robust.update(self._scores(self.model(x_adv)), target)
            self.log_dict(robust, batch_size=len(x))
            if self.cam_ssim_layer is not None:
                similarity = cam_ssim(self.model, x, x_adv, batch["target"], self.cam_ssim_layer)[0]
                self.log(f"{stage}/cam_ssim", similarity.mean(), batch_size=len(x))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["trixai"] = self.meta
