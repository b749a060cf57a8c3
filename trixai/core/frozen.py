"""Model state around evaluation: frozen eval mode and a temporary memory format, both restored exactly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


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
