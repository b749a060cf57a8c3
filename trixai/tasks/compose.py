"""Compose a job's config in-process, as the CLI would (for benchmarks and notebooks)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict


def compose_job(overrides: Sequence[str], output_dir: str | Path, config_name: str = "train") -> DictConfig:
    """``conf/<config_name>.yaml`` with ``overrides``, writing to ``output_dir``; ready for ``train(cfg)``."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="trixai.conf", version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    output_dir = str(Path(output_dir).resolve())
    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
        cfg.hydra.runtime.output_dir = output_dir
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra  # a job's config never carries the hydra node (the CLI strips it too)
    return cfg
