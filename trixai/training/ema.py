"""Model EMA: Lightning's :class:`EMAWeightAveraging`, with the averaged weights kept when testing a checkpoint."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class ModelEMA(EMAWeightAveraging):
    """Validation and checkpoints see the EMA weights, and training ends with them in the model.

    A checkpoint's ``state_dict`` holds the EMA weights and ``current_model_state`` the raw ones; Lightning's
    callback reloads the raw weights whenever it loads a checkpoint, also for ``trainer.test(ckpt_path=...)``
    after fitting. Here that happens only when fitting resumes, so the test phase and the export use the EMA model.
    """

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
