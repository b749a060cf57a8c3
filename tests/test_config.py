"""Every config group option composes and instantiates; errors name the culprit and the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from trixai.core.errors import TrixaiError
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


# the attack each objective selects for itself (its authors' kind of adversary); an attack= of the user's wins
OBJECTIVE_ATTACKS = {"standard": "pgd10", "gaussian_noise": "pgd10", "pgd_at": "pgd10", "fast_at": "fgsm",
                     "trades": "pgd10", "trades_awp": "pgd10", "mart": "pgd10", "tri_objective": "pgd10"}


def test_objective_attacks_cover_every_objective():
    assert sorted(OBJECTIVE_ATTACKS) == options("objective")


@pytest.mark.parametrize("objective", sorted(OBJECTIVE_ATTACKS))
def test_each_objective_selects_an_attack_it_can_use_and_evaluates_with_pgd10(compose_cfg, objective):
    cfg = compose_cfg(f"objective={objective}", tiny=False)
    assert HydraConfig.get().runtime.choices["attack"] == OBJECTIVE_ATTACKS[objective]
    built, attack, eval_attack = instantiate(cfg.objective), instantiate(cfg.attack), instantiate(cfg.eval_attack)
    built.check(attack)  # the selected attack fits
    # evaluation: PGD-10 at the training eps (never FGSM, also for fast_at), alpha = eps/4
    assert type(eval_attack) is PGD and eval_attack.steps == 10 and eval_attack.random_start
    assert eval_attack.eps == attack.eps == pytest.approx(8 / 255) and eval_attack.alpha == pytest.approx(2 / 255)


def test_pgd_at_defaults_to_madrys_pgd10_with_alpha_2p5_eps_over_steps(compose_cfg):
    attack = instantiate(compose_cfg("objective=pgd_at", tiny=False).attack)
    assert attack.alpha == pytest.approx(2.5 * attack.eps / attack.steps) and attack.alpha == pytest.approx(2 / 255)


def test_fast_at_selects_fgsm_and_the_evaluation_follows_the_training_eps(compose_cfg):
    cfg = compose_cfg("objective=fast_at", "attack=fgsm", "attack.eps=0.01", tiny=False)
    attack, eval_attack = instantiate(cfg.attack), instantiate(cfg.eval_attack)
    assert type(attack) is FGSM and attack.eps == 0.01
    assert type(eval_attack) is PGD and eval_attack.name == "pgd10" and eval_attack.eps == 0.01
    assert eval_attack.alpha == pytest.approx(0.0025)
    objective = instantiate(cfg.objective)
    assert objective.name == "fast_at" and objective.alpha_ratio == 1.25 and objective.adversary_mode == "train"
    cfg = compose_cfg("objective=fast_at", "eval_attack=null", tiny=False)
    assert cfg.eval_attack is None


def test_fast_at_brings_its_cyclic_rate_and_a_users_scheduler_wins(compose_cfg):
    assert compose_cfg("objective=fast_at", tiny=False).scheduler._target_ == "trixai.training.optim.cyclic"
    assert compose_cfg("objective=fast_at", "scheduler=constant", tiny=False).scheduler._target_ \
        == "trixai.training.optim.constant"
    assert compose_cfg("experiment=demo", tiny=False).scheduler._target_ == "trixai.training.optim.warmup_cosine"
    assert compose_cfg("objective=pgd_at", tiny=False).scheduler._target_ == "torch.optim.lr_scheduler.ExponentialLR"


def test_a_users_attack_wins_over_the_objectives(compose_cfg):
    attack = instantiate(compose_cfg("objective=pgd_at", "attack=pgd7", tiny=False).attack)
    assert type(attack) is PGD and attack.steps == 7
    cfg = compose_cfg("objective=trades", "attack=fgsm", tiny=False)
    assert type(instantiate(cfg.attack)) is FGSM and type(instantiate(cfg.eval_attack)) is FGSM  # eval follows it
    for attack_choice, message in (("pgd10", "cannot use attack=pgd10: choose attack=fgsm$"),
                                   ("none", "cannot use attack=none: choose attack=fgsm$")):
        cfg = compose_cfg("objective=fast_at", f"attack={attack_choice}", tiny=False)
        attack = instantiate(cfg.attack) if cfg.attack else None
        with pytest.raises(TrixaiError, match=message):
            instantiate(cfg.objective).check(attack)


def test_experiments_keep_their_attacks(compose_cfg):
    """The experiments' own attack choices win over their objective's (experiment/demo.yaml: Fast-AT with FGSM at
    2/255, evaluated with PGD-10 at 2/255)."""
    cfg = compose_cfg("experiment=demo", tiny=False)
    attack, eval_attack = instantiate(cfg.attack), instantiate(cfg.eval_attack)
    assert type(attack) is FGSM and attack.eps == pytest.approx(2 / 255)
    assert type(eval_attack) is PGD and eval_attack.steps == 10 and eval_attack.eps == pytest.approx(2 / 255)
    assert cfg.objective._target_.endswith("FastAT")
    cfg = compose_cfg("experiment=demo", "objective=trades", "attack=pgd7", "attack.steps=3", tiny=False)
    assert instantiate(cfg.attack).steps == 3 and instantiate(cfg.eval_attack).steps == 10
    assert compose_cfg("experiment=standard_baseline", tiny=False).attack is None
    cfg = compose_cfg("experiment=finetune_at", tiny=False)
    assert instantiate(cfg.attack).steps == 10 and cfg.objective._target_.endswith("TRADES")


def test_the_tri_objective_ablation_keeps_its_measured_epochs_when_the_demo_changes(compose_cfg):
    """experiment/tri_objective_ablation.yaml builds on the demo but reproduces docs/tri_objective.md's runs: 5 clean
    epochs and one objective epoch, validated once at the end, while the demo trains 2 + 1."""
    demo, ablation = compose_cfg("experiment=demo", tiny=False), compose_cfg("experiment=tri_objective_ablation", tiny=False)
    assert (demo.clean_warmup_epochs, demo.trainer.max_epochs, demo.trainer.check_val_every_n_epoch) == (2, 3, 3)
    assert (ablation.clean_warmup_epochs, ablation.trainer.max_epochs, ablation.trainer.check_val_every_n_epoch) == (5, 6, 6)


def test_published_objective_defaults(compose_cfg):
    built = {name: instantiate(compose_cfg(f"objective={name}", tiny=False).objective)
             for name in ("trades", "trades_awp", "mart", "gaussian_noise", "pgd_at")}
    assert built["trades"].beta == built["mart"].beta == 6.0 and built["trades"].awp_gamma is None
    trades_awp = built["trades_awp"]
    assert trades_awp.name == "trades" and trades_awp.beta == 6.0
    assert trades_awp.awp_gamma == 5e-3 and trades_awp.awp_warmup == 9  # TRADES-AWP: AWP from the 10th epoch
    assert built["gaussian_noise"].sigma == 0.25
    assert instantiate(compose_cfg("objective=gaussian_noise", "objective.sigma=0.5", tiny=False).objective).sigma == 0.5
    assert {n: getattr(o, "adversary_mode", None) for n, o in built.items()} == {
        "trades": "eval", "trades_awp": "eval", "mart": "eval", "gaussian_noise": None, "pgd_at": "train"}
