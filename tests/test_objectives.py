"""TRADES and PGD-AT against independent implementations of their published definitions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import state_snapshot, tiny_cnn

from trixai.core.errors import TrixaiError
from trixai.robust.attacks import PGD
from trixai.training.objectives import PGDAT, TRADES, Standard

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


def test_pgd_at_is_ce_on_attack_output():
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    model_a, model_b = tiny_cnn().train(), tiny_cnn().train()
    attack = PGD(eps=EPS, alpha=ALPHA, steps=2, random_start=False)
    out = PGDAT()(model_a, x, y, attack=attack)
    x_adv = attack(model_b, x, y)
    assert torch.allclose(out.loss, F.cross_entropy(model_b(x_adv), y))


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
