"""The ``explainer`` config group as callables: one (N, H, W) saliency map per image for a given target.

``gradcam`` (``layer``), ``multiscale_gradcam`` (``weights`` per layer) and ``se_attention`` (``layer``) give
maps; ``tcav`` gives concept scores instead (see :mod:`trixai.xai.tcav`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor, nn

from trixai.errors import TrixaiError
from trixai.xai.gradcam import grad_cam
from trixai.xai.multiscale import DEFAULT_WEIGHTS, multiscale_grad_cam
from trixai.xai.se_attention import se_attention

EXPLAINERS = ("gradcam", "multiscale_gradcam", "se_attention", "tcav")
MAP_EXPLAINERS = EXPLAINERS[:3]


@dataclass
class Explanation:
    """Maps (N, H, W) in [0, 1] at the input size, logits, explained class per sample, method extras."""

    maps: Tensor
    logits: Tensor
    targets: Tensor
    extras: dict


def explainer_name(cfg: Mapping) -> str:
    name = cfg.get("name")
    if name not in EXPLAINERS:
        raise TrixaiError(f"explainer.name={name!r} is not one of {list(EXPLAINERS)}")
    return name


def explain(model: nn.Module, x: Tensor, target: Tensor | int | None, cfg: Mapping) -> Explanation:
    """Run the configured map explainer on a batch (``target`` None = predicted class)."""
    name = explainer_name(cfg)
    if name == "gradcam":
        layer = cfg.get("layer", "final")
        result = grad_cam(model, x, target, [layer])
        return Explanation(result.maps[layer], result.logits, result.targets, {})
    if name == "multiscale_gradcam":
        weights = dict(cfg.get("weights") or DEFAULT_WEIGHTS)
        result = multiscale_grad_cam(model, x, target, weights)
        return Explanation(result.maps["fused"], result.logits, result.targets,
                           {"stage_maps": {k: v for k, v in result.maps.items() if k != "fused"}})
    if name == "se_attention":
        result = se_attention(model, x, target, cfg.get("layer", "last"))
        (cam,) = result.maps.values()
        return Explanation(cam, result.logits, result.targets, {"gates": result.gates, "se": result})
    raise TrixaiError("explainer=tcav scores concepts and gives no saliency maps; use gradcam, multiscale_gradcam "
                      "or se_attention for maps")
