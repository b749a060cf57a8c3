"""APGD, FAB-T, Square and AutoAttack on models whose decision boundaries are known exactly."""

from __future__ import annotations

import pytest
import torch
from robust_helpers import blobs, fit, small_cnn
from scipy.optimize import linprog
from torch import nn

from trixai.core.errors import TrixaiError
from trixai.robust.attacks import APGD, APGDT, FABT, AutoAttack, Square
from trixai.robust.attacks.apgd import checkpoint_periods, halve_step
from trixai.robust.attacks.autoattack import CLEAN_WRONG, ROBUST
from trixai.robust.attacks.fab import project_linf_hyperplane_box
from trixai.robust.attacks.margins import margin
from trixai.robust.attacks.pgd import random_start
from trixai.robust.attacks.square import square_fraction
from trixai.robust.losses import attack_loss, expected_hamming_loss

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


def _rises(trace: list[float], previous: float) -> float:
    """Steps whose loss beat the step before (the first one is compared with ``previous``)."""
    return float(sum(b > a for a, b in zip([previous, *trace], trace)))


def test_apgd_halves_when_the_loss_rose_at_most_at_75_percent_of_the_steps():
    """Third checkpoint of 100 iterations: a 16-step period, 0.75 * 16 = 12 rises halve, 13 do not."""
    assert checkpoint_periods(100)[2] == 16
    twelve = [0.5, 0.6, 0.4, 0.7, 0.3, 0.8, 0.2, 0.9, 0.1, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6]  # 4 falls
    thirteen = [0.5, 0.6, 0.4, 0.7, 0.3, 0.8, 0.2, 0.9, 0.95, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6]  # 3 falls
    rises = torch.tensor([_rises(twelve, 0.4), _rises(thirteen, 0.4)])
    assert rises.tolist() == [12.0, 13.0]
    improved = torch.tensor([0.0, 0.0]), torch.tensor([1.6, 1.6])  # best loss at the last checkpoint, now
    halved = halve_step(rises, 16, torch.tensor([False, False]), *improved)
    assert halved.tolist() == [True, False]


def test_apgd_first_checkpoint_ignores_a_stalled_best_loss_as_the_original():
    """22 steps that all rise yet stay below the start's loss 1.0: the first checkpoint keeps the step (the
    original starts with ``reduced_last_check = 1``); the same trace at a later checkpoint halves it."""
    trace = [0.1 + 0.01 * k for k in range(22)]
    rises = torch.tensor([_rises(trace, 0.0)])  # the original compares the first step with a zero row
    assert rises.item() == 22.0
    best, start = torch.tensor([1.0]), torch.tensor([1.0])
    assert not halve_step(rises, 22, torch.tensor([True]), start, best).item()
    assert halve_step(rises, 22, torch.tensor([False]), start, best).item()
    assert not halve_step(rises, 22, torch.tensor([False]), start, torch.tensor([1.5])).item()


def test_square_p_schedule_original_and_rescaled():
    """AutoAttack's Square: p_init 0.8 halved after queries 10, 50, 200, 500, 1000, 2000, 4000 of 5,000;
    the standalone default rescales the 10,000-query schedule to the budget (halved after query 5 of 5,000)."""
    original = {0: 0.8, 10: 0.8, 11: 0.4, 50: 0.4, 51: 0.2, 500: 0.1, 501: 0.05, 4000: 0.8 / 64, 4001: 0.8 / 128,
                4999: 0.8 / 128}
    for query, p in original.items():
        assert square_fraction(0.8, query, 5000, rescale=False) == pytest.approx(p)
    assert square_fraction(0.8, 5, 5000) == 0.8 and square_fraction(0.8, 6, 5000) == 0.4
    assert square_fraction(0.8, 3001, 5000) == pytest.approx(0.8 / 256)  # query 6002 of 10,000
    g = torch.Generator().manual_seed(0)
    sides, tops, _ = Square(eps=EPS, queries=5000, variant="autoattack")._windows(32, 32, g, torch.device("cpu"))
    # side = round(sqrt(p * 32 * 32)): 29 (p = 0.8), 20 (0.4), 3 (0.00625)
    assert [int(sides[q]) for q in (0, 10, 11, 4001)] == [29, 29, 20, 3]
    assert bool((tops <= 32 - sides - 1).all())  # the original's corner never reaches h - side
    sides, tops, _ = Square(eps=EPS, queries=20, variant="autoattack")._windows(4, 4, g, torch.device("cpu"))
    assert int(sides[0]) == 4 and int(tops[0]) == 0  # side up to min(h, w), the whole image
    assert int(Square(eps=EPS, queries=20)._windows(4, 4, g, torch.device("cpu"))[0][0]) == 3  # standalone: h - 1


class Recording(nn.Module):
    """Keeps every input it sees."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.inputs = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.model(x)


@pytest.mark.parametrize(("variant", "wasted"), [("autoattack", True), ("square", False)])
def test_square_redraws_only_in_the_standalone_variant(variant, wasted):
    """1x1 windows on 3 channels: a proposal changes nothing when its 3 signs repeat the pixel's (1/8). AutoAttack's
    Square spends the query on it (~25 of 200), the standalone variant redraws (4 draws: 1/4096)."""
    model, x0, y = boundary_model([2 * EPS])  # out of reach: every query is spent
    recording = Recording(model)
    Square(eps=EPS, queries=200, p_init=0.05, max_batch=1, variant=variant)(recording, x0, y)
    best, unchanged = recording.inputs[1], 0  # inputs: the clean point, the stripes, then one query each
    for candidate in recording.inputs[2:]:
        with torch.no_grad():
            better = float(margin(model(candidate), y)) < float(margin(model(best), y))
        unchanged += int(torch.equal(candidate, best))
        best = candidate if better else best
    assert len(recording.inputs) == 202
    assert (unchanged > 10) if wasted else unchanged == 0


def test_autoattack_runs_square_in_its_original_variant():
    components = AutoAttack(eps=EPS).describe(10, multilabel=False)
    assert components[3]["name"] == "square" and components[3]["variant"] == "autoattack"
    assert components[3]["p_init"] == 0.8 and components[3]["queries"] == 5000
    assert Square(eps=EPS).variant == "square"


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


@pytest.mark.parametrize(("eps", "variant"), [(2 / 255, "square"), (4 / 255, "square"), (4 / 255, "autoattack")])
def test_square_speculation_gives_exactly_the_sequential_search(eps, variant):
    model, x, y = _points()
    sequential = Square(eps=eps, queries=300, max_batch=1, variant=variant)(model, x, y)
    counting = CountingModel(model)
    speculative = Square(eps=eps, queries=300, max_batch=64, variant=variant)(counting, x, y)
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


def _original_apgd(model, x, y, start, loss_fn, eps: float, steps: int):
    """A plain reading of APGD-L-inf in AutoAttack's ``autopgd_base.py`` (one run from ``start``): a step-loss
    history that starts as zeros (the first step is compared with a zero row), checkpoints 0.22 N, -0.03 N, >= 0.06 N,
    halving when ``rises <= 0.75 * period`` or, except at the first checkpoint, when the best loss stalled.
    Returns the highest-loss iterate and whether any iterate fooled the point."""

    def evaluate(point):
        point = point.clone().requires_grad_(True)
        logits = model(point)
        loss = loss_fn(logits, y)
        (grad,) = torch.autograd.grad(loss.sum(), point)
        return loss.detach(), grad, logits.argmax(1) != y

    def project(point):  # the original's min(max(point, x - eps), x + eps), written as trixai rounds it
        return (x + (point - x).clamp(-eps, eps)).clamp(0, 1)

    n, view = len(x), (-1, 1, 1, 1)
    period, shrink, shortest = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    current = start.clone()
    loss, grad, fooled = evaluate(current)
    best, best_grad, best_loss = current.clone(), grad.clone(), loss.clone()
    previous, eta = current.clone(), torch.full((n,), 2 * eps, dtype=x.dtype)
    history = torch.zeros(steps, n, dtype=x.dtype)
    reduced_last, best_at_check, since = torch.ones(n, dtype=torch.bool), best_loss.clone(), 0
    for i in range(steps):
        a = 0.75 if i > 0 else 1.0
        z = project(current + eta.view(view) * grad.sign())
        previous, current = current, project(current + a * (z - current) + (1 - a) * (current - previous))
        loss, grad, hit = evaluate(current)
        fooled |= hit
        history[i] = loss
        better = loss > best_loss
        best[better], best_grad[better], best_loss[better] = current[better], grad[better], loss[better]
        since += 1
        if since == period:
            rises = sum((history[i - j] > history[i - j - 1]).to(x.dtype) for j in range(period))
            halve = (rises <= 0.75 * period) | (~reduced_last & (best_at_check >= best_loss))
            reduced_last, best_at_check = halve, best_loss.clone()
            eta[halve] /= 2
            current[halve], grad[halve] = best[halve], best_grad[halve]
            period, since = max(period - shrink, shortest), 0
    return best, fooled


@pytest.mark.parametrize(("loss", "eps"), [("ce", 1 / 255), ("dlr", 2 / 255)])
def test_apgd_follows_the_original_step_size_rule_iterate_for_iterate(loss, eps):
    """100 iterations (all 8 checkpoints) on a float64 CNN: the points the original leaves robust get exactly its
    highest-loss iterate, and the same points are fooled (CE: none of 8, the case where the previous rule, stall
    check at the first checkpoint and ``<``, gave another iterate; DLR: 6 of 8, fooled points leave the batch)."""
    model, x, y = _points()
    torch.manual_seed(0)
    ours = APGD(eps=eps, steps=100, loss=loss)(model, x, y)
    torch.manual_seed(0)
    start = random_start(x, eps, "linf")
    attack = APGD(eps=eps, steps=100, loss=loss)
    point_loss = attack.point_loss(model(x[:1]), y)
    reference, fooled = _original_apgd(model, x, y, start, lambda logits, _: point_loss(logits, torch.arange(len(x))),
                                       eps, 100)
    assert torch.equal(_fooled_points(model, ours, y), fooled)
    assert 0 < int((~fooled).sum())
    assert torch.equal(ours[~fooled], reference[~fooled])


def test_full_budget_apgd_keeps_every_points_highest_loss_iterate():
    """With ``full_budget`` no point stops at its first fooling iterate: from the same random start the path is the
    early-stopped run's up to that iterate, so the highest CE over the whole budget is at least the CE where the
    early-stopped run stopped, for every point (fooled or not), and it is the best of the run's iterates."""
    x, y = blobs(8, 4, seed=2)
    model = fit(small_cnn(4, seed=2), x, y, steps=60)
    LARGE = 0.1  # large enough that some points are fooled (and retired by the early-stopped run)
    losses = {}
    for full in (False, True):
        torch.manual_seed(0)
        adv = APGD(eps=LARGE, steps=20, full_budget=full)(model, x, y)
        assert (adv - x).abs().max() <= LARGE + 1e-6
        with torch.no_grad():
            losses[full] = nn.functional.cross_entropy(model(adv), y, reduction="none")
    assert bool((losses[True] >= losses[False] - 1e-6).all()), (losses[True], losses[False])
    torch.manual_seed(0)
    with torch.no_grad():
        fooled = model(APGD(eps=LARGE, steps=20)(model, x, y)).argmax(1) != y
    assert fooled.any(), "the check needs points the early-stopped run retired"
    assert bool((losses[True][fooled] > losses[False][fooled]).any())  # retired points had further to go


def test_autoattack_loss_pass_runs_the_loss_maximisers_on_every_point():
    attack = AutoAttack(eps=EPS, steps=5, targets=2, queries=10)
    assert [a.name for a in attack.loss_maximisers(5, multilabel=False)] == ["apgd-ce", "apgd-t"]
    assert all(a.full_budget for a in attack.loss_maximisers(5, multilabel=False))
    rand = AutoAttack(eps=EPS, version="rand", steps=5, eot_iter=2)
    assert [a.name for a in rand.loss_maximisers(5, multilabel=False)] == ["apgd-ce", "apgd-dlr"]
    model = small_cnn(5, seed=4).eval()
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        y = (model(x).argmax(1) + torch.tensor([0, 1, 0, 1, 0, 0])) % 5  # two clean-wrong points
    candidates = attack.full_budget_pass(model, x, y)
    assert len(candidates) == 2
    with torch.no_grad():
        clean = nn.functional.cross_entropy(model(x), y, reduction="none")
        for adv in candidates:  # every point attacked, clean-wrong ones included: the loss never falls below clean
            assert (adv - x).abs().max() <= EPS + 1e-6 and not torch.equal(adv, x)
            assert bool((nn.functional.cross_entropy(model(adv), y, reduction="none") >= clean - 1e-6).all())


def test_expected_hamming_loss_is_the_mean_wrong_side_probability_over_kept_labels():
    logits = torch.tensor([[2.0, -1.0, 0.0], [0.5, 3.0, -2.0]])
    target = torch.tensor([[1.0, 1.0, 0.0], [0.0, -1.0, 1.0]])  # -1: an ignored label
    sig = torch.sigmoid
    expected = torch.stack([(sig(torch.tensor(-2.0)) + sig(torch.tensor(1.0)) + sig(torch.tensor(0.0))) / 3,
                            (sig(torch.tensor(0.5)) + sig(torch.tensor(2.0))) / 2])
    assert torch.allclose(expected_hamming_loss(logits, target), expected)
    assert torch.allclose(attack_loss(logits, target), expected)  # multi-label outputs are ranked by it
    with pytest.raises(TrixaiError, match="'hamming' is the multi-label loss"):
        APGD(eps=EPS, steps=2, loss="hamming")(small_cnn(3).eval(), torch.rand(2, 3, 16, 16), torch.tensor([0, 1]))


def test_multilabel_loss_pass_moves_every_label_not_only_the_flipped_ones():
    """BCE grows without bound on a flipped label, so its maximiser keeps pushing those; the loss pass maximises
    the expected Hamming loss instead, whose optimum puts every label on its wrong side."""
    attack = AutoAttack(eps=EPS, steps=5, targets=2, queries=10)
    assert [(a.name, a.full_budget) for a in attack.loss_maximisers(4, multilabel=True)] == \
        [("apgd-hamming", True), ("apgd-t", True)]
    assert [a.name for a in attack.loss_maximisers(4, multilabel=False)][0] == "apgd-ce"
