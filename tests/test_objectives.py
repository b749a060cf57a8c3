"""TRADES, PGD-AT and Gaussian-noise training against independent implementations of their published
definitions; the adversary's train/eval mode and what it leaves in the model."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import state_snapshot, tiny_cnn

from trixai.core.errors import TrixaiError
from trixai.robust.attacks import FGSM, PGD
from trixai.training.objectives import MART, PGDAT, TRADES, FastAT, GaussianNoise, Standard, TriObjective

EPS, ALPHA, STEPS, BETA = 8 / 255, 2 / 255, 3, 6.0


def reference_trades(model, x, y, detach_clean=False):
    """Zhang et al. (official code) written out: eval-mode inner max on summed KL, then CE + beta * KL/batch."""
    was_training = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        p_clean = F.softmax(model(x), dim=1)
    x_adv = x + 0.001 * torch.randn_like(x)
    for _ in range(STEPS):
        x_adv.requires_grad_(True)
        loss_kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_clean, reduction="sum")
        grad = torch.autograd.grad(loss_kl, x_adv)[0]
        x_adv = x_adv.detach() + ALPHA * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - EPS), x + EPS).clamp(0.0, 1.0)
    for p in model.parameters():
        p.requires_grad_(True)
    model.train(was_training)
    logits = model(x)
    logits_adv = model(x_adv)
    p_target = F.softmax(logits.detach() if detach_clean else logits, dim=1)
    kl = F.kl_div(F.log_softmax(logits_adv, dim=1), p_target, reduction="sum") / len(x)
    return F.cross_entropy(logits, y) + BETA * kl


def test_trades_loss_and_gradients_match_reference():
    x, y = torch.rand(6, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])  # float64: exact
    attack = PGD(eps=EPS, alpha=ALPHA, steps=STEPS)
    model_a, model_b = tiny_cnn().double().train(), tiny_cnn().double().train()
    torch.manual_seed(11)
    ours = TRADES(beta=BETA)(model_a, x, y, attack=attack)
    torch.manual_seed(11)
    ref = reference_trades(model_b, x, y)
    assert torch.allclose(ours.loss, ref, rtol=0, atol=1e-12)
    grads_a = torch.autograd.grad(ours.loss, list(model_a.parameters()))
    grads_b = torch.autograd.grad(ref, list(model_b.parameters()))
    assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(grads_a, grads_b, strict=True))
    assert set(ours.terms) == {"ce", "kl"}
    # BatchNorm saw the clean and the adversarial batch in separate forwards, exactly like the reference.
    assert torch.allclose(model_a[1].running_mean, model_b[1].running_mean, rtol=0, atol=1e-12)


def test_trades_clean_branch_not_detached():
    """The KL gradient flows into f(x) too: a detached clean distribution gives the same loss, another gradient."""
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    model_a, model_b = tiny_cnn().train(), tiny_cnn().train()
    torch.manual_seed(5)
    ours = TRADES(beta=BETA)(model_a, x, y, attack=PGD(eps=EPS, alpha=ALPHA, steps=STEPS))
    torch.manual_seed(5)
    detached = reference_trades(model_b, x, y, detach_clean=True)
    assert torch.allclose(ours.loss, detached, atol=1e-6)
    grad_ours = torch.autograd.grad(ours.loss, model_a[-1].weight)[0]
    grad_detached = torch.autograd.grad(detached, model_b[-1].weight)[0]
    assert not torch.allclose(grad_ours, grad_detached, atol=1e-6)


def test_trades_restores_mode_and_needs_pgd_attack():
    model = tiny_cnn().train()
    modes = state_snapshot(model)[1]
    TRADES()(model, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), attack=PGD(steps=1))
    assert state_snapshot(model)[1] == modes
    model.eval()
    TRADES()(model, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), attack=PGD(steps=1))
    assert not model.training
    with pytest.raises(TrixaiError, match="attack=fgsm|pgd"):
        TRADES().check(None)


def reference_pgd(model, x, y, *, train: bool):
    """Madry et al.'s PGD on CE written out (no random start), the model in train (batch statistics) or eval mode;
    the running statistics the attack's forwards moved are put back afterwards, as trixai does."""
    state = copy.deepcopy(model.state_dict())
    was_training = model.training
    model.train(train)
    x_adv = x.clone()
    for _ in range(2):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y, reduction="sum"), x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + ALPHA * grad.sign(), x - EPS), x + EPS).clamp(0.0, 1.0)
    model.load_state_dict(state)
    model.train(was_training)
    return x_adv


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_pgd_at_is_ce_on_the_adversary_made_in_its_mode(mode):
    """PGD-AT's default adversary runs in train mode (Madry et al.'s code); ``eval`` is the frozen-eval attack."""
    x, y = torch.rand(4, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    model_a, model_b = tiny_cnn().double().train(), tiny_cnn().double().train()
    attack = PGD(eps=EPS, alpha=ALPHA, steps=2, random_start=False)
    objective = PGDAT() if mode == "train" else PGDAT(adversary_mode="eval")
    out = objective(model_a, x, y, attack=attack)
    x_adv = reference_pgd(model_b, x, y, train=mode == "train")
    ref = F.cross_entropy(model_b(x_adv), y)
    assert torch.allclose(out.loss, ref, rtol=0, atol=1e-12)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(
        torch.autograd.grad(out.loss, list(model_a.parameters())),
        torch.autograd.grad(ref, list(model_b.parameters())), strict=True))
    # the running statistics moved in the training forward only, exactly as in the reference
    assert torch.equal(model_a[1].num_batches_tracked, torch.tensor(1))
    assert torch.allclose(model_a[1].running_mean, model_b[1].running_mean, rtol=0, atol=1e-15)
    if mode == "eval":
        assert torch.equal(x_adv, attack(tiny_cnn().double().train(), x, y))  # the registry attack itself
    else:  # batch statistics change the example: the mode is not ignored
        assert not torch.allclose(x_adv, reference_pgd(tiny_cnn().double(), x, y, train=False))


class ModeSpy:
    """Records the BatchNorm's ``training`` flag at every forward."""

    def __init__(self, module):
        self.modes: list[bool] = []
        module.register_forward_hook(lambda m, args, out: self.modes.append(m.training))


ADVERSARIES = {
    "pgd_at": (lambda mode: PGDAT(adversary_mode=mode), PGD(eps=EPS, alpha=ALPHA, steps=2)),
    "fast_at": (lambda mode: FastAT(adversary_mode=mode), FGSM(eps=EPS)),
    "trades": (lambda mode: TRADES(adversary_mode=mode), PGD(eps=EPS, alpha=ALPHA, steps=2)),
    "mart": (lambda mode: MART(adversary_mode=mode), PGD(eps=EPS, alpha=ALPHA, steps=2)),
    "tri_objective": (lambda mode: TriObjective(adversary_mode=mode).trades, PGD(eps=EPS, alpha=ALPHA, steps=2)),
}


@pytest.mark.parametrize("name", sorted(ADVERSARIES))
@pytest.mark.parametrize("start_training", [True, False])
def test_adversary_mode_runs_in_that_mode_and_leaves_no_trace(name, start_training):
    """``train``: every forward of the adversary sees BatchNorm in training mode, yet running_mean, running_var and
    num_batches_tracked are unchanged afterwards; ``eval``: BatchNorm in eval mode. Both: modes, requires_grad and
    parameter .grad as before, and the two modes give different examples."""
    build, attack = ADVERSARIES[name]
    x, y = torch.rand(6, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    examples = {}
    for mode in ("train", "eval"):
        model = tiny_cnn().train()
        with torch.no_grad():
            model(torch.rand(6, 3, 16, 16) * 2)  # running statistics away from their initial 0 / 1
        model.train(start_training)
        model[0].weight.requires_grad_(False)
        before, modes = state_snapshot(model)
        flags = [p.requires_grad for p in model.parameters()]
        spy = ModeSpy(model[1])
        torch.manual_seed(4)
        examples[mode] = build(mode).examples(model, x, y, attack)
        assert spy.modes and all(m == (mode == "train") for m in spy.modes)
        after, modes_after = state_snapshot(model)
        assert all(torch.equal(before[k], after[k]) for k in before), mode  # buffers and weights untouched
        assert modes_after == modes and [p.requires_grad for p in model.parameters()] == flags
        assert all(p.grad is None for p in model.parameters())
        assert (examples[mode] - x).abs().max() <= EPS + 1e-6
    assert not torch.allclose(examples["train"], examples["eval"])


def test_adversary_modes_default_to_the_authors_code_and_bad_values_name_the_key():
    assert PGDAT().adversary_mode == FastAT().adversary_mode == "train"
    assert TRADES().adversary_mode == MART().adversary_mode == TriObjective().adversary_mode == "eval"
    for cls in (PGDAT, FastAT, TRADES, MART, TriObjective):
        with pytest.raises(TrixaiError, match=r"objective.adversary_mode='batch' is not one of \['train', 'eval'\]"):
            cls(adversary_mode="batch")


def test_gaussian_noise_is_ce_on_the_unclamped_noisy_batch():
    """Cohen et al. 2019 (code/train.py): CE(f(x + sigma * n), y), n ~ N(0, I), no clamping to [0, 1]."""
    x, y = torch.rand(6, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    model_a, model_b = tiny_cnn().double().train(), tiny_cnn().double().train()
    torch.manual_seed(9)
    out = GaussianNoise(sigma=0.5)(model_a, x, y, attack=PGD())
    torch.manual_seed(9)
    noisy = x + 0.5 * torch.randn_like(x)
    ref = F.cross_entropy(model_b(noisy), y)
    assert torch.allclose(out.loss, ref, rtol=0, atol=1e-12) and set(out.terms) == {"ce_noisy"}
    assert torch.allclose(out.logits, model_b(noisy), rtol=0, atol=1e-12)
    assert noisy.min() < 0 and noisy.max() > 1  # the reference is unclamped, and clamping would change the loss:
    assert not torch.allclose(out.loss, F.cross_entropy(tiny_cnn().double().train()(noisy.clamp(0, 1)), y), atol=1e-6)
    assert GaussianNoise().sigma == 0.25


def test_gaussian_noise_at_sigma_zero_is_standard():
    x, y = torch.rand(4, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    model_a, model_b = tiny_cnn().double().train(), tiny_cnn().double().train()
    w = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    noisy = GaussianNoise(sigma=0.0)(model_a, x, y, weight=w)
    plain = Standard()(model_b, x, y, weight=w)
    assert torch.equal(noisy.loss, plain.loss) and torch.equal(noisy.logits, plain.logits)
    assert all(torch.equal(a, b) for a, b in zip(torch.autograd.grad(noisy.loss, list(model_a.parameters())),
                                                torch.autograd.grad(plain.loss, list(model_b.parameters())), strict=True))
    with pytest.raises(TrixaiError, match="objective.sigma=-0.1"):
        GaussianNoise(sigma=-0.1)


def test_standard_class_weighted_and_multilabel_masking():
    model = tiny_cnn(num_classes=3).train()
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 2])
    w = torch.tensor([1.0, 2.0, 0.5])
    out = Standard()(model, x, y, weight=w)
    assert torch.allclose(out.loss, F.cross_entropy(out.logits, y, weight=w))
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    label_mask = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    out = Standard()(model, x[:2], target, label_mask=label_mask)
    per_label = F.binary_cross_entropy_with_logits(out.logits, target, reduction="none")
    assert torch.allclose(out.loss, (per_label * label_mask).sum() / 4)


def test_trades_gradient_stays_finite_when_clean_softmax_underflows():
    """A confident clean prediction (softmax exactly 0 for other classes in float32) must not give NaN grads."""
    model = tiny_cnn().train()
    with torch.no_grad():
        model[-1].weight.mul_(1e4)  # logits differences of ~1e3: exp underflows to 0
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    out = TRADES(beta=BETA)(model, x, y, attack=PGD(eps=EPS, alpha=ALPHA, steps=1))
    assert (F.softmax(out.logits, dim=1) == 0).any()
    grads = torch.autograd.grad(out.loss, list(model.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)


def test_an_experiment_key_for_another_objective_is_named_with_how_to_drop_it(compose_cfg):
    from trixai.tasks.train import _objective

    with pytest.raises(TrixaiError, match=r"objective=standard takes no objective\.adversary_mode .*"
                                          r"~objective\.adversary_mode"):
        _objective(compose_cfg("experiment=demo", "objective=standard"))
    assert _objective(compose_cfg("experiment=demo", "objective=gaussian_noise", "~objective.adversary_mode")).sigma == 0.25
    assert _objective(compose_cfg("experiment=demo")).adversary_mode == "eval"  # Fast-AT takes it
