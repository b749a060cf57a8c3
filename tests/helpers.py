"""Small fixed models for exact tests (importable from tests as ``from helpers import ...``)."""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from trixai.models import create_model


def tiny_cnn(num_classes: int = 3, in_chans: int = 3, seed: int = 0) -> nn.Module:
    """Conv + BatchNorm + ReLU + GAP + linear: BatchNorm makes mode and running-stat checks meaningful."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_chans, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes),
    )


def tiny_timm(num_classes: int = 4, task: str = "multiclass", in_chans: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return create_model("test_efficientnet", num_classes, task=task, in_chans=in_chans, resolution=32)


def state_snapshot(model: nn.Module) -> tuple[dict, list[bool]]:
    return ({k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()])


class WeightRecorder(Callback):
    """The model's state after every training batch, in the class attribute ``states`` (for Hydra-built runs)."""

    states: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        WeightRecorder.states.append({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()})
