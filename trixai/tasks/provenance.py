"""``provenance.json``: what wrote the files of a directory (command, time, config, versions, git commit, the model's
origin), one entry per task (``eval``, ``explain``, ``audit``), read by the HTML report. A training run keeps the
same facts in ``model.json``."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from trixai.core.files import atomic_write_json, json_safe
from trixai.models.export import MODEL_FILE, git_state, package_versions
from trixai.models.external import file_sha256

PROVENANCE_FILE = "provenance.json"


def run_model_origin(ckpt: str | Path, meta: Mapping) -> dict:
    """The origin of a model trixai trained: its weights file, SHA-256, architecture and training commit."""
    path = Path(ckpt).expanduser()
    weights = path / MODEL_FILE if (path / MODEL_FILE).is_file() else path / "checkpoints" / "last.ckpt"
    weights = weights if path.is_dir() else path
    return {"source": "trixai run", "file": str(weights.resolve()),
            "sha256": file_sha256(weights) if weights.is_file() else None,
            "architecture": meta.get("timm_name"),
            "metadata": {k: meta.get(k) for k in ("timm_name", "task", "class_names", "in_chans", "input_size",
                                                   "mean", "std") if meta.get(k) is not None},
            "metadata_from": {"all fields": f"model.json of the run (trained at git {(meta.get('git') or {}).get('commit')})"}}


def config_record(cfg: DictConfig, dataset: Mapping | None = None) -> dict:
    """The command's config, resolved, with ``dataset`` (already resolved for the model's input size) in place of
    the group's own, whose ``${model.resolution}`` an eval/explain config cannot resolve."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain["dataset"] = dict(dataset) if dataset is not None else None
    return OmegaConf.to_container(OmegaConf.create(plain), resolve=True)


def write_provenance(out_dir: str | Path, task: str, *, config: object, model: Mapping | None,
                     dataset: str | None = None, command: str | None = None) -> Path:
    """Add (or replace) ``task``'s entry in ``out_dir/provenance.json``."""
    path = Path(out_dir) / PROVENANCE_FILE
    entries = json.loads(path.read_text()) if path.is_file() else {}
    entries[task] = json_safe({
        "command": command or " ".join(sys.argv),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(), "git": git_state(), "config": config,
        "model": dict(model) if model else None, "dataset": dataset,
    })
    atomic_write_json(path, entries)
    return path
