"""FGSM and PGD: exact values against hand-written references, threat-model bounds, untouched model state."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import state_snapshot, tiny_cnn, tiny_timm

from trixai.robust.attacks import FGSM, PGD

EPS, ALPHA = 8 / 255, 2 / 255


def reference_pgd(model, x, y, eps, alpha, steps, x0=None):
    """Madry PGD written out from its definition (Madry et al. 2018), for comparison."""
    model.eval()
    x_adv = x.clone() if x0 is None else x0.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        grad = torch.autograd.grad(loss, x_adv)[0]
        x_adv = x_adv.detach() + alpha * grad.sign()
        delta = (x_adv - x).clamp(-eps, eps)
        x_adv = (x + delta).clamp(0, 1)
    return x_adv


def test_fgsm_equals_closed_form():
    model = tiny_cnn().eval()
    x, y = torch.rand(6, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    xr = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)[0]
    expected = (x + EPS * grad.sign()).clamp(0, 1)
    assert torch.equal(FGSM(eps=EPS)(model, x, y), expected)


def test_pgd_without_random_start_matches_reference():
    model = tiny_cnn().eval()
    x, y = torch.rand(6, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    ours = PGD(eps=EPS, alpha=ALPHA, steps=5, random_start=False)(model, x, y)
    assert torch.equal(ours, reference_pgd(model, x, y, EPS, ALPHA, 5))


def test_pgd_random_start_matches_reference_from_same_start():
    model = tiny_cnn().eval()
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    torch.manual_seed(3)
    ours = PGD(eps=EPS, alpha=ALPHA, steps=4)(model, x, y)
    torch.manual_seed(3)
    start = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1)
    assert torch.equal(ours, reference_pgd(model, x, y, EPS, ALPHA, 4, x0=start))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_stays_in_threat_model_and_hurts(norm):
    model = tiny_timm()
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 4, (8,))
    eps = EPS if norm == "linf" else 0.5
    x_adv = PGD(eps=eps, alpha=eps / 4, steps=10, norm=norm)(model, x, y)
    delta = (x_adv - x).flatten(1)
    bound = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (bound <= eps + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    model.eval()
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)


def test_attack_leaves_model_state_untouched():
    model = tiny_timm()
    model.train()
    model.backbone.conv_stem.eval()  # a mixed-mode model must come back mixed
    for p in model.parameters():
        p.grad = None
    model.backbone.classifier.weight.requires_grad_(False)
    before_state, before_modes = state_snapshot(model)
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 4, (4,))
    PGD(eps=EPS, alpha=ALPHA, steps=3)(model, x, y)
    after_state, after_modes = state_snapshot(model)
    assert before_modes == after_modes
    assert all(torch.equal(before_state[k], after_state[k]) for k in before_state)  # BN running stats included
    assert all(p.grad is None for p in model.parameters())
    assert not model.backbone.classifier.weight.requires_grad
    assert model.backbone.conv_stem.weight.requires_grad


def test_multilabel_pgd_uses_bce():
    model = tiny_timm(num_classes=5, task="multilabel", in_chans=1)
    x, y = torch.rand(4, 1, 32, 32), (torch.rand(4, 5) > 0.5).float()
    x_adv = PGD(eps=EPS, alpha=ALPHA, steps=5)(model, x, y)
    model.eval()
    with torch.no_grad():
        assert F.binary_cross_entropy_with_logits(model(x_adv), y) > F.binary_cross_entropy_with_logits(model(x), y)


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="norm"):
        PGD(norm="l1")
    with pytest.raises(ValueError, match="steps"):
        PGD(steps=0)
