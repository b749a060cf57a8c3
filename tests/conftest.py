"""Shared fixtures: the real config tree composed in-process, shrunk to tiny models and images."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(min(2, torch.get_num_threads()))

# Tiny but real: timm's test EfficientNet, 32 px images, a few dozen samples, one epoch of two batches.
TINY = [
    "model.name=test_efficientnet",
    "model.resolution=32",
    "dataset.n_train=64",
    "dataset.n_val=28",
    "dataset.n_test=28",
    "data.batch_size=16",
    "data.eval_batch_size=32",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1",
    "+trainer.limit_train_batches=2",
    "trainer.enable_progress_bar=false",
    "logger=csv",
    "profile.batch_sizes=[1,2]", "profile.train_batch=2", "profile.warmup=0", "profile.repeats=1",
    "robustness.attacks=[clean,fgsm]", "robustness.masking.points=4", "robustness.masking.steps=2",
    "explanation.max_points=4", "explanation.metrics.manipulation.points=2", "explanation.metrics.manipulation.steps=2",
]
# Group-specific shrinking, dropped when the test picks another option of that group.
TINY_DEFAULTS = {"dataset": ["dataset.min_per_class=4"], "attack": ["attack=pgd7", "attack.steps=2"]}


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose ``conf/<config_name>.yaml`` with overrides, as the CLI would, with run files under tmp_path."""

    def _compose(*overrides: str, config_name: str = "train", tiny: bool = True) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module="trixai.conf", version_base="1.3"):
            shrink = list(TINY)
            for group, extra in TINY_DEFAULTS.items():
                if not any(o.startswith(f"{group}=") for o in overrides):
                    shrink += extra
            cfg = compose(config_name=config_name, overrides=[*(shrink if tiny else []), *overrides],
                          return_hydra_config=True)
        with open_dict(cfg):
            cfg.paths.root_dir = str(tmp_path)
            cfg.paths.output_dir = str(tmp_path / "run")
            cfg.paths.data_dir = str(tmp_path / "data")
            cfg.hydra.runtime.output_dir = str(tmp_path / "run")
        HydraConfig().set_config(cfg)
        with open_dict(cfg):
            del cfg.hydra  # a job's config never carries the hydra node (the CLI strips it too)
        return cfg

    yield _compose
    GlobalHydra.instance().clear()
