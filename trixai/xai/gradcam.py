"""Grad-CAM (Selvaraju et al. 2017), batched, one backward for every sample and every layer.

One function serves evaluation and training: ``create_graph=False`` returns detached maps with the model
frozen in eval mode (mode, ``requires_grad`` and BatchNorm statistics restored); ``create_graph=True`` keeps
the maps differentiable w.r.t. the parameters for a training objective (the model runs in the caller's mode
and nothing is written to ``.grad``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trixai.core.frozen import frozen_eval
from trixai.xai.base import TRAINING_EPS, layer_gradients, normalize_maps, resolve_layers, upsample_maps


@dataclass
class CamResult:
    """Maps per layer (N, H, W) on the model's device, the logits and the explained class per sample."""

    maps: dict[str, Tensor]
    logits: Tensor
    targets: Tensor


def cam_from_gradients(activations: Tensor, gradients: Tensor) -> Tensor:
    """ReLU(sum_k w_k A_k) with w_k the spatial mean of dY/dA_k; (N, C, h, w) -> (N, h, w)."""
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * activations).sum(dim=1))


def grad_cam(
    model: nn.Module,
    x: Tensor,
    target: Tensor | int | None = None,
    layers: str | Sequence[str] = "final",
    *,
    create_graph: bool = False,
    size: tuple[int, int] | None | str = "input",
    normalize: bool = True,
    eps: float | None = None,
) -> CamResult:
    """Grad-CAM maps of ``model`` for images ``x`` (N, C, H, W) in [0, 1].

    ``target``: class index per sample (N,), one index for all, or None for the arg-max logit; the score is
    the pre-softmax logit. ``layers``: presets of ``model.cam_layers`` or module paths. ``size``: "input"
    upsamples bilinearly to the input size, None keeps the layer resolution. ``normalize``: per-sample
    min-max, all-zero maps stay zero; ``eps`` in the denominator defaults to
    ``TRAINING_EPS`` when ``create_graph`` (stable gradients) and to 0 (exact min-max) otherwise.
    """
    modules = resolve_layers(model, layers)
    with nullcontext() if create_graph else frozen_eval(model):
        acts, grads, logits, targets = layer_gradients(model, x, target, modules, create_graph=create_graph)
    maps = {name: cam_from_gradients(acts[name], grads[name]) for name in modules}
    eps = (TRAINING_EPS if create_graph else 0.0) if eps is None else eps
    out_size = tuple(x.shape[-2:]) if size == "input" else size
    for name, cam in maps.items():
        if out_size is not None:
            cam = upsample_maps(cam, out_size)
        maps[name] = normalize_maps(cam, eps) if normalize else cam
    return CamResult(maps=maps, logits=logits, targets=targets)
