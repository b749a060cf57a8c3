"""``trixai-eval``: the robustness suite on a trained model and its recorded (or a chosen) dataset split."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from trixai.core.errors import TrixaiError
from trixai.models.export import load_model
from trixai.suites.corruption import CorruptionSuite
from trixai.suites.robustness import RobustnessSuite
from trixai.suites.runner import SuiteRun, run_suites
from trixai.tasks.audit import check_first_batch, external_spec, open_external
from trixai.tasks.html_report import write_run_report
from trixai.tasks.loggers import resolve_mode
from trixai.tasks.provenance import config_record, run_model_origin, write_provenance
from trixai.tasks.quiet import quiet_third_party

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
    quiet_third_party()
    if cfg.split not in SPLITS:
        raise TrixaiError(f"split={cfg.split!r} is not one of {list(SPLITS)}")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else str(cfg.device)
    spec = external_spec(cfg)
    if spec is None:
        ckpt = Path(str(cfg.ckpt)).expanduser()
        model = load_model(ckpt, map_location=device)
        meta = getattr(model, "meta", {})
        data_cfg = dataset_config(cfg, meta, model.input_size)
        bundle = instantiate(data_cfg, _convert_="all").load()
        if list(bundle.info.class_names) != list(model.class_names):
            raise TrixaiError(f"dataset classes {list(bundle.info.class_names)} differ from the model's "
                              f"{list(model.class_names)} (order matters)")
        origin = run_model_origin(ckpt, meta)
    else:  # a model trixai did not train (the external keys)
        ckpt = spec.path
        model, bundle, data_cfg = open_external(cfg, spec, device)
        meta, origin = {"timm_name": model.name}, spec.provenance()
    loader = DataLoader(bundle.split(cfg.split), batch_size=int(cfg.batch_size), shuffle=False, num_workers=0)
    check_first_batch(model, next(iter(loader)), f"the {cfg.split} split of {data_cfg['_target_'].rsplit('.', 1)[-1]}")
    if cfg.robustness is None and cfg.get("corruptions") is None:
        raise TrixaiError("robustness=none and no corruptions: trixai-eval needs a suite (robustness=cpu or "
                          "robustness=full, and/or corruptions=auto|dermoscopy|chest_xray|generic)")
    robust = cfg.robustness is not None
    suite = RobustnessSuite.from_config(OmegaConf.to_container(cfg.robustness, resolve=True) if robust else None,
                                        seed=int(cfg.seed))
    corruptions = CorruptionSuite.from_config(
        OmegaConf.to_container(cfg.corruptions, resolve=True) if cfg.get("corruptions") is not None else None,
        dataset=data_cfg.get("flag") or bundle.info.name, seed=int(cfg.seed))
    out_dir = Path(cfg.out_dir) if cfg.out_dir else (_run_dir(ckpt) if spec is None else Path(cfg.paths.output_dir))
    source = {"model": str(ckpt), "timm_name": meta.get("timm_name"), "dataset": data_cfg.get("_target_"),
              "split": cfg.split, "git": meta.get("git", {}).get("commit")}
    wandb_run = _wandb(cfg, meta, out_dir, config_record(cfg, data_cfg))
    try:
        run = SuiteRun(model, robustness=suite, report_robustness=robust, device=device,
                       partial_dir=out_dir / "partial" if robust else None, channels_last=bool(cfg.channels_last),
                       corruptions=corruptions)
        flat = run_suites(run, loader, out_dir, progress=bool(cfg.progress), source=source, wandb_run=wandb_run)
    finally:
        if wandb_run is not None:
            wandb_run.finish()
    write_provenance(out_dir, "eval", config=config_record(cfg, data_cfg), model=origin,
                     dataset=data_cfg.get("_target_"))
    reports = [out_dir / "robustness.md"] * robust + [out_dir / "corruptions.md"] * (corruptions is not None)
    print(f"reports: {', '.join(map(str, reports))}; all results: {write_run_report(out_dir)}")
    return flat


def _wandb(cfg: DictConfig, meta: dict, out_dir: Path, config: dict):
    mode = resolve_mode(str(cfg.wandb.mode))
    if mode == "disabled":
        return None
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    return wandb.init(project=cfg.wandb.project, name=f"eval-{meta.get('timm_name', 'model')}", job_type="eval",
                      dir=str(out_dir), mode=mode, config=config)
