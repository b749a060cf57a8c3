"""Adversarial weight perturbation (Wu et al. 2020, "Adversarial Weight Perturbation Helps Robust Generalization").

For each weight matrix / convolution kernel ``w_l`` (parameters named ``*weight`` with more than one dimension:
BatchNorm and biases excluded) the perturbation is ``v_l = gamma * ||w_l|| * g_l / ||g_l||``, ``g_l`` the gradient
of the objective's own loss at the current weights (one normalised ascent step, as the official code's proxy
model with a plain SGD step). The direction pass runs in train mode, like the official proxy, but BatchNorm
running statistics are put back afterwards, so only the training step's forward moves them. The training loss
is then computed at ``w + v``; :meth:`WeightPerturbation.restore` subtracts ``v`` after the optimiser step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trixai.core.errors import TrixaiError

GAMMA_MAX = 0.1  # Wu et al. use 5e-3 (PGD-AT, TRADES) and 1e-2; beyond 0.1 the weights are no longer the model's
_TINY = 1e-20


def check_gamma(gamma: float | None, key: str = "objective.awp_gamma") -> None:
    if gamma is not None and not 0.0 < float(gamma) <= GAMMA_MAX:
        raise TrixaiError(f"{key}={gamma}: AWP's relative weight perturbation must lie in (0, {GAMMA_MAX}] "
                          "(Wu et al. 2020 use 5e-3); null turns AWP off")


def perturbed_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters AWP perturbs: weights of convolutions and linear layers (``*weight``, ``dim > 1``)."""
    return [(name, p) for name, p in model.named_parameters()
            if p.requires_grad and p.dim() > 1 and name.endswith("weight")]


@dataclass
class WeightPerturbation:
    """``v`` applied to ``params`` in place; :meth:`restore` takes it off again (once)."""

    params: list[nn.Parameter]
    deltas: list[Tensor]

    def restore(self) -> None:
        with torch.no_grad():
            for param, delta in zip(self.params, self.deltas, strict=True):
                param.sub_(delta)
        self.deltas = [torch.zeros_like(d) for d in self.deltas]


def perturb_weights(model: nn.Module, loss_fn: Callable[[], Tensor], gamma: float) -> WeightPerturbation:
    """Add ``gamma * ||w|| * g / ||g||`` (``g`` = gradient of ``loss_fn()`` at the current weights) to each weight."""
    named = perturbed_parameters(model)
    params = [p for _, p in named]
    buffers = [(b, b.detach().clone()) for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)
               for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
    training = model.training
    model.train()
    try:
        grads = torch.autograd.grad(loss_fn(), params, allow_unused=True)
    finally:
        model.train(training)
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
    deltas = []
    with torch.no_grad():
        for param, grad in zip(params, grads, strict=True):
            grad = torch.zeros_like(param) if grad is None else grad
            delta = gamma * param.norm() / (grad.norm() + _TINY) * grad
            param.add_(delta)
            deltas.append(delta)
    return WeightPerturbation(params, deltas)
