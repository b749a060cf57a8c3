"""Squeeze-and-Excitation attention: channel gates per SE module per image and a gate-weighted spatial map.

timm EfficientNets put an ``SqueezeExcite`` in each inverted-residual block (``blocks[i][j].se``); its
``gate`` output (N, C, 1, 1) is the channel attention. ResNet-50 has no SE modules: asking for SE attention
there is an error, not an empty result.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.core.frozen import frozen_eval
from trixai.xai.base import normalize_maps, select_targets, upsample_maps


def se_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every squeeze-and-excitation module (a module with a ``gate`` and ``conv_expand``) by path."""
    return {name: module for name, module in model.named_modules()
            if hasattr(module, "gate") and hasattr(module, "conv_expand")}


@dataclass
class SEAttention:
    """Gate values per SE module (N, C), per-block summary statistics, and the spatial map (N, H, W)."""

    gates: dict[str, Tensor]
    maps: dict[str, Tensor]
    logits: Tensor
    targets: Tensor

    def block_stats(self) -> dict[str, dict[str, float]]:
        return gate_statistics(self.gates)


def gate_statistics(gates: dict[str, Tensor]) -> dict[str, dict[str, float]]:
    """Per SE module, over images and channels: mean, std, min, max and the fraction of gates < 0.5."""
    return {
        name: {"channels": int(gate.shape[1]), "mean": float(gate.mean()), "std": float(gate.std(unbiased=False)),
               "min": float(gate.min()), "max": float(gate.max()),
               "suppressed_fraction": float((gate < 0.5).float().mean())}
        for name, gate in gates.items()
    }


@contextmanager
def _record_se(modules: dict[str, nn.Module]) -> Iterator[tuple[dict[str, Tensor], dict[str, Tensor]]]:
    gates: dict[str, Tensor] = {}
    outputs: dict[str, Tensor] = {}
    handles = []
    for name, module in modules.items():
        handles.append(module.gate.register_forward_hook(
            lambda m, i, o, name=name: gates.__setitem__(name, o.detach().flatten(1).clone())))
        handles.append(module.register_forward_hook(
            lambda m, i, o, name=name: outputs.__setitem__(name, o.detach().clone())))
    try:
        yield gates, outputs
    finally:
        for handle in handles:
            handle.remove()


def se_attention(model: nn.Module, x: Tensor, target: Tensor | int | None = None, layer: str = "last") -> SEAttention:
    """Channel gates of every SE module and, for ``layer`` (``last`` or an SE module path), the spatial map
    ReLU(sum_c g_c A_c) of the gate-weighted activations (the SE output), upsampled to the input and
    min-max normalised per image."""
    modules = se_modules(model)
    if not modules:
        family = getattr(model, "family", type(model).__name__)
        raise TrixaiError(
            f"this model ({getattr(model, 'name', family)}, family {family!r}) has no squeeze-and-excitation "
            "modules, so SE attention is undefined: use explainer=gradcam or multiscale_gradcam, or an "
            "EfficientNet model"
        )
    chosen = list(modules)[-1] if layer == "last" else layer
    if chosen not in modules:
        raise TrixaiError(f"explainer.layer={layer!r} is not an SE module; SE modules: {list(modules)[:4]} ...")
    with frozen_eval(model), torch.no_grad(), _record_se(modules) as (gates, outputs):
        logits = model(x)
    targets = select_targets(logits, target)
    spatial = torch.relu(outputs[chosen].sum(dim=1))
    maps = {chosen: normalize_maps(upsample_maps(spatial, tuple(x.shape[-2:])))}
    return SEAttention(gates=dict(gates), maps=maps, logits=logits, targets=targets)
