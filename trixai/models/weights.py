"""Local weight files: read a state dict safely and apply it to a timm backbone, explaining any mismatch.

Files: ``.safetensors`` or a torch pickle (``.pth``/``.pt``/``.bin``/``.ckpt``) read with
``weights_only=True`` (tensors only, never arbitrary objects). Layouts: a plain state dict, or one nested under
``state_dict``/``model``/``model_state_dict``/``state_dict_ema``; the prefixes ``module.`` (DataParallel/DDP),
``model.`` (Lightning) and ``backbone.`` (a trixai ``model.safetensors``, whose normalisation buffers are
dropped) are removed. timm and torchvision share the ResNet key names, so torchvision ResNet weights load into
timm's ResNet.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from timm.models import adapt_input_conv
from torch import Tensor, nn

from trixai.core.errors import TrixaiError

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
NESTED_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema")
PREFIXES = ("module.", "model.", "backbone.")
TRIXAI_BUFFERS = ("mean", "std")
BN_BUFFERS = ("num_batches_tracked", "running_mean", "running_var")  # a trixai model.safetensors: the backbone plus its input normalisation


def read_state_dict(path: str | Path, *, key: str = "model.weights") -> dict[str, Tensor]:
    """The tensors of a weights file as a flat state dict (see the module docstring for layouts)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TrixaiError(f"{key}={str(path)!r}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw: object = load_file(str(path), device="cpu")
    elif path.suffix in PICKLE_SUFFIXES:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise TrixaiError(
                f"{key}={str(path)!r} holds Python objects besides tensors, which trixai does not unpickle. "
                "Save the weights alone: torch.save(model.state_dict(), path) or safetensors.torch.save_file."
            ) from err
    else:
        raise TrixaiError(f"{key}={str(path)!r}: unknown weights format {path.suffix!r}; "
                          f"use .safetensors or one of {list(PICKLE_SUFFIXES)}")
    return _flatten(raw, source=f"{key}={str(path)!r}")


def _flatten(raw: object, *, source: str) -> dict[str, Tensor]:
    while isinstance(raw, Mapping) and not _is_state_dict(raw):
        nested = next((k for k in NESTED_KEYS if k in raw), None)
        if nested is None:
            raise TrixaiError(f"{source}: no state dict inside (top-level keys {sorted(map(str, raw))[:8]}); "
                              f"expected tensors or one of {list(NESTED_KEYS)}")
        raw = raw[nested]
    if not isinstance(raw, Mapping):
        raise TrixaiError(f"{source}: expected a state dict, found a {type(raw).__name__}")
    state = {str(k): v for k, v in raw.items() if isinstance(v, Tensor)}
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) or k in TRIXAI_BUFFERS for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def _is_state_dict(raw: Mapping) -> bool:
    return bool(raw) and all(isinstance(v, Tensor) for v in raw.values())


def apply_weights(backbone: nn.Module, state: dict[str, Tensor], *, source: str, arch_key: str = "model.name"
                  ) -> list[str]:
    """Load ``state`` into a timm ``backbone``; return the re-initialised classifier keys (empty if none).

    The classifier (``pretrained_cfg['classifier']``) is kept at its fresh initialisation when the file's has
    another class count; a first convolution for another channel count is adapted as timm does (summed to one
    channel, or repeated and rescaled). Any other missing, unexpected or misshaped key is an error that lists
    them with the likely cause (``arch_key``: the config key that named the architecture).
    """
    cfg = getattr(backbone, "pretrained_cfg", {}) or {}
    own = backbone.state_dict()
    state = dict(state)
    first_conv = f"{cfg['first_conv']}.weight" if cfg.get("first_conv") else None
    if first_conv in state and first_conv in own and state[first_conv].shape[1] != own[first_conv].shape[1]:
        state[first_conv] = adapt_input_conv(own[first_conv].shape[1], state[first_conv])
    classifier = cfg.get("classifier")
    reinit = []
    if classifier:
        heads = [k for k in own if k.startswith(f"{classifier}.")]
        if any(k in state and state[k].shape != own[k].shape for k in heads):
            reinit = heads
            state = {k: v for k, v in state.items() if k not in heads}
    missing = sorted(set(own) - set(state) - set(reinit))
    unexpected = sorted(set(state) - set(own))
    misshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or misshaped:
        raise TrixaiError(_mismatch_message(backbone, source, arch_key, own, state, missing, unexpected, misshaped))
    backbone.load_state_dict(state, strict=False)
    return reinit


def _mismatch_message(backbone: nn.Module, source: str, arch_key: str, own: dict, state: dict, missing: list[str],
                      unexpected: list[str], misshaped: list[str]) -> str:
    name = getattr(backbone, "pretrained_cfg", {}).get("architecture") or type(backbone).__name__

    def show(keys: list[str]) -> str:
        return ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")

    lines = [f"{source} does not fit {name}: {len(missing)} missing, {len(unexpected)} unexpected and "
             f"{len(misshaped)} misshaped of {len(own)} keys."]
    if missing:
        lines.append(f"  missing: {show(missing)}")
    if unexpected:
        lines.append(f"  unexpected: {show(unexpected)}")
    if misshaped:
        lines.append("  misshaped: " + ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                                                 for k in misshaped[:4]))
    lines.append(f"  likely cause: {_likely_cause(own, state, missing, unexpected, misshaped, arch_key)}")
    return "\n".join(lines)


def _likely_cause(own: dict, state: dict, missing: list[str], unexpected: list[str], misshaped: list[str],
                  arch_key: str) -> str:
    shared = set(own) & set(state)
    if any(k.startswith("features.") for k in unexpected) and not shared:
        return ("torchvision-style EfficientNet keys (features.*): timm names them differently; "
                "export timm weights instead (timm.create_model(name, pretrained=True).state_dict())")
    if len(shared) < len(own) // 2:
        return f"weights of another architecture: check {arch_key} (or a different timm variant of it)"
    if missing and not unexpected and all(k.endswith(BN_BUFFERS) for k in missing):
        return "BatchNorm buffers absent: the file was saved without buffers"
    if misshaped or not (missing and unexpected):
        return "the same family at another width or depth (e.g. efficientnet_b1 weights for efficientnet_b0)"
    return "a partly different architecture (extra or removed layers)"
