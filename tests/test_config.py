"""Every config group option composes and instantiates; errors name the culprit and the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from trixai.robust.attacks import FGSM, PGD

CONF = Path(__file__).resolve().parents[1] / "trixai" / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize("group", ["model", "dataset", "attack", "objective", "explainer", "trainer", "logger",
                                   "callbacks", "optimizer", "scheduler", "experiment"])
def test_every_option_composes(compose_cfg, group):
    assert options(group), f"no options in conf/{group}"
    for option in options(group):
        compose_cfg(f"{group}={option}", tiny=False)
        assert HydraConfig.get().runtime.choices[group] == option


def test_model_selects_family_optimizer_and_resolution(compose_cfg):
    cfg = compose_cfg("model=efficientnet_b2", tiny=False)
    assert cfg.optimizer._target_ == "torch.optim.RMSprop" and cfg.optimizer.lr == 0.016
    assert cfg.scheduler.gamma == 0.97
    assert cfg.dataset.image_size == 260
    cfg = compose_cfg("model=resnet50", tiny=False)
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.nesterov
    assert cfg.scheduler._target_ == "trixai.training.optim.warmup_cosine"
    cfg = compose_cfg("model=resnet50", "optimizer=adamw", tiny=False)
    assert cfg.optimizer._target_ == "torch.optim.AdamW"
    resolutions = {m: compose_cfg(f"model={m}", tiny=False).model.resolution for m in options("model")
                   if m.startswith("efficientnet_b")}
    assert resolutions == {"efficientnet_b0": 224, "efficientnet_b1": 240, "efficientnet_b2": 260, "efficientnet_b3": 300}


def test_attack_settings_pinned(compose_cfg):
    expected = {"pgd7": 7, "pgd10": 10, "pgd20": 20}
    for name, steps in expected.items():
        attack = instantiate(compose_cfg(f"attack={name}", tiny=False).attack)
        assert isinstance(attack, PGD) and attack.steps == steps and attack.random_start
        assert attack.eps == pytest.approx(8 / 255) and attack.alpha == pytest.approx(2 / 255)
    fgsm = instantiate(compose_cfg("attack=fgsm", tiny=False).attack)
    assert isinstance(fgsm, FGSM) and fgsm.alpha == pytest.approx(8 / 255) and fgsm.steps == 1
    cfg = compose_cfg("attack=none", tiny=False)
    assert cfg.attack is None and cfg.eval_attack is None


def test_image_size_override_wins(compose_cfg):
    cfg = compose_cfg("model=efficientnet_b3", "dataset.image_size=48", tiny=False)
    assert cfg.model.resolution == 300 and cfg.dataset.image_size == 48


def test_unknown_option_lists_allowed(compose_cfg):
    with pytest.raises(ConfigCompositionException) as info:
        compose_cfg("model=efficientnet_b9", tiny=False)
    message = str(info.value)
    assert "efficientnet_b9" in message and "efficientnet_b0" in message and "resnet50" in message


def test_search_path_plugin_serves_a_users_own_app(tmp_path):
    """A user's Hydra app with its own config dir composes trixai's groups (pkg://trixai.conf via the plugin)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    (tmp_path / "experiment").mkdir()
    (tmp_path / "mine.yaml").write_text("defaults:\n  - model: resnet50\n  - attack: pgd20\n  - _self_\nlr: 0.5\n")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        cfg = compose(config_name="mine")
    GlobalHydra.instance().clear()
    assert cfg.model.name == "resnet50" and cfg.attack.steps == 20 and cfg.lr == 0.5
