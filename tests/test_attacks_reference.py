"""FGSM / PGD against hand-computed references; threat-model and model-state invariants of every attack."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from robust_helpers import small_cnn
from torch import nn

from trixai.models.factory import create_model
from trixai.robust.attacks import APGD, APGDT, FABT, FGSM, PGD, AutoAttack, Square

EPS = 8 / 255


class Linear(nn.Module):
    """Logits ``W x + b`` on flattened images: the CE input gradient is ``W^T (softmax(z) - onehot(y))``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(weight)
            self.fc.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _linear_case(classes: int = 4, n: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    weight, bias = torch.randn(classes, 3 * 4 * 4, generator=g), torch.randn(classes, generator=g)
    x = torch.rand(n, 3, 4, 4, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return Linear(weight, bias), weight, bias, x, y


def _hand_gradient(weight, bias, x, y):
    z = x.flatten(1) @ weight.T + bias
    return ((z.softmax(dim=1) - F.one_hot(y, weight.shape[0]).float()) @ weight).view_as(x)


def test_fgsm_matches_hand_computed_linear_case():
    model, weight, bias, x, y = _linear_case()
    expected = (x + EPS * _hand_gradient(weight, bias, x, y).sign()).clamp(0, 1)
    assert torch.equal(FGSM(eps=EPS)(model, x, y), expected)


def test_pgd_without_random_start_matches_hand_computed_iterates():
    model, weight, bias, x, y = _linear_case(seed=1)
    alpha, steps = 2 / 255, 7
    expected = x.clone()
    for _ in range(steps):
        stepped = expected + alpha * _hand_gradient(weight, bias, expected, y).sign()
        expected = (x + (stepped - x).clamp(-EPS, EPS)).clamp(0, 1)
    got = PGD(eps=EPS, alpha=alpha, steps=steps, random_start=False)(model, x, y)
    assert torch.equal(got, expected)


def _reference_pgd(model, x, y, eps, alpha, steps):
    """Textbook Madry PGD without random start (autograd of the mean CE, as reference libraries do)."""
    model.eval()
    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(adv), y), adv)
        adv = adv.detach() + alpha * grad.sign()
        adv = torch.clamp(x + torch.clamp(adv - x, -eps, eps), 0, 1)
    return adv


@pytest.fixture(scope="module")
def tiny():
    model = small_cnn(5).eval()
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    return model, x, y


def test_fgsm_and_pgd_match_reference_on_a_conv_model(tiny):
    model, x, y = tiny
    assert torch.equal(FGSM(eps=EPS)(model, x, y), _reference_pgd(model, x, y, EPS, EPS, 1))
    got = PGD(eps=EPS, alpha=2 / 255, steps=5, random_start=False)(model, x, y)
    assert torch.equal(got, _reference_pgd(model, x, y, EPS, 2 / 255, 5))


def test_fgsm_matches_reference_on_a_timm_model():
    torch.manual_seed(0)
    model = create_model("test_efficientnet", 3, resolution=16).eval()
    x, y = torch.rand(2, 3, 16, 16), torch.tensor([0, 2])
    assert torch.equal(FGSM(eps=EPS)(model, x, y), _reference_pgd(model, x, y, EPS, EPS, 1))


def test_pgd_early_stop_keeps_unfooled_trajectories_and_never_raises_accuracy(tiny):
    model, x, y = tiny
    full = PGD(eps=2 / 255, alpha=0.5 / 255, steps=6, random_start=False)(model, x, y)
    early = PGD(eps=2 / 255, alpha=0.5 / 255, steps=6, random_start=False, early_stop=True)(model, x, y)
    with torch.no_grad():
        fooled_early = model(early).argmax(1) != y
        fooled_full = model(full).argmax(1) != y
    assert 0 < int(fooled_early.sum()) < len(y)
    assert fooled_early.sum() >= fooled_full.sum()
    assert torch.equal(early[~fooled_early], full[~fooled_early])


ATTACKS = [
    FGSM(eps=EPS),
    PGD(eps=EPS, steps=3),
    PGD(eps=EPS, steps=3, early_stop=True),
    PGD(eps=0.5, steps=2, norm="l2"),
    APGD(eps=EPS, steps=5),
    APGD(eps=EPS, steps=5, loss="dlr"),
    APGDT(eps=EPS, steps=4, targets=2),
    FABT(eps=EPS, steps=5, targets=2),
    Square(eps=EPS, queries=20),
    AutoAttack(eps=EPS, steps=4, targets=2, queries=10),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_threat_model_and_model_state(attack):
    model = small_cnn(5, seed=1).train()
    frozen = model[-1].weight
    frozen.requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3])
    adv = attack(model, x, y)
    assert adv.shape == x.shape and not adv.requires_grad
    assert adv.min() >= 0 and adv.max() <= 1
    if getattr(attack, "norm", "linf") == "l2":
        assert (adv - x).flatten(1).norm(dim=1).max() <= attack.eps + 1e-5
    else:
        assert (adv - x).abs().max() <= attack.eps + 1e-6
    assert all(m.training for m in model.modules())
    assert not frozen.requires_grad
    assert all(p.requires_grad for p in model.parameters() if p is not frozen)
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
