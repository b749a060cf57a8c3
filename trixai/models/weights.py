"""Local weight files: read a state dict safely and apply it to a timm backbone, explaining any mismatch.

Files: ``.safetensors`` or a torch pickle (``.pth``/``.pt``/``.bin``/``.ckpt``) read with
``weights_only=True`` (tensors only, never arbitrary objects). Layouts: a plain state dict, or one nested under
``state_dict``/``model``/``model_state_dict``/``state_dict_ema``; the prefixes ``module.`` (DataParallel/DDP),
``model.`` (Lightning) and ``backbone.`` (a trixai ``model.safetensors``, whose normalisation buffers are
dropped) are removed. timm and torchvision share the ResNet key names, so torchvision ResNet weights load into
timm's ResNet. Program archives (TorchScript, torch.export ``.pt2``: :func:`program_format`) carry their own
architecture and are refused here with that said. BatchNorm's ``num_batches_tracked`` counters may be absent (files
converted from other frameworks have none): they keep the model's values, as ``load_state_dict`` does.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from timm.models import adapt_input_conv
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase

from trixai.core.errors import TrixaiError

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
NESTED_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema")
PREFIXES = ("module.", "model.", "backbone.")
TRIXAI_BUFFERS = ("mean", "std")  # a trixai model.safetensors: the backbone plus its input normalisation
BN_STATISTICS = ("running_mean", "running_var")
BN_COUNTER = "num_batches_tracked"
#: Program formats (:func:`program_format`) as messages name them, and how to get their tensors as a state dict.
PROGRAM_NAMES = {"TorchScript": "a TorchScript", "ExportedProgram": "an ExportedProgram (torch.export)"}
PROGRAM_WEIGHTS = {"TorchScript": "torch.jit.load(path).state_dict()",
                   "ExportedProgram": "torch.export.load(path).module().state_dict()"}


def program_format(path: str | Path) -> str | None:
    """``'TorchScript'`` or ``'ExportedProgram'`` (``torch.export.save``) when ``path`` is such an archive, a model
    with its architecture; None for anything else (a state dict, ``torch.save`` writes a zip too)."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if any(name.endswith("/archive_format") and archive.read(name).strip() == b"pt2" for name in names):
            return "ExportedProgram"
        if any("/code/" in name for name in names):
            return "TorchScript"
    return None


def read_state_dict(path: str | Path, *, key: str = "model.weights") -> dict[str, Tensor]:
    """The tensors of a weights file as a flat state dict (see the module docstring for layouts)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TrixaiError(f"{key}={str(path)!r}: no such file")
    program = program_format(path)
    if program is not None:
        raise TrixaiError(f"{key}={str(path)!r} is {PROGRAM_NAMES[program]} file (a model with its own architecture), "
                          f"not a state dict: save its tensors, torch.save({PROGRAM_WEIGHTS[program]}, 'weights.pth')")
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
    channel, or repeated and rescaled); absent BatchNorm ``num_batches_tracked`` counters keep the backbone's
    values (0 in a new model), logged once with their count. Any other missing, unexpected or misshaped key is an
    error that lists them with the likely cause (``arch_key``: the config key that named the architecture).
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
    counters = set(_batchnorm_counters(backbone)) - set(state)
    missing = sorted(set(own) - set(state) - set(reinit) - counters)
    unexpected = sorted(set(state) - set(own))
    misshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or misshaped:
        raise TrixaiError(_mismatch_message(backbone, source, arch_key, own, state, missing, unexpected, misshaped))
    if counters:
        log.info("%s: %d BatchNorm %s counters absent; they keep the model's values (0 in a new model), as "
                 "load_state_dict does (they matter only for BatchNorm with momentum=None)", source, len(counters),
                 BN_COUNTER)
    backbone.load_state_dict(state, strict=False)
    return reinit


def _batchnorm_counters(module: nn.Module) -> list[str]:
    """The state-dict keys of the ``num_batches_tracked`` buffers that BatchNorm's ``_load_from_state_dict`` fills
    in when a (version-less) state dict lacks them: those of the norm layers tracking running statistics."""
    return [f"{name}.{BN_COUNTER}" if name else BN_COUNTER for name, child in module.named_modules()
            if isinstance(child, _NormBase) and child.track_running_stats]


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
    if missing and not unexpected and all(k.endswith(BN_STATISTICS) for k in missing):
        return "BatchNorm buffers absent: the file was saved without buffers"
    if misshaped or not (missing and unexpected):
        return "the same family at another width or depth (e.g. efficientnet_b1 weights for efficientnet_b0)"
    return "a partly different architecture (extra or removed layers)"
