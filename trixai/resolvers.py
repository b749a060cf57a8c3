"""The OmegaConf resolvers of trixai's shipped configs, all registered by :func:`register`.

The Hydra search-path plugin (``hydra_plugins.trixai_searchpath``) calls :func:`register`, so any Hydra app that
composes trixai's configs resolves them. This module stays light (no torch/timm): the scaling resolvers import
:mod:`trixai.models.scaling` when first resolved. It sits outside the package layers, above ``trixai.models``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from trixai.core.settings import register_schemas


def sweep_group() -> str | None:
    """In a multirun, ``<job name>-<sweep dir name>`` (one W&B group per sweep); otherwise None."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return f"{hydra_cfg.job.name}-{Path(hydra_cfg.sweep.dir).name}"


def phi_resolution(*args: Any) -> int:
    """:func:`trixai.models.scaling.phi_resolution` (``conf/model/efficientnet_phi.yaml``)."""
    from trixai.models.scaling import phi_resolution as resolve

    return resolve(*args)


def sweep_resolution(*args: Any) -> int:
    """:func:`trixai.models.scaling.sweep_resolution` (``conf/ablation/budget.yaml``, ``conf/quick/smoke.yaml``)."""
    from trixai.models.scaling import sweep_resolution as resolve

    return resolve(*args)


def register() -> None:
    """Register (or re-register: idempotent) ``trixai.sweep_group``, ``trixai.phi_resolution`` and
    ``trixai.sweep_resolution``, and the suite groups' schemas (:mod:`trixai.core.settings`)."""
    OmegaConf.register_new_resolver("trixai.sweep_group", sweep_group, replace=True)
    OmegaConf.register_new_resolver("trixai.phi_resolution", phi_resolution, replace=True)
    OmegaConf.register_new_resolver("trixai.sweep_resolution", sweep_resolution, replace=True)
    register_schemas()
