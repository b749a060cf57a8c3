"""OmegaConf resolvers used by the shipped configs (registered on import of :mod:`trixai.tasks`)."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf


def sweep_group() -> str | None:
    """In a multirun, ``<job name>-<sweep dir name>`` (one W&B group per sweep); otherwise None."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return f"{hydra_cfg.job.name}-{Path(hydra_cfg.sweep.dir).name}"


def register() -> None:
    OmegaConf.register_new_resolver("trixai.sweep_group", sweep_group, replace=True)
