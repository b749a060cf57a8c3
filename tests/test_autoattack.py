"""APGD, FAB-T, Square and AutoAttack on models whose decision boundaries are known exactly."""

from __future__ import annotations

import pytest
import torch
from robust_helpers import small_cnn
from scipy.optimize import linprog
from torch import nn

from trixai.robust.attacks import APGD, APGDT, FABT, AutoAttack, Square
from trixai.robust.attacks.apgd import checkpoint_periods
from trixai.robust.attacks.autoattack import CLEAN_WRONG, ROBUST
from trixai.robust.attacks.fab import project_linf_hyperplane_box

EPS = 8 / 255
SHAPE = (3, 4, 4)
D = 3 * 4 * 4


class Affine(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T + self.bias


def boundary_model(distances: list[float], seed: int = 0) -> tuple[Affine, torch.Tensor, torch.Tensor]:
    """Class 0 is right at x0 = 0.5; class t wins once x moves ``distances[t-1]`` (L-inf) towards it.

    For an affine model the L-inf distance to the boundary with class t is ``(z_0 - z_t) / ||w_0 - w_t||_1``
    (the box is not reached: every distance is < 0.5).
    """
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(len(distances) + 1, D, generator=g)
    x0 = torch.full((1, *SHAPE), 0.5)
    z = x0.flatten(1) @ weight.T
    bias = torch.zeros(len(distances) + 1)
    for t, distance in enumerate(distances, start=1):
        gap = distance * (weight[0] - weight[t]).abs().sum()
        bias[t] = z[0, 0] - z[0, t] - gap
    return Affine(weight, bias), x0, torch.tensor([0])


def test_apgd_checkpoints_follow_the_paper():
    periods = checkpoint_periods(100)
    assert periods == [22, 19, 16, 13, 10, 7, 6, 6]
    assert [sum(periods[: i + 1]) for i in range(len(periods))] == [22, 41, 57, 70, 80, 87, 93, 99]


@pytest.mark.parametrize("seed", range(5))
def test_linf_projection_onto_hyperplane_and_box_is_optimal(seed):
    g = torch.Generator().manual_seed(seed)
    point, w = torch.rand(1, 12, generator=g, dtype=torch.float64), torch.randn(1, 12, generator=g, dtype=torch.float64)
    c = torch.tensor([0.7 * float(torch.randn(1, generator=g))], dtype=torch.float64)
    d = project_linf_hyperplane_box(point, w, c)
    assert float((w * d).sum()) == pytest.approx(float(c), abs=1e-9)
    assert float((point + d).min()) >= -1e-12 and float((point + d).max()) <= 1 + 1e-12
    # LP: min t s.t. -t <= d_j <= t, w.d = c, 0 <= point + d <= 1; variables (d, t)
    n = 12
    cost = [0.0] * n + [1.0]
    a_ub = [[(1.0 if j == i else 0.0) for j in range(n)] + [-1.0] for i in range(n)]
    a_ub += [[(-1.0 if j == i else 0.0) for j in range(n)] + [-1.0] for i in range(n)]
    bounds = [(-float(point[0, j]), 1 - float(point[0, j])) for j in range(n)] + [(0, None)]
    lp = linprog(cost, A_ub=a_ub, b_ub=[0.0] * (2 * n), A_eq=[w[0].tolist() + [0.0]], b_eq=[float(c)], bounds=bounds)
    assert lp.status == 0
    assert float(d.abs().max()) == pytest.approx(lp.fun, abs=1e-9)


def _fooled_points(model, x, y):
    with torch.no_grad():
        return model(x).argmax(1) != y


def _fooled(model, x, y):
    return bool(_fooled_points(model, x, y).all())


def test_apgd_finds_the_adversarial_point_inside_eps_and_none_outside():
    model, x0, y = boundary_model([0.6 * EPS])
    adv = APGD(eps=EPS, steps=20)(model, x0, y)
    assert _fooled(model, adv, y) and (adv - x0).abs().max() <= EPS + 1e-7
    model, x0, y = boundary_model([1.5 * EPS])
    assert not _fooled(model, APGD(eps=EPS, steps=20)(model, x0, y), y)


@pytest.mark.parametrize("attack", [APGDT(eps=EPS, steps=20, targets=4), FABT(eps=EPS, steps=20, targets=4)],
                         ids=lambda a: a.name)
def test_targeted_attacks_find_the_only_close_class(attack):
    model, x0, y = boundary_model([3 * EPS, 3 * EPS, 0.6 * EPS, 3 * EPS])
    adv = attack(model, x0, y)
    assert _fooled(model, adv, y)
    with torch.no_grad():
        assert int(model(adv).argmax(1)) == 3
    assert (adv - x0).abs().max() <= EPS + 1e-7


def test_fab_finds_a_near_minimal_perturbation():
    model, x0, y = boundary_model([0.6 * EPS, 3 * EPS])
    adv = FABT(eps=EPS, steps=20, targets=2)(model, x0, y)
    assert _fooled(model, adv, y)
    assert float((adv - x0).abs().max()) <= 0.6 * EPS * 1.06


def test_square_finds_the_adversarial_corner_of_an_affine_model():
    model, x0, y = boundary_model([0.5 * EPS])
    adv = Square(eps=EPS, queries=300)(model, x0, y)
    assert _fooled(model, adv, y) and (adv - x0).abs().max() <= EPS + 1e-7


def test_autoattack_binary_uses_the_ce_variant_and_reports_components():
    model, x0, y = boundary_model([0.6 * EPS])
    attack = AutoAttack(eps=EPS, steps=10, queries=20)
    components = attack.describe(2, multilabel=False)
    assert [c["name"] for c in components] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert components[1]["loss"] == "ce-targeted" and components[1]["targets_used"] == 1
    x = torch.cat([x0, x0])
    adv, broken_by = attack.run(model, x, torch.tensor([0, 1]))
    assert broken_by.tolist() == [0, CLEAN_WRONG]
    model, x0, y = boundary_model([1.5 * EPS])
    adv, broken_by = attack.run(model, x0, y)
    assert broken_by.tolist() == [ROBUST] and torch.equal(adv, x0)


def test_autoattack_multilabel_flips_a_label():
    model = small_cnn(4, seed=3).eval()
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = (model(x) > 0).float()
    attack = AutoAttack(eps=EPS, steps=10, targets=2, queries=20)
    assert attack.describe(4, multilabel=True)[1]["loss"] == "label-flip"
    adv, broken_by = attack.run(model, x, y)
    assert (adv - x).abs().max() <= EPS + 1e-7 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        flipped = ((model(adv) > 0).float() != y).any(dim=1)
    assert torch.equal(flipped, broken_by >= 0) and flipped.any()


class Noisy(nn.Module):
    """A stochastic model: Gaussian input noise at every forward (the case `version=rand` is for)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + 0.01 * torch.randn_like(x))


def test_autoattack_rand_runs_apgd_with_eot():
    model = Noisy(small_cnn(5, seed=4)).eval()
    attack = AutoAttack(eps=EPS, version="rand", steps=5, eot_iter=2)
    assert [c["name"] for c in attack.describe(5, multilabel=False)] == ["apgd-ce", "apgd-dlr"]
    assert all(c["eot_iter"] == 2 for c in attack.describe(5, multilabel=False))
    x, y = torch.rand(4, 3, 16, 16), torch.arange(4)
    adv = attack(model, x, y)
    assert (adv - x).abs().max() <= EPS + 1e-7


class CountingModel(nn.Module):
    """Records the batch size of every forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.batches = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.model(x)


def _points(n: int = 8):
    model = small_cnn(5, seed=1).double().eval()
    x = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


@pytest.mark.parametrize("eps", [2 / 255, 4 / 255])
def test_square_speculation_gives_exactly_the_sequential_search(eps):
    model, x, y = _points()
    sequential = Square(eps=eps, queries=300, max_batch=1)(model, x, y)
    counting = CountingModel(model)
    speculative = Square(eps=eps, queries=300, max_batch=64)(counting, x, y)
    assert torch.equal(sequential, speculative)
    assert 0 < int(_fooled_points(model, speculative, y).sum()) < len(y)  # the search accepted, fooled and failed
    assert max(counting.batches) > len(y) and max(counting.batches) <= 64  # proposals were stacked, within budget


@pytest.mark.parametrize("eps", [2 / 255, 4 / 255])
def test_stacked_fab_targets_fool_the_same_points_as_one_target_at_a_time(eps):
    model, x, y = _points()
    one_at_a_time = FABT(eps=eps, steps=20, targets=4, max_batch=1)(model, x, y)
    counting = CountingModel(model)
    stacked = FABT(eps=eps, steps=20, targets=4, max_batch=16)(counting, x, y)
    fooled = _fooled_points(model, stacked, y)
    assert torch.equal(_fooled_points(model, one_at_a_time, y), fooled)
    assert 0 < int(fooled.sum()) < len(y)
    assert max(counting.batches) == 16  # 8 points x 2 targets per forward


def test_stacked_apgd_targets_respect_the_batch_budget_and_find_the_close_class():
    model, x0, y = boundary_model([3 * EPS, 3 * EPS, 0.6 * EPS, 3 * EPS])
    x, y = x0.repeat(3, 1, 1, 1), y.repeat(3)
    counting = CountingModel(model)
    adv = APGDT(eps=EPS, steps=20, targets=4, max_batch=6)(counting, x, y)
    assert max(counting.batches) == 6  # 3 points x 2 targets per forward
    with torch.no_grad():
        assert model(adv).argmax(1).tolist() == [3, 3, 3]
    assert (adv - x).abs().max() <= EPS + 1e-7
