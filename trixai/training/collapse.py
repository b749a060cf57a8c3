"""Catastrophic-overfitting guard (Wong et al. 2020): PGD accuracy on held-out points after every epoch.

Single-step adversarial training (Fast-AT) can collapse within an epoch: accuracy against FGSM soars while PGD
accuracy drops to about zero. After the last batch of each training epoch (before validation) the guard attacks
the first ``points`` validation points with PGD-10 at the training attack's eps (from the first epoch after any
clean warm-up); when the accuracy falls more than ``drop`` below the best seen so far it restores the weights of that best epoch, stops training and says so.
Validation and the checkpoint of that epoch then see the restored weights.
"""

from __future__ import annotations

import copy
import logging

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from trixai.core.errors import TrixaiError
from trixai.core.frozen import frozen_eval
from trixai.robust.attacks.margins import is_fooled
from trixai.robust.registry import create_attack
from trixai.suites.robustness import seeded

log = logging.getLogger(__name__)


class CollapseGuard(Callback):
    """Watches objectives that declare ``collapses = True`` (Fast-AT), or every adversarial one with ``always``."""

    def __init__(self, drop: float = 0.2, points: int = 128, attack: str = "pgd10", always: bool = False,
                 seed: int = 0) -> None:
        if not 0.0 < drop < 1.0:
            raise TrixaiError(f"callbacks.collapse_guard.drop={drop}: expected an accuracy drop in (0, 1)")
        if points < 1:
            raise TrixaiError(f"callbacks.collapse_guard.points={points}: expected a positive number of points")
        self.drop, self.points, self.attack_name, self.always, self.seed = float(drop), int(points), attack, always, seed
        self.history: list[dict] = []
        self.collapse: dict | None = None
        self._best: tuple[float, int, dict] | None = None
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        watched = self.always or getattr(pl_module.objective, "collapses", False)
        if not watched or pl_module.attack is None or trainer.datamodule is None:
            self._batch = None
            return
        images, targets, taken = [], [], 0
        for batch in trainer.datamodule.val_dataloader():
            images.append(batch["image"])
            targets.append(batch["target"])
            taken += len(batch["image"])
            if taken >= self.points:
                break
        self._batch = torch.cat(images)[: self.points], torch.cat(targets)[: self.points]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
                           ) -> None:
        if (self._batch is None or batch_idx != trainer.num_training_batches - 1
                or trainer.current_epoch < getattr(pl_module, "clean_warmup_epochs", 0)):
            return  # clean warm-up epochs are not the objective's: their robust accuracy is no baseline
        accuracy = self.robust_accuracy(pl_module)
        epoch = trainer.current_epoch
        self.history.append({"epoch": epoch, "pgd_acc": accuracy})
        pl_module.log("guard/pgd_acc", accuracy)
        if self._best is None or accuracy >= self._best[0]:
            state = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}
            self._best = (accuracy, epoch, state)
            return
        best, best_epoch, state = self._best
        if accuracy < best - self.drop:
            pl_module.model.load_state_dict(state)
            trainer.should_stop = True
            self.collapse = {"epoch": epoch, "pgd_acc": accuracy, "best_epoch": best_epoch, "best_pgd_acc": best,
                             "points": len(self._batch[0]), "attack": self.attack_name}
            log.warning("catastrophic overfitting in epoch %d: %s accuracy on %d held-out validation points fell "
                        "from %.3f (epoch %d) to %.3f; training stopped and the weights of epoch %d restored",
                        epoch, self.attack_name, len(self._batch[0]), best, best_epoch, accuracy, best_epoch)

    def robust_accuracy(self, pl_module: L.LightningModule) -> float:
        x, y = (t.to(pl_module.device) for t in self._batch)
        x = x.contiguous(memory_format=pl_module.memory_format)
        attack = create_attack(self.attack_name, pl_module.attack.eps)
        with seeded(self.seed, x.device), torch.enable_grad():
            x_adv = attack(pl_module.model, x, y)
        with frozen_eval(pl_module.model), torch.no_grad():
            fooled = is_fooled(pl_module.model(x_adv), y)
        return float(1.0 - fooled.float().mean())

    def state_dict(self) -> dict:
        return {"history": copy.deepcopy(self.history), "collapse": self.collapse}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history, self.collapse = list(state_dict.get("history", [])), state_dict.get("collapse")
