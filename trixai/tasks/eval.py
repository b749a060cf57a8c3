"""``trixai-eval``: the robustness suite on a trained model and its recorded (or a chosen) dataset split."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from trixai.errors import TrixaiError, user_errors
from trixai.io import load_model
from trixai.loggers import resolve_mode
from trixai.robust.evaluate import MaskingSettings, robustness_suite
from trixai.tasks.values import as_list, parse_eps

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


def dataset_config(cfg: DictConfig, meta: dict, input_size: int) -> dict:
    """The dataset recorded in the model's metadata; a chosen config (``dataset=synthetic_cxr``) replaces it,
    keys without a ``_target_`` (``+dataset.n_test=32``) update it."""
    recorded = dict(meta.get("config", {}).get("dataset") or {})
    chosen = cfg.get("dataset")
    chosen = OmegaConf.to_container(chosen, resolve=False) if chosen is not None else {}
    if chosen.get("_target_"):
        resolved = OmegaConf.create({"model": {"resolution": input_size}, "paths": cfg.paths, "dataset": chosen})
        return OmegaConf.to_container(resolved.dataset, resolve=True)
    if not recorded:
        raise TrixaiError(f"{cfg.ckpt}: the model's metadata records no dataset; choose one with dataset=<name> "
                          "(e.g. dataset=synthetic_lesions)")
    return {**recorded, **chosen}


def _run_dir(ckpt: Path) -> Path:
    if ckpt.is_dir():
        return ckpt
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Load the model and data, run the suite, write the reports; returns the flat metrics."""
    if cfg.split not in SPLITS:
        raise TrixaiError(f"split={cfg.split!r} is not one of {list(SPLITS)}")
    ckpt = Path(str(cfg.ckpt)).expanduser()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else str(cfg.device)
    model = load_model(ckpt, map_location=device)
    meta = getattr(model, "meta", {})
    data_cfg = dataset_config(cfg, meta, model.input_size)
    bundle = instantiate(data_cfg, _convert_="all").load()
    if list(bundle.info.class_names) != list(model.class_names):
        raise TrixaiError(f"dataset classes {list(bundle.info.class_names)} differ from the model's "
                          f"{list(model.class_names)} (order matters)")
    loader = DataLoader(bundle.split(cfg.split), batch_size=int(cfg.batch_size), shuffle=False, num_workers=0)
    attacks = [str(name) for name in as_list(cfg.attacks)]
    overrides = OmegaConf.to_container(cfg.attack_settings, resolve=True) or {}
    unknown = sorted(set(overrides) - set(attacks))
    if unknown:
        raise TrixaiError(f"attack_settings has entries {unknown} for attacks not in attacks={attacks}")
    out_dir = Path(cfg.out_dir) if cfg.out_dir else _run_dir(ckpt)
    source = {"model": str(ckpt), "timm_name": meta.get("timm_name"), "dataset": data_cfg.get("_target_"),
              "split": cfg.split, "git": meta.get("git", {}).get("commit")}
    wandb_run = _wandb(cfg, meta, out_dir)
    try:
        flat = robustness_suite(
            model, loader, attacks={name: overrides.get(name) for name in attacks}, eps=parse_eps(cfg.eps),
            out_dir=out_dir, masking_settings=MaskingSettings(**cfg.masking), early_stop=bool(cfg.early_stop),
            progress=bool(cfg.progress), max_points=cfg.max_points, device=device, source=source, wandb_run=wandb_run,
            seed=int(cfg.seed), channels_last=bool(cfg.channels_last),
        )
    finally:
        if wandb_run is not None:
            wandb_run.finish()
    log.info("robustness report: %s", out_dir / "robustness.md")
    print(f"robustness report: {out_dir / 'robustness.md'}")
    return flat


def _wandb(cfg: DictConfig, meta: dict, out_dir: Path):
    mode = resolve_mode(str(cfg.wandb.mode))
    if mode == "disabled":
        return None
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    return wandb.init(project=cfg.wandb.project, name=f"eval-{meta.get('timm_name', 'model')}", job_type="eval",
                      dir=str(out_dir), mode=mode, config=OmegaConf.to_container(cfg, resolve=True))


@hydra.main(version_base="1.3", config_path="pkg://trixai.conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors():
        evaluate(cfg)
