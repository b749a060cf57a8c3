"""Collecting runs for ``trixai-report``: find run directories and read each one's JSON files into a table row."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from trixai.core.errors import TrixaiError

RUN_FILE = "metrics.json"
#: Identity columns (text) in the order they are shown.
ID_COLUMNS = ("sweep", "run", "model", "objective", "varied", "seed", "resolution")
#: Overrides that vary between repeats of one configuration (left out of a run's ``group_key``).
REPEAT_KEYS = ("seed",)

#: One run: identity columns, ``path``, ``group_key``, ``wandb_group``, then its metrics as ``{"a/b": float}``.
Row = dict[str, Any]


def find_run_dirs(dirs: Iterable[str | Path]) -> list[Path]:
    """Every directory at or below ``dirs`` that holds a ``metrics.json``, in path order."""
    runs: list[Path] = []
    for entry in dirs:
        path = Path(entry).expanduser()
        if not path.is_dir():
            raise TrixaiError(f"dir={entry!s}: no such directory (give a multirun dir, a run dir, or a list [a,b])")
        found = sorted({p.parent for p in path.rglob(RUN_FILE)}, key=_natural_key)
        if not found:
            raise TrixaiError(f"dir={entry!s}: no run directories (with {RUN_FILE}) at or below it")
        runs.extend(p for p in found if p not in runs)
    return runs


def _natural_key(path: Path) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in path.parts]


def flatten(data: object, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts as ``{"a/b/c": value}`` (lists and text are skipped, bools become 0/1)."""
    out: dict[str, float] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}/{key}" if prefix else str(key)))
    elif isinstance(data, (bool, int, float)):
        out[prefix] = float(data)
    return out


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise TrixaiError(f"{path}: not readable JSON ({err})") from err


def _hydra_info(run_dir: Path) -> tuple[dict, list[str]]:
    """Config-group choices and command-line overrides Hydra saved in ``run_dir/.hydra``."""
    choices, overrides = {}, []
    hydra_file, overrides_file = run_dir / ".hydra" / "hydra.yaml", run_dir / ".hydra" / "overrides.yaml"
    if hydra_file.exists():
        choices = (yaml.safe_load(hydra_file.read_text()) or {}).get("hydra", {}).get("runtime", {}).get("choices", {})
    if overrides_file.exists():
        overrides = [str(o) for o in yaml.safe_load(overrides_file.read_text()) or []]
    return choices or {}, overrides


def _model_label(model_cfg: dict, fallback: str) -> str:
    name = model_cfg.get("name", fallback)
    if name != "efficientnet_phi":
        return name
    scale = f"variant={model_cfg['variant']}" if model_cfg.get("variant") else f"phi={model_cfg.get('phi', 0)}"
    return f"{name}({scale}{'' if model_cfg.get('se', True) else ',no-se'})"


def _sweep_name(run_dir: Path, roots: Sequence[Path]) -> str:
    multirun = run_dir.parent / "multirun.yaml"
    if multirun.exists():
        return run_dir.parent.name
    for root in roots:
        if root in run_dir.parents or root == run_dir:
            return root.name
    return run_dir.parent.name


def read_run(run_dir: Path, roots: Sequence[Path] = ()) -> Row:
    """One table row: identity columns, then every numeric metric of the run's JSON files (``test/acc``,
    ``profile/flops``, ``robustness/…``, ``explanations/…``)."""
    metrics = _read_json(run_dir / RUN_FILE)
    meta = _read_json(run_dir / "model.json") if (run_dir / "model.json").exists() else {}
    config = meta.get("config", {})
    choices, overrides = _hydra_info(run_dir)
    model_cfg = config.get("model", {})
    objective = choices.get("objective") or str(config.get("objective", {}).get("_target_", "?")).rsplit(".", 1)[-1]
    profile = metrics.get("profile")
    if profile is None and (run_dir / "profile.json").exists():
        profile = _read_json(run_dir / "profile.json")
    row: Row = {
        "sweep": _sweep_name(run_dir, roots),
        "run": run_dir.name,
        "model": _model_label(model_cfg, meta.get("timm_name", choices.get("model", "?"))),
        "objective": objective,
        "seed": meta.get("seed", config.get("seed")),
        "resolution": meta.get("input_size", model_cfg.get("resolution")),
        "path": str(run_dir),
        "group_key": " ".join(o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in REPEAT_KEYS),
        "wandb_group": (config.get("logger") or {}).get("wandb", {}).get("group"),
    }
    row.update(flatten({k: v for k, v in metrics.items() if k != "profile"}))
    if profile is not None:
        row.update({f"profile/{k}": v for k, v in flatten(profile).items()})
    else:
        row.update(_static_profile(run_dir))
    for name in ("robustness", "explanations"):
        if (run_dir / f"{name}.json").exists():
            row.update({f"{name}/{k}": v for k, v in flatten(_read_json(run_dir / f"{name}.json")).items()})
    return row


def _static_profile(run_dir: Path) -> dict[str, float]:
    """Params and FLOPs from the exported model when the run recorded no profile (latency needs a measurement)."""
    if not (run_dir / "model.safetensors").exists():
        return {}
    import torch  # noqa: PLC0415 - only needed for this fallback

    from trixai.models.export import load_model  # noqa: PLC0415
    from trixai.training.profiling import count_flops, count_parameters  # noqa: PLC0415

    model = load_model(run_dir)
    flops = count_flops(model, torch.rand(1, model.in_chans, model.input_size, model.input_size))
    return {"profile/params": float(count_parameters(model)), "profile/flops": float(flops),
            "profile/macs": float(flops // 2)}
