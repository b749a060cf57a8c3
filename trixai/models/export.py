"""Model files: export (safetensors + model.json) and :func:`load_model`.

Loading never unpickles arbitrary objects: ``.safetensors`` holds tensors only, ``.ckpt`` files are read with
``torch.load(weights_only=True)``, and a model is rebuilt only through a ``trixai.`` factory named in its metadata.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from trixai.core.errors import TrixaiError
from trixai.core.files import atomic_write_json
from trixai.models.factory import TrixModel

FORMAT = "trixai-model/1"
MODEL_FILE, META_FILE = "model.safetensors", "model.json"
PACKAGES = ("trixai", "torch", "torchvision", "timm", "lightning", "torchmetrics", "hydra-core", "numpy")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_state(start: Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the repository holding the trixai sources (or ``start``), if any."""
    where = start or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return {"commit": None}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                capture_output=True, text=True, timeout=5)
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}


def model_metadata(model: TrixModel, *, config: dict, seed: int | None) -> dict[str, Any]:
    """Everything needed to rebuild, reproduce and audit a trained model (the content of model.json)."""
    return {
        "format": FORMAT,
        "class_names": list(model.class_names),
        "task": model.task,
        "timm_name": model.name,
        "family": model.family,
        "in_chans": model.in_chans,
        "input_size": model.input_size,
        "mean": model.mean.flatten().tolist(),
        "std": model.std.flatten().tolist(),
        "cam_layers": model.cam_layers,
        "seed": seed,
        "config": config,
        "versions": package_versions(),
        "git": git_state(),
        "command": " ".join(sys.argv),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def export_model(model: TrixModel, run_dir: str | Path, meta: dict, *, fp16: bool = False) -> Path:
    """Write ``model.safetensors`` (+ ``model.fp16.safetensors``) and ``model.json`` into ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(run_dir / MODEL_FILE))
    if fp16:
        half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        save_file(half, str(run_dir / "model.fp16.safetensors"))
    atomic_write_json(run_dir / META_FILE, meta)
    return run_dir / MODEL_FILE


def rebuild_model(meta: dict) -> TrixModel:
    """Build the untrained architecture described by ``meta`` (no weights are fetched)."""
    if meta.get("format") != FORMAT:
        raise TrixaiError(f"model metadata format {meta.get('format')!r} is not {FORMAT!r}")
    model_cfg = dict(meta["config"]["model"])
    target = str(model_cfg.get("_target_", ""))
    if not target.startswith("trixai."):
        raise TrixaiError(f"refusing to build model from _target_={target!r}: only trixai factories are allowed")
    for key in ("pretrained", "weights"):
        model_cfg.pop(key, None)
    model = instantiate(
        OmegaConf.create(model_cfg), num_classes=len(meta["class_names"]), class_names=meta["class_names"],
        task=meta["task"], in_chans=meta["in_chans"], resolution=meta["input_size"], mean=meta["mean"],
        std=meta["std"], pretrained=False, weights=None, _convert_="all",
    )
    return model


def _read_checkpoint(path: Path) -> tuple[dict, dict]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise TrixaiError(f"{path}: not a readable trixai checkpoint ({type(err).__name__}: {err})") from err
    if "trixai" not in checkpoint or "state_dict" not in checkpoint:
        raise TrixaiError(f"{path}: a Lightning checkpoint without trixai metadata (was it written by trixai-train?)")
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    return checkpoint["trixai"], state


def _resolve(path: Path) -> tuple[dict, dict]:
    if path.is_dir():
        if (path / MODEL_FILE).exists():
            return _resolve(path / MODEL_FILE)
        last = path / "checkpoints" / "last.ckpt"
        if last.exists():
            return _read_checkpoint(last)
        raise TrixaiError(f"{path}: no {MODEL_FILE} or checkpoints/last.ckpt in this directory")
    if path.suffix == ".ckpt":
        return _read_checkpoint(path)
    if path.suffix == ".safetensors":
        meta_path = path.parent / META_FILE
        if not meta_path.exists():
            raise TrixaiError(f"{path}: expected its metadata next to it at {meta_path}")
        return json.loads(meta_path.read_text()), load_file(str(path))
    raise TrixaiError(f"{path}: expected a run directory, a .ckpt or a .safetensors file")


def load_model(path: str | Path, *, map_location: str | torch.device = "cpu") -> TrixModel:
    """Rebuild a trained model from a run dir, a ``.ckpt`` or ``model.safetensors`` (+ ``model.json``).

    Returns the model in eval mode, taking [0, 1] images, with ``.class_names`` in training order and
    ``.meta`` holding the metadata (config, versions, git commit, metrics).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise TrixaiError(f"{path}: no such file or directory")
    meta, state = _resolve(path)
    model = rebuild_model(meta)
    state = {k: v.float() if v.dtype == torch.float16 else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise TrixaiError(f"{path}: weights do not fit the architecture (missing {missing[:5]}, unexpected {unexpected[:5]})")
    model.meta = meta
    return model.to(map_location).eval()
