"""MART, Fast-AT and AWP against written-out references (float64); the collapse guard, robust curves, EMA export."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from helpers import WeightRecorder, tiny_cnn, tiny_timm

from trixai.core.errors import TrixaiError
from trixai.robust.attacks import FGSM, PGD
from trixai.tasks.train import train
from trixai.training.objectives import MART, PGDAT, TRADES, FastAT, TriObjective

EPS, ALPHA, STEPS, BETA, GAMMA = 8 / 255, 2 / 255, 3, 6.0, 5e-3


def _data(n: int = 6):
    torch.manual_seed(3)
    return torch.rand(n, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2][:n])


def _grads(loss, model):
    return torch.autograd.grad(loss, list(model.parameters()))


def _same(a, b, atol=1e-12) -> bool:
    return all(torch.allclose(u, v, rtol=0, atol=atol) for u, v in zip(a, b, strict=True))


def reference_mart(model, x, x_adv, y, beta=BETA):
    """Wang et al. 2020, as in the authors' code without its numerical offsets."""
    logits, logits_adv = model(x), model(x_adv)
    adv_probs = F.softmax(logits_adv, dim=1)
    top2 = torch.argsort(adv_probs, dim=1)[:, -2:]
    new_y = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])  # the most likely wrong class
    loss_adv = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0 - adv_probs), new_y)
    nat_probs = F.softmax(logits, dim=1)
    true_probs = nat_probs.gather(1, y[:, None]).squeeze(1)
    kl = F.kl_div(torch.log(adv_probs), nat_probs, reduction="none").sum(dim=1)
    return loss_adv + beta * (kl * (1.0 - true_probs)).mean()


def test_mart_loss_and_gradients_match_reference():
    x, y = _data()
    attack = PGD(eps=EPS, alpha=ALPHA, steps=STEPS, random_start=False)
    model_a, model_b = tiny_cnn().double().train(), tiny_cnn().double().train()
    ours = MART(beta=BETA)(model_a, x, y, attack=attack)
    x_adv = attack(model_b, x, y)  # PGD on CE in eval mode, the same adversary
    ref = reference_mart(model_b, x, x_adv, y)
    assert torch.allclose(ours.loss, ref, rtol=0, atol=1e-12)
    assert _same(_grads(ours.loss, model_a), _grads(ref, model_b))
    assert torch.allclose(model_a[1].running_mean, model_b[1].running_mean, rtol=0, atol=1e-12)
    assert set(ours.terms) == {"bce_adv", "kl_weighted"} and ours.adversarial_logits is not None


def test_mart_refuses_multilabel_targets():
    with pytest.raises(TrixaiError, match="objective=mart is defined on softmax outputs"):
        MART()(tiny_cnn(), torch.rand(2, 3, 8, 8), torch.ones(2, 3), attack=PGD(steps=1))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_fast_at_matches_wong_et_al_written_out(mode):
    """locuslab/fast_adversarial CIFAR10/train_fgsm.py: uniform start, one step of 1.25 eps, projection, with the
    model in train mode (their default and trixai's; ``eval`` as the variant). trixai puts back the running
    statistics the step's forward moved (their code keeps that update): only the training forward moves them."""
    x, y = _data()
    model_a, model_b = tiny_cnn().double().train(), tiny_cnn().double().train()
    torch.manual_seed(7)
    ours = (FastAT() if mode == "train" else FastAT(adversary_mode="eval"))(model_a, x, y, attack=FGSM(eps=EPS))
    torch.manual_seed(7)
    delta = torch.empty_like(x).uniform_(-EPS, EPS)
    start = (x + delta).clamp(0, 1).requires_grad_(True)
    stats = copy.deepcopy(model_b.state_dict())
    model_b.train(mode == "train")
    (grad,) = torch.autograd.grad(F.cross_entropy(model_b(start), y, reduction="sum"), start)
    model_b.load_state_dict(stats)
    model_b.train()
    step = start.detach() + 1.25 * EPS * grad.sign()
    x_adv = (x + (step - x).clamp(-EPS, EPS)).clamp(0, 1)
    ref = F.cross_entropy(model_b(x_adv), y)
    assert torch.allclose(ours.loss, ref, rtol=0, atol=1e-12)
    assert _same(_grads(ours.loss, model_a), _grads(ref, model_b))
    assert torch.allclose(model_a[1].running_mean, model_b[1].running_mean, rtol=0, atol=1e-15)
    assert torch.equal(model_a[1].num_batches_tracked, torch.tensor(1))
    assert (x_adv - x).abs().max() <= EPS + 1e-12 and (x_adv - x).abs().max() > 0.9 * EPS


def _official_awp(model, loss_of, gamma):
    """Wu et al.'s AdvWeightPerturb written out: a proxy copy in train mode takes one SGD step (lr 0.01) on the
    negated loss; each weight (``weight`` keys, dim > 1) moves by gamma * ||w|| * diff / ||diff||."""
    proxy = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(proxy.parameters(), lr=0.01)
    optimizer.zero_grad()
    (-loss_of(proxy)).backward()
    optimizer.step()
    old, new = model.state_dict(), proxy.state_dict()
    diff = {}
    for key in old:
        if old[key].dim() > 1 and "weight" in key:
            d = new[key] - old[key]
            diff[key] = old[key].norm() / (d.norm() + 1e-20) * d
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in diff:
                param.add_(gamma * diff[name])
    return diff


@pytest.mark.parametrize("objective", ["pgd_at", "trades"])
def test_awp_matches_the_official_weight_perturbation(objective):
    x, y = _data()
    attack = PGD(eps=EPS, alpha=ALPHA, steps=STEPS, random_start=False)
    model_a, model_b = tiny_cnn().double().train(), tiny_cnn().double().train()
    original = copy.deepcopy(model_a.state_dict())
    if objective == "pgd_at":
        ours_fn = PGDAT(awp_gamma=GAMMA)
        x_adv = PGDAT().examples(model_b, x, y, attack)  # checked against a written-out PGD in test_objectives

        def loss_of(m):
            return F.cross_entropy(m(x_adv), y)
    else:
        ours_fn = TRADES(beta=BETA, awp_gamma=GAMMA)
        torch.manual_seed(2)
        x_adv = TRADES(beta=BETA).examples(model_b, x, y, attack)

        def loss_of(m):
            logits = m(x)
            kl = F.kl_div(F.log_softmax(m(x_adv), dim=1), F.softmax(logits, dim=1), reduction="batchmean")
            return F.cross_entropy(logits, y) + BETA * kl
    torch.manual_seed(2)
    ours = ours_fn(model_a, x, y, attack=attack)
    diff = _official_awp(model_b, loss_of, GAMMA)
    ref = loss_of(model_b)
    assert torch.allclose(ours.loss, ref, rtol=0, atol=1e-12)
    assert _same(_grads(ours.loss, model_a), _grads(ref, model_b), atol=1e-10)
    # BatchNorm weights/biases are not perturbed; its running stats moved only in the training forward(s)
    assert set(diff) == {"0.weight", "5.weight"}
    assert torch.equal(model_a[1].weight, original["1.weight"])
    assert torch.allclose(model_a[1].running_mean, model_b[1].running_mean, rtol=0, atol=1e-12)
    ours.restore()
    assert all(torch.allclose(v, original[k], rtol=0, atol=1e-15) for k, v in model_a.state_dict().items()
               if k.endswith("weight"))


def test_awp_is_restored_after_the_optimizer_step_in_training():
    """Through Lightning: every step's perturbation comes off right after the optimiser step."""
    from trixai.training.module import TrixModule

    module = TrixModule(tiny_timm(num_classes=3).train(), PGDAT(awp_gamma=GAMMA),
                        attack=PGD(eps=EPS, alpha=ALPHA, steps=1), optimizer=lambda params: torch.optim.SGD(params, lr=0))
    conv = module.model.backbone.conv_stem.weight
    before = conv.detach().clone()
    batch = {"image": torch.rand(4, 3, 32, 32), "target": torch.tensor([0, 1, 2, 1])}
    loss = module.training_step(batch, 0)
    assert not torch.equal(conv, before)  # perturbed for the step
    optimizer = torch.optim.SGD(module.parameters(), lr=0.0)
    module.optimizer_step(0, 0, optimizer, optimizer_closure=loss.backward)
    assert torch.allclose(conv, before, atol=1e-7) and module._after_step is None


@pytest.mark.parametrize(("kwargs", "key"), [({"awp_gamma": 0.0}, "awp_gamma=0.0"),
                                             ({"awp_gamma": 0.5}, "awp_gamma=0.5")])
def test_awp_gamma_out_of_range_names_the_key(kwargs, key):
    with pytest.raises(TrixaiError, match=f"objective.{key}: AWP's relative weight perturbation must lie in"):
        TRADES(**kwargs)


def test_objective_with_an_unusable_attack_lists_those_that_fit():
    with pytest.raises(TrixaiError, match=r"objective=fast_at cannot use attack=pgd10: choose attack=fgsm$"):
        FastAT().check(PGD(steps=10))
    with pytest.raises(TrixaiError, match=r"objective=mart cannot use attack=none: choose attack=fgsm\|pgd7"):
        MART().check(None)
    with pytest.raises(TypeError, match="awp_gamma"):  # AWP is not offered on tri_objective
        TriObjective(awp_gamma=GAMMA)


def test_fast_at_collapse_guard_restores_best_weights_and_stops(compose_cfg, monkeypatch):
    """A planted collapse (held-out PGD accuracy 0.9, then 0.1): training stops, the best epoch's weights return."""
    from trixai.training.collapse import CollapseGuard

    scores = iter([0.9, 0.1, 0.1])
    snapshots = []

    def fake_accuracy(self, pl_module):
        snapshots.append({k: v.clone() for k, v in pl_module.model.state_dict().items()})
        return next(scores)

    monkeypatch.setattr(CollapseGuard, "robust_accuracy", fake_accuracy)
    cfg = compose_cfg("objective=fast_at", "attack=fgsm", "trainer.max_epochs=3", "profile=null", "test=false")
    metrics = train(cfg)
    guard = metrics["collapse_guard"]
    assert [h["pgd_acc"] for h in guard["history"]] == [0.9, 0.1]  # stopped after epoch 1 of 3
    assert guard["collapse"] == {"epoch": 1, "pgd_acc": 0.1, "best_epoch": 0, "best_pgd_acc": 0.9,
                                 "points": guard["collapse"]["points"], "attack": "pgd10"}
    assert 0 < guard["collapse"]["points"] <= 128
    assert metrics["epochs"] == 2
    from trixai.models.export import load_model

    exported = load_model(cfg.paths.output_dir).state_dict()
    assert all(torch.equal(exported[k], v) for k, v in snapshots[0].items())


def test_robust_curves_and_ema_weights_are_validated_tested_and_exported(compose_cfg, tmp_path):
    """EMA (decay 0.5) by hand from the weights after every optimiser step equals the exported model."""
    cfg = compose_cfg("callbacks=ema", "callbacks.ema.decay=0.5", "objective=pgd_at", "trainer.max_epochs=2",
                      "profile=null", "+callbacks.record._target_=helpers.WeightRecorder",
                      "callbacks.model_checkpoint.monitor=null")
    WeightRecorder.states.clear()
    metrics = train(cfg)
    seen = WeightRecorder.states
    ema = [{k: v.clone() for k, v in seen[0].items()}]
    for state in seen[1:]:
        ema.append({k: 0.5 * ema[-1][k] + 0.5 * v if v.is_floating_point() else v for k, v in state.items()})
    from trixai.models.export import load_model

    exported = load_model(cfg.paths.output_dir).state_dict()
    floats = [k for k, v in seen[0].items() if v.is_floating_point()]
    assert all(torch.allclose(exported[k], ema[-1][k], atol=1e-6) for k in floats)
    assert not all(torch.allclose(exported[k], seen[-1][k], atol=1e-6) for k in floats)
    curves = json.loads((tmp_path / "run" / "robust_curves.json").read_text())
    assert curves["metric"] == "rob_acc" and [p["epoch"] for p in curves["train"]] == [0, 1]
    assert [p["epoch"] for p in curves["val"]] == [0, 1]
    assert (tmp_path / "run" / "robust_curves.png").stat().st_size > 1000
    assert metrics["val"]["rob_acc"] == pytest.approx(curves["val"][-1]["value"])


def test_gaussian_noise_trains_and_records_sigma(compose_cfg):
    """``objective=gaussian_noise objective.sigma=0.5`` trains end to end; sigma is in the run's resolved config."""
    cfg = compose_cfg("objective=gaussian_noise", "objective.sigma=0.5", "profile=null", "test=false")
    metrics = train(cfg)
    from trixai.models.export import load_model

    config = load_model(cfg.paths.output_dir).meta["config"]
    assert config["objective"] == {"_target_": "trixai.training.objectives.GaussianNoise", "sigma": 0.5}
    import csv
    from pathlib import Path
    rows = list(csv.DictReader((Path(cfg.paths.output_dir) / "csv" / "metrics.csv").open()))
    assert any(row.get("train/ce_noisy") for row in rows)
    assert metrics["epochs"] == 1
