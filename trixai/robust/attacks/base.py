"""Attack base: inputs in [0, 1], model in eval mode while attacking, model state restored afterwards."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients inside; every module's mode and ``requires_grad`` restored after.

    BatchNorm running statistics cannot move (eval mode) and parameter ``.grad`` is never written.
    """
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    model.eval()
    for param, _ in flags:
        param.requires_grad_(False)
    try:
        with torch.enable_grad():
            yield model
    finally:
        for module, training in modes:
            module.training = training
        for param, flag in flags:
            param.requires_grad_(flag)


@contextmanager
def memory_format(model: nn.Module, channels_last: bool) -> Iterator[nn.Module]:
    """The model's 4-D parameters in channels_last inside (faster convolutions); their layout restored after."""
    saved = [(param, param.data) for param in model.parameters() if param.dim() == 4] if channels_last else []
    if channels_last:
        model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        for param, data in saved:
            param.data = data


@dataclass
class Attack(ABC):
    """An adversary: ``attack(model, x, y)`` returns ``x_adv`` with ``x_adv`` in [0, 1] and the threat model.

    ``y`` is int (N,) for multiclass (CE) or float (N, L) for multi-label (BCE). Subclasses implement
    :meth:`perturb`, called with the model frozen in eval mode.
    """

    eps: float

    @property
    def name(self) -> str:
        return type(self).__name__.lower()

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        with frozen_eval(model):
            return self.perturb(model, x.detach(), y.detach()).detach()

    @abstractmethod
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Return the adversarial batch (model already frozen in eval mode)."""

    def settings(self) -> dict:
        """Every setting, for reports and metadata."""
        return {"attack": self.name, **asdict(self)}
