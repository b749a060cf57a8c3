"""Robust overfitting (Rice et al. 2020) made visible: training vs validation robust metric per epoch.

Records ``train/rob_<metric>`` (the objective's adversarial batches) at each training epoch end and
``val/rob_<metric>`` (the evaluation attack) at each validation end, and writes ``robust_curves.json`` and
``robust_curves.png`` to ``dirpath`` when training ends. A widening gap while validation falls is robust
overfitting; early stopping on the validation metric (``callbacks=robust_early_stopping``) is the remedy.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import matplotlib
from lightning.pytorch.callbacks import Callback

from trixai.core.files import atomic_write_json
from trixai.core.metrics import primary_metric

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


class RobustCurves(Callback):
    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.curves: dict[str, dict[int, float]] = {"train": {}, "val": {}}
        self.metric = "acc"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.metric = primary_metric(pl_module.model.task)

    def _record(self, stage: str, trainer: L.Trainer) -> None:
        value = trainer.callback_metrics.get(f"{stage}/rob_{self.metric}")
        if value is not None:
            self.curves[stage][trainer.current_epoch] = float(value)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record("train", trainer)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._record("val", trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not any(self.curves.values()):
            return
        self.dirpath.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.dirpath / "robust_curves.json", {
            "metric": f"rob_{self.metric}",
            **{stage: [{"epoch": e, "value": v} for e, v in sorted(points.items())]
               for stage, points in self.curves.items()},
        })
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
        for stage, style in (("train", "o-"), ("val", "s-")):
            points = sorted(self.curves[stage].items())
            if points:
                ax.plot([e + 1 for e, _ in points], [v for _, v in points], style, label=f"{stage} (adversarial)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"robust {self.metric}")
        ax.set_title("Train vs validation robust metric (Rice et al. 2020)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(self.dirpath / "robust_curves.png")
        plt.close(fig)

    def state_dict(self) -> dict:
        return {"curves": {stage: {str(e): v for e, v in p.items()} for stage, p in self.curves.items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        saved = state_dict.get("curves", {})
        self.curves = {stage: {int(e): float(v) for e, v in saved.get(stage, {}).items()} for stage in ("train", "val")}
