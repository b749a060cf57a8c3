"""The LightningModule: an objective for training; clean and robust metrics for validation and test."""

from __future__ import annotations

import math
from collections.abc import Callable

import lightning as L
import torch
from torch import Tensor
from torch.optim import Optimizer

from trixai.core.bootstrap import SUFFIX, Bootstrap
from trixai.core.errors import TrixaiError
from trixai.core.metrics import (
    classification_metrics,
    in_top2,
    metric_targets,
    per_output_auroc,
    probabilities,
    weighted_metrics,
)
from trixai.models.factory import TrixModel
from trixai.robust.attacks import Attack
from trixai.robust.corruptions.augment import CorruptionAugment
from trixai.suites.robustness import BatchResult, RobustnessSuite, seeded
from trixai.suites.runner import SuiteRun
from trixai.suites.scoring import proportion_intervals
from trixai.training.objectives import Objective, Standard, cam_ssim
from trixai.training.rng import rng_states, set_rng_states


def _proportion_intervals(scores: Tensor, targets: Tensor, task: str, classes: int) -> dict[str, list[float] | None]:
    """Multiclass ``acc``, ``top2`` and ``bal_acc`` intervals that keep their coverage at 0 and 1 (the suites'
    definition, :func:`~trixai.suites.scoring.proportion_intervals`), replacing their percentile-bootstrap intervals
    (multi-label ``acc`` is the mean per-label accuracy, not one proportion: it keeps the bootstrap)."""
    if task != "multiclass":
        return {}
    correct = scores.argmax(1) == targets
    top2 = in_top2(scores, targets) if classes > 2 else None
    out = proportion_intervals(correct, targets, task, classes=classes, top2=top2)
    names = {"accuracy": "acc", "top2": "top2", "balanced_accuracy": "bal_acc"}
    return {f"{names[k]}{SUFFIX}": v for k, v in out.items() if k in names}


class TrixModule(L.LightningModule):
    """Trains ``model`` with ``objective`` (adversary ``attack``); scores clean and ``eval_attack`` metrics.

    Metrics are logged as ``{stage}/{name}`` (clean) and ``{stage}/rob_{name}`` (under ``eval_attack``).
    ``meta`` (the model.json content) is stored in every checkpoint so a ``.ckpt`` alone rebuilds the model.
    ``clean_warmup_epochs``: train with the standard objective for that many epochs before ``objective``;
    ``warmup_class_weights``: whether that warm-up uses ``class_weights`` too (``objective`` always does).
    ``channels_last``: model and image batches in that memory format (faster convolutions on CPU and GPU).
    ``cam_ssim_layer``: also log ``{stage}/cam_ssim``, the SSIM between Grad-CAM maps of clean and attacked
    images at that layer (same per-sample target: the label, or the top prediction for multi-label).
    ``eval_seed``: random starts of ``eval_attack`` are drawn from ``eval_seed + batch index`` (global RNG untouched).
    ``corruption_augment``: corrupts a random share of each training batch on the device (``data.augment.corruptions``);
    its seed per step is drawn from the global generator, so seeded runs repeat.
    The test phase runs through ``test_suites`` (a :class:`~trixai.suites.runner.SuiteRun`; by default one with
    only ``eval_attack``): ``test/rob_*`` are the metrics of the suite's evaluation attack, from the same pass.
    After the test loop, :attr:`test_intervals` holds their bootstrap 95 % intervals (``acc_ci95``, ``rob_acc_ci95``)
    and the AUROC of every class/label (``auroc_per_class``/``auroc_per_label``, null where undefined).
    """

    def __init__(self, model: TrixModel, objective: Objective, *, attack: Attack | None = None,
                 eval_attack: Attack | None = None, optimizer: Callable[..., Optimizer],
                 scheduler: Callable | None = None,
                 class_weights: Tensor | None = None,
                 clean_warmup_epochs: int = 0, warmup_class_weights: bool = True, cam_ssim_layer: str | None = None,
                 channels_last: bool = False, eval_seed: int = 0,
                 corruption_augment: CorruptionAugment | None = None) -> None:
        super().__init__()
        objective.check(attack)
        self.model, self.objective, self.warmup_objective = model, objective, Standard()
        self.clean_warmup_epochs, self.warmup_class_weights = int(clean_warmup_epochs), bool(warmup_class_weights)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.cam_ssim_layer = cam_ssim_layer
        self.attack, self.eval_attack = attack, eval_attack
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.register_buffer("class_weights", class_weights, persistent=False)
        metrics = classification_metrics(model.task, model.num_classes, getattr(model, "class_names", None))
        self.train_metrics, self.train_robust = metrics.clone(prefix="train/"), metrics.clone(prefix="train/rob_")
        self.val_metrics, self.val_robust = metrics.clone(prefix="val/"), metrics.clone(prefix="val/rob_")
        self.test_metrics, self.test_robust = metrics.clone(prefix="test/"), metrics.clone(prefix="test/rob_")
        self.meta: dict = {}
        self.eval_seed = int(eval_seed)
        self.corruption_augment = corruption_augment
        self.test_suites: SuiteRun | None = None
        self.test_intervals: dict[str, list[float] | None] = {}
        self._test_points: dict[str, tuple[list[Tensor], list[Tensor]]] = {}
        self._test_cam_ssim: list[Tensor] = []
        self._after_step: Callable[[], None] | None = None

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def _scores(self, logits: Tensor) -> Tensor:
        return probabilities(logits, self.model.task)

    @staticmethod
    def _metric_target(batch: dict) -> Tensor:
        return metric_targets(batch["target"], batch.get("label_mask"))

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
        x = self._images(batch)
        if self.corruption_augment is not None:
            x = self.corruption_augment(x, seed=int(torch.randint(1 << 62, (1,))))
        out = objective(self.model, x, batch["target"], attack=self.attack, weight=weight,
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
        if out.adversarial_logits is not None:  # training robust accuracy (robust overfitting: Rice et al. 2020)
            self.train_robust.update(self._scores(out.adversarial_logits.detach()), self._metric_target(batch))
            self.log_dict(self.train_robust, on_step=False, on_epoch=True, batch_size=batch_size)
        self._after_step = out.restore
        return out.loss

    def on_fit_start(self) -> None:
        if getattr(self.objective, "awp_gamma", None) is not None and self.trainer.accumulate_grad_batches != 1:
            raise TrixaiError("objective.awp_gamma needs trainer.accumulate_grad_batches=1 (AWP perturbs and restores "
                              "the weights around every optimiser step)")

    def optimizer_step(self, *args, **kwargs) -> None:
        """The optimiser step, then whatever the objective put on the weights for it (AWP) comes off again."""
        super().optimizer_step(*args, **kwargs)
        if self._after_step is not None:
            self._after_step()
            self._after_step = None

    def _check_grad_mode(self) -> None:
        if torch.is_inference_mode_enabled():
            raise TrixaiError("robust metrics need gradients: set trainer.inference_mode=false")

    def _log_cam_ssim(self, stage: str, x: Tensor, x_adv: Tensor, target: Tensor) -> None:
        if self.cam_ssim_layer is not None:
            similarity = cam_ssim(self.model, x, x_adv, target, self.cam_ssim_layer)[0]
            self.log(f"{stage}/cam_ssim", similarity.mean(), batch_size=len(x))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._check_grad_mode()
        x, target = self._images(batch), self._metric_target(batch)
        self.val_metrics.update(self._scores(self.model(x)), target)
        self.log_dict(self.val_metrics, batch_size=len(x))
        if self.eval_attack is not None:
            with seeded(self.eval_seed + batch_idx, x.device):
                x_adv = self.eval_attack(self.model, x, batch["target"])
            self.val_robust.update(self._scores(self.model(x_adv)), target)
            self.log_dict(self.val_robust, batch_size=len(x))
            self._log_cam_ssim("val", x, x_adv, batch["target"])

    def on_test_start(self) -> None:
        if self.test_suites is None:
            suite = RobustnessSuite.from_config(None, eval_attack=self.eval_attack, seed=self.eval_seed)
            self.test_suites = SuiteRun(self.model, robustness=suite, report_robustness=False,
                                        channels_last=self.memory_format == torch.channels_last)

    def on_test_epoch_start(self) -> None:
        self._test_points = {"": ([], []), "rob_": ([], [])}
        self._test_cam_ssim = []

    def _keep_test_points(self, prefix: str, scores: Tensor, target: Tensor) -> None:
        self._test_points[prefix][0].append(scores.detach().float().cpu())
        self._test_points[prefix][1].append(target.detach().cpu())

    def on_test_epoch_end(self) -> None:
        """The suites' last block, the test metrics of every point, and their 95 % intervals (proportions: intervals
        that keep their coverage at 0 and 1; the others: percentile bootstrap, stratified, seeded)."""
        self._score_test_blocks(self.test_suites.flush())
        self.log_dict(self.test_metrics)
        if self._test_points.get("rob_", ([],))[0]:
            self.log_dict(self.test_robust)
        if self._test_cam_ssim:
            self.log("test/cam_ssim", torch.cat(self._test_cam_ssim).mean())
        self.test_intervals = {}
        for prefix, (scores, targets) in self._test_points.items():
            if not scores:
                continue
            scores, targets = torch.cat(scores), torch.cat(targets)
            if self.trainer.world_size > 1:
                scores, targets = self._gather_in_dataset_order(scores), self._gather_in_dataset_order(targets)
            boot = Bootstrap.draw(targets, seed=self.eval_seed)
            intervals = boot.intervals(lambda w, s=scores, t=targets: weighted_metrics(s, t, self.model.task, w))
            intervals |= _proportion_intervals(scores, targets, self.model.task, self.model.num_classes)
            self.test_intervals |= {f"{prefix}{name}": value for name, value in intervals.items()}
            self.test_intervals[f"{prefix}auroc_per_{'class' if self.model.task == 'multiclass' else 'label'}"] = \
                per_output_auroc(scores, targets, self.model.task, self.model.class_names)
        if self._test_cam_ssim:  # the mean over the attacked test points, not stratified
            values = torch.cat(self._test_cam_ssim)
            boot = Bootstrap.draw(torch.zeros(len(values), dtype=torch.long), seed=self.eval_seed)
            self.test_intervals |= boot.intervals(lambda w: {"cam_ssim": w.double() @ values / w.sum(1)})
        self._test_points, self._test_cam_ssim = {}, []

    def _gather_in_dataset_order(self, values: Tensor) -> Tensor:
        """Every rank's test points in the dataset's order: the DistributedSampler (no shuffle) gives rank r the
        points r, r + W, r + 2W, ... and pads equal shards with the first points, which are cut off again."""
        gathered = self.all_gather(values.to(self.device)).transpose(0, 1).flatten(0, 1).cpu()
        total = len(getattr(self.trainer.test_dataloaders, "dataset", gathered))
        return gathered[:total]

    def test_step(self, batch: dict, batch_idx: int) -> None:
        """Hand the batch to the suites; score the blocks of points they completed (one attack run per point)."""
        self._check_grad_mode()
        self._score_test_blocks(self.test_suites.update(batch))

    def _score_test_blocks(self, results: list[BatchResult]) -> None:
        """Clean metrics of every point and, for the points the robustness suite attacked, the evaluation attack's."""
        for result in results:
            target = metric_targets(result.target, result.label_mask).to(result.clean_logits.device)
            scores = self._scores(result.clean_logits)
            self.test_metrics.update(scores, target)
            self._keep_test_points("", scores, target)
            if result.eval_logits is not None and result.rows:
                rows = result.rows
                robust_scores = self._scores(result.eval_logits)
                self.test_robust.update(robust_scores, target[:rows])
                self._keep_test_points("rob_", robust_scores, target[:rows])
                if result.eval_images is not None and self.cam_ssim_layer is not None:
                    similarity = cam_ssim(self.model, result.images[:rows], result.eval_images,
                                          result.target[:rows].to(result.images.device), self.cam_ssim_layer)[0]
                    self._test_cam_ssim.append(similarity.detach().double().cpu())

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        schedule = getattr(self.scheduler_factory, "func", self.scheduler_factory)  # a Hydra partial or a function
        per_step = bool(getattr(schedule, "per_step", False))
        steps = {"total_steps": self._total_steps(schedule.__name__)} if per_step else {}
        scheduler = self.scheduler_factory(optimizer=optimizer, **steps)
        interval = "step" if per_step else "epoch"
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

    def _total_steps(self, schedule: str) -> int:
        """The run's optimiser steps, which a per-step schedule spans; refused when the run has no end."""
        total = self.trainer.estimated_stepping_batches
        if not (math.isfinite(total) and total > 0):
            raise TrixaiError(f"scheduler={schedule} is stepped every batch over the whole run: set trainer.max_epochs or trainer.max_steps")
        return int(total)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["trixai"] = self.meta
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "rng_states" in checkpoint:  # a resumed run draws what the uninterrupted run would have drawn
            set_rng_states(checkpoint["rng_states"])
