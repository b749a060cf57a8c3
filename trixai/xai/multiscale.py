"""Multi-scale Grad-CAM: stage maps from one backward, fused with configurable weights."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.xai.gradcam import CamResult, grad_cam

DEFAULT_WEIGHTS = {"low": 0.3, "mid": 0.4, "high": 0.3}


def fuse_maps(maps: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """Weighted sum of per-layer maps (already at one size, each in [0, 1]) divided by the weight total."""
    if set(maps) != set(weights):
        raise TrixaiError(f"explainer.weights keys {sorted(weights)} must match explainer layers {sorted(maps)}")
    total = sum(float(w) for w in weights.values())
    if total <= 0 or any(float(w) < 0 for w in weights.values()):
        raise TrixaiError(f"explainer.weights={dict(weights)} must be >= 0 with a positive sum")
    return sum(float(weights[name]) * cam for name, cam in maps.items()) / total


def multiscale_grad_cam(
    model: nn.Module,
    x: Tensor,
    target: Tensor | int | None = None,
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
    *,
    create_graph: bool = False,
    eps: float | None = None,
) -> CamResult:
    """Grad-CAM at every layer of ``weights`` (presets or module paths) in one backward, fused at input size.

    The result's ``maps`` holds each stage's normalised map plus their weighted mean (in [0, 1]) under ``"fused"``.
    """
    result = grad_cam(model, x, target, list(weights), create_graph=create_graph, eps=eps)
    result.maps["fused"] = fuse_maps(result.maps, weights)
    return result
