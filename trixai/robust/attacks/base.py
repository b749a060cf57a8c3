"""Attack base: inputs in [0, 1], model in eval mode while attacking, model state restored afterwards."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

from torch import Tensor, nn

from trixai.core.frozen import frozen_eval


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
