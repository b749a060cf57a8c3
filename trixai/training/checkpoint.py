"""Checkpointing that survives a resume into a new run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class ResumableCheckpoint(ModelCheckpoint):
    """A ``ModelCheckpoint`` that keeps the best score and paths of the run it resumes.

    ``trixai-train ckpt_path=<run>/checkpoints/last.ckpt`` writes into a new run directory; Lightning's callback
    then forgets the best score (the directory changed), so a resumed run could test a worse checkpoint than
    the uninterrupted run. Here the best score and the top-k paths are restored too, and files of the earlier
    run are never deleted: a better checkpoint is written into the new directory beside them.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_model_score = state_dict["best_model_score"]
        self.kth_best_model_path = state_dict.get("kth_best_model_path", self.kth_best_model_path)
        self.kth_value = state_dict.get("kth_value", self.kth_value)
        self.best_k_models = state_dict.get("best_k_models", self.best_k_models)
        self.best_model_path = state_dict["best_model_path"]

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if self.dirpath is not None and Path(filepath).resolve().parent == Path(self.dirpath).resolve():
            super()._remove_checkpoint(trainer, filepath)
