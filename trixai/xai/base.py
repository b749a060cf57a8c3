"""Layer resolution and activation capture shared by every explainer.

A forward hook records a layer's output as a graph node and hands a copy downstream, so in-place
operations after the layer (``ReLU(inplace=True)``, ``x += shortcut``) can neither corrupt the recorded
activation nor the gradient taken with respect to it. Hooks are removed on exit, whatever happens.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trixai.core.errors import TrixaiError

TRAINING_EPS = 1e-8


def resolve_layers(model: nn.Module, layers: str | Sequence[str]) -> dict[str, nn.Module]:
    """Map each requested layer to its module: a preset of ``model.cam_layers`` or a module path.

    Presets (``low``/``mid``/``high``/``final``) come from the model family; any ``named_modules`` path
    works too (``backbone.blocks.5``, ``backbone.layer4``).
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise TrixaiError("no explainer layer given: name at least one preset or module path")
    presets: Mapping[str, str] = getattr(model, "cam_layers", {}) or {}
    modules = dict(model.named_modules())
    resolved: dict[str, nn.Module] = {}
    for name in names:
        path = presets.get(name, name)
        if path not in modules or path == "":
            raise TrixaiError(
                f"explainer layer {name!r} is neither a preset {sorted(presets)} nor a module of the model "
                f"(e.g. {', '.join(list(presets.values())[:3]) or 'a path from model.named_modules()'})"
            )
        resolved[name] = modules[path]
    return resolved


@contextmanager
def record_activations(modules: Mapping[str, nn.Module]) -> Iterator[dict[str, Tensor]]:
    """Record each module's output during a forward pass; yields the dict being filled.

    The recorded tensor requires grad even when the model's parameters do not (the graph then starts at the
    layer, so a backward pass never goes below it).
    """
    recorded: dict[str, Tensor] = {}

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
            if not isinstance(output, Tensor):
                raise TrixaiError(f"layer {name!r} returns {type(output).__name__}, not a tensor: pick another layer")
            if name in recorded:
                raise TrixaiError(f"layer {name!r} runs more than once per forward pass: pick another layer")
            if not output.requires_grad:
                output = output.detach().requires_grad_(True)
            recorded[name] = output
            return output.clone()

        return hook

    handles = [module.register_forward_hook(make_hook(name)) for name, module in modules.items()]
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


def layer_gradients(
    model: nn.Module, x: Tensor, target: Tensor | int | None, modules: Mapping[str, nn.Module], *,
    create_graph: bool = False,
) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor, Tensor]:
    """Activations and gradients of each sample's target logit at ``modules``, from one backward pass.

    Returns ``(activations, gradients, logits, targets)``. The model runs in its current mode with grad
    enabled; with ``create_graph`` everything stays differentiable w.r.t. the parameters, otherwise
    activations and gradients are detached. Nothing is written to any ``.grad``.
    """
    if torch.is_inference_mode_enabled():
        raise TrixaiError("explanations need gradients: run outside torch.inference_mode() "
                          "(Lightning: Trainer(inference_mode=False))")
    with torch.enable_grad():
        with record_activations(modules) as acts:
            logits = model(x)
        missing = [name for name in modules if name not in acts]
        if missing:
            raise TrixaiError(f"layers {missing} did not run in the forward pass: pick layers the model uses")
        targets = select_targets(logits.detach(), target)
        score = logits.gather(1, targets[:, None]).sum()
        names = list(modules)
        grads = torch.autograd.grad(score, [acts[name] for name in names], create_graph=create_graph)
    gradients = dict(zip(names, grads, strict=True))
    if not create_graph:
        return ({k: v.detach() for k, v in acts.items()}, gradients, logits.detach(), targets)
    return dict(acts), gradients, logits, targets


def select_targets(logits: Tensor, target: Tensor | int | None) -> Tensor:
    """Per-sample class indices (N,): the arg-max logit when ``target`` is None, else ``target`` broadcast."""
    n, num_classes = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    target = torch.as_tensor(target, device=logits.device)
    if target.is_floating_point():
        raise TrixaiError("explainer target must be class indices (int), not a float/multi-hot tensor")
    target = target.long().expand(n) if target.dim() == 0 else target.long()
    if target.shape != (n,):
        raise TrixaiError(f"explainer target has shape {tuple(target.shape)}; expected ({n},) or a single class")
    if bool(((target < 0) | (target >= num_classes)).any()):
        raise TrixaiError(f"explainer target {target.tolist()} out of range: classes are 0..{num_classes - 1}")
    return target


def normalize_maps(maps: Tensor, eps: float = 0.0) -> Tensor:
    """Per-sample min-max of (N, H, W) maps to [0, 1]; a constant (e.g. all-zero) map becomes all zero.

    ``eps`` > 0 is added to the denominator, as a differentiable training loss needs; 0 gives exact min-max.
    """
    flat = maps.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    span = flat.max(dim=1).values.view(-1, 1, 1) - low
    scaled = (maps - low) / (span + eps).clamp_min(torch.finfo(maps.dtype).tiny)
    return torch.where(span > 0, scaled, torch.zeros_like(scaled))


def upsample_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear (align_corners=False) resize of (N, h, w) maps to ``size``."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
