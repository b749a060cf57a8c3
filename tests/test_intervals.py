"""Intervals for proportions (Jeffreys, Wilson, Clopper-Pearson; mean of proportions): hand-checked values and the
coverage simulation of issue 24 (1,000 simulated test sets, >= 93 % for a 95 % interval)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from trixai.core.bootstrap import Bootstrap, percentile_interval
from trixai.core.errors import TrixaiError
from trixai.core.intervals import (
    mean_of_proportions_bounds,
    mean_of_proportions_interval,
    proportion_bounds,
    proportion_interval,
)
from trixai.core.metrics import weighted_metrics

# The demo's test set (README): MEL, NV, BCC, AKIEC, BKL, DF, VASC.
COUNTS = np.array([31, 187, 20, 20, 31, 20, 20])
SCENARIOS = {
    # interior values, exactly 0 (BCC) and exactly 1 (BKL, VASC)
    "mixed": np.array([0.7, 0.95, 0.0, 0.5, 1.0, 0.8, 1.0]),
    "all_right": np.ones(7),
    # near but not at the boundary: the stratified bootstrap collapses on most classes, and misses
    "near_boundary": np.array([0.97, 0.99, 0.03, 0.97, 0.97, 0.95, 0.97]),
}
SETS = 1000
TEST_DRAWS = 4000  # Monte Carlo draws per balanced-accuracy interval in the simulation (default 20,000)


def simulate(p: np.ndarray, seed: int = 1) -> np.ndarray:
    """Per-class successes (SETS, K) ~ Binomial(n_k, p_k)."""
    return np.random.default_rng(seed).binomial(COUNTS, p, size=(SETS, len(COUNTS)))


def covered(low: torch.Tensor, high: torch.Tensor, truth) -> torch.Tensor:
    truth = torch.as_tensor(truth, dtype=torch.float64)
    return ((low <= truth) & (truth <= high)).double().mean(0)


def exact_coverage(n: int, p: float, method: str = "jeffreys") -> float:
    """P(interval of X covers p), X ~ Binomial(n, p), summed over every outcome."""
    x = np.arange(n + 1)
    low, high = (b.numpy() for b in proportion_bounds(x, n, method))
    return float(stats.binom.pmf(x, n, p)[(low <= p) & (p <= high)].sum())


def test_jeffreys_is_the_beta_quantiles_with_the_boundary_modification():
    # x = 3, n = 10: the 2.5 % and 97.5 % quantiles of Beta(3.5, 7.5)
    assert proportion_interval(3, 10) == pytest.approx(stats.beta.ppf([0.025, 0.975], 3.5, 7.5).tolist(), abs=1e-12)
    assert proportion_interval(3, 10) == pytest.approx([0.0927, 0.6058], abs=1e-4)
    # x = 0: lower 0 (not Beta(0.5, 10.5)'s 2.5 % quantile), upper its 97.5 % quantile; x = n mirrors it
    assert proportion_interval(0, 10) == pytest.approx([0.0, stats.beta.ppf(0.975, 0.5, 10.5)], abs=1e-12)
    assert proportion_interval(10, 10) == pytest.approx([stats.beta.ppf(0.025, 10.5, 0.5), 1.0], abs=1e-12)
    assert proportion_interval(0, 10)[1] == pytest.approx(0.2172, abs=1e-4)
    assert proportion_interval(0, 10)[0] == 0.0 and proportion_interval(10, 10)[1] == 1.0
    low, high = proportion_bounds(torch.tensor([0, 3, 10]), torch.tensor(10), level=0.9)
    assert high[1] == pytest.approx(stats.beta.ppf(0.95, 3.5, 7.5), abs=1e-12)
    assert proportion_interval(0, 0) is None


@pytest.mark.parametrize("x", [0, 1, 3, 9, 10])
def test_wilson_bounds_are_the_roots_of_the_score_equation(x):
    # Wilson: the p with n (x/n - p)^2 = z^2 p (1 - p), i.e. (n + z^2) p^2 - (2x + z^2) p + x^2/n = 0
    n, z = 10, stats.norm.ppf(0.975)
    roots = np.sort(np.roots([n + z * z, -(2 * x + z * z), x * x / n]).real)
    assert proportion_interval(x, n, "wilson") == pytest.approx(roots.tolist(), abs=1e-9)


def test_clopper_pearson_covers_at_least_the_level_at_every_p():
    for n in (20, 31):
        assert min(exact_coverage(n, p, "clopper_pearson") for p in np.linspace(0.001, 0.999, 300)) >= 0.95
    # x = 3, n = 10: Beta(3, 8) and Beta(4, 7) quantiles
    assert proportion_interval(3, 10, "clopper_pearson") == pytest.approx(
        [stats.beta.ppf(0.025, 3, 8), stats.beta.ppf(0.975, 4, 7)], abs=1e-12)


def test_bad_arguments_name_the_culprit():
    with pytest.raises(TrixaiError, match="method must be one of jeffreys, wilson, clopper_pearson"):
        proportion_interval(1, 2, method="wald")
    with pytest.raises(TrixaiError, match="successes must not exceed trials"):
        proportion_interval(3, 2)
    with pytest.raises(TrixaiError, match="level"):
        proportion_interval(1, 2, level=95)
    with pytest.raises(TrixaiError, match="whole counts"):
        mean_of_proportions_interval(np.array([0.5, 1.0]), np.array([2, 2]))


def test_mean_of_one_proportion_is_the_jeffreys_interval():
    for x in (0, 3, 10):
        low, high = mean_of_proportions_interval(np.array([x]), np.array([10]))
        assert [low, high] == pytest.approx(proportion_interval(x, 10), abs=5e-3)  # Monte Carlo, 20,000 draws
    assert mean_of_proportions_interval(np.array([0]), np.array([10]))[0] == 0.0
    assert mean_of_proportions_interval(np.array([10]), np.array([10]))[1] == 1.0


def test_mean_of_proportions_matches_the_normal_limit():
    # large n_k: the mean of independent Beta(x+1/2, n-x+1/2) is nearly normal with the Beta means and variances
    x, n = np.array([2500, 4000, 4500]), np.array([5000, 5000, 5000])
    a, b = x + 0.5, n - x + 0.5
    mean = (a / (a + b)).mean()
    sd = np.sqrt((a * b / ((a + b) ** 2 * (a + b + 1))).sum()) / 3
    z = stats.norm.ppf(0.975)
    assert mean_of_proportions_interval(x, n) == pytest.approx([mean - z * sd, mean + z * sd], abs=1e-3)
    # shares: accuracy with class shares n_k / n is the mean of x_k / n_k weighted by n_k
    low, high = mean_of_proportions_interval(x, n, shares=np.array([0.0, 1.0, 0.0]))
    assert [low, high] == pytest.approx(proportion_interval(4000, 5000), abs=1e-3)


def test_boundary_classes_never_push_the_truth_out():
    # every class at n_k: upper bound exactly 1; every class at 0: lower bound exactly 0
    assert mean_of_proportions_interval(COUNTS, COUNTS)[1] == 1.0
    assert mean_of_proportions_interval(0 * COUNTS, COUNTS)[0] == 0.0
    # the demo model: five classes all right, BCC and AKIEC all wrong (true balanced accuracy 5/7 if always so)
    x = np.array([31, 187, 0, 0, 31, 20, 20])
    low, high = mean_of_proportions_interval(x, COUNTS)
    assert low < 5 / 7 < high
    # six classes at 1 and NV at 0: without the modification the upper bound would fall below 6/7
    x = np.array([31, 0, 20, 20, 31, 20, 20])
    low, high = mean_of_proportions_interval(x, COUNTS)
    assert low < 6 / 7 <= high
    theta = np.random.default_rng(0).beta(x + 0.5, COUNTS - x + 0.5, size=(20000, 7)).mean(1)
    assert np.quantile(theta, 0.975) < 6 / 7  # the unmodified posterior interval excludes the truth


def test_mean_of_proportions_is_seeded_per_set_and_leaves_out_empty_classes():
    x = simulate(SCENARIOS["mixed"])[:4]
    low, high = mean_of_proportions_bounds(x, COUNTS, draws=2000)
    for row in range(4):  # a set's interval does not depend on the other sets of the batch (up to rounding)
        single = mean_of_proportions_interval(x[row], COUNTS, draws=2000)
        assert [float(low[row]), float(high[row])] == pytest.approx(single, abs=1e-12)
    assert mean_of_proportions_interval(x[0], COUNTS) == mean_of_proportions_interval(x[0], COUNTS)
    assert mean_of_proportions_interval(x[0], COUNTS, seed=1) != mean_of_proportions_interval(x[0], COUNTS)
    with_empty = mean_of_proportions_interval(np.append(x[0], 0), np.append(COUNTS, 0))
    assert with_empty == pytest.approx(mean_of_proportions_interval(x[0], COUNTS), abs=1e-12)
    assert mean_of_proportions_interval(np.array([0, 0]), np.array([0, 0])) is None


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_reported_proportion_keeps_its_coverage(scenario):
    """The acceptance test: 1,000 simulated test sets with the demo's class counts; every 95 % interval covers
    its true value in at least 93 % of them."""
    p = SCENARIOS[scenario]
    x = simulate(p)
    n = torch.as_tensor(COUNTS)
    per_class = covered(*proportion_bounds(x, COUNTS), p)
    accuracy = covered(*proportion_bounds(x.sum(1), COUNTS.sum()), (COUNTS * p).sum() / COUNTS.sum())
    balanced = covered(*mean_of_proportions_bounds(x, COUNTS, draws=TEST_DRAWS), p.mean())
    stratified = covered(*mean_of_proportions_bounds(x, COUNTS, draws=TEST_DRAWS, shares=n),
                         (COUNTS * p).sum() / COUNTS.sum())
    assert bool((per_class >= 0.93).all()), per_class
    assert float(accuracy) >= 0.93 and float(balanced) >= 0.93 and float(stratified) >= 0.93
    # the exact per-class coverage (sum over every outcome) agrees
    assert min(exact_coverage(int(k), float(q)) for k, q in zip(COUNTS, p, strict=True)) >= 0.93


def test_the_stratified_bootstrap_misses_near_the_boundary():
    """The current intervals (percentile bootstrap stratified by class) on the same simulation: zero width when
    every class is all-right or all-wrong, and coverage far below 93 %."""
    p = SCENARIOS["near_boundary"]
    x = torch.as_tensor(simulate(p))
    targets = torch.repeat_interleave(torch.arange(7), torch.as_tensor(COUNTS))
    rank = torch.cat([torch.arange(int(k)) for k in COUNTS])
    correct = (rank[None, :] < x[:, targets]).double()  # (sets, N): the first x_k points of class k are right
    weights = next(Bootstrap.draw(targets, seed=0).weights()).double()
    accuracy = weights @ correct.T / len(targets)  # (resamples, sets)
    intervals = torch.tensor([percentile_interval(accuracy[:, s]) for s in range(SETS)])
    truth = float((COUNTS * p).sum() / COUNTS.sum())
    assert float(covered(intervals[:, 0], intervals[:, 1], truth)) < 0.93
    members = targets == 0  # MEL, true accuracy 0.97 on 31 points
    recall = weights[:, members] @ correct[:, members].T / int(COUNTS[0])
    mel = torch.tensor([percentile_interval(recall[:, s]) for s in range(SETS)])
    assert torch.equal(mel[:, 0] == mel[:, 1], x[:, 0] == 31)  # zero width whenever all 31 are right: 0.97^31 = 39 %
    assert float(covered(mel[:, 0], mel[:, 1], 0.97)) < 0.7
    assert float(covered(*proportion_bounds(x[:, 0], 31), 0.97)) >= 0.93

    # one test set with every class all-right or all-wrong (the demo's model): zero width, through weighted_metrics
    right = torch.tensor([True, True, False, False, True, True, True])[targets]
    probs = torch.nn.functional.one_hot(torch.where(right, targets, (targets + 1) % 7), 7).float() * 0.9 + 0.1 / 7
    boot = Bootstrap.draw(targets, seed=0).intervals(lambda w: weighted_metrics(probs, targets, "multiclass", w))
    assert boot["acc_ci95"] == pytest.approx([289 / 329, 289 / 329]) and boot["bal_acc_ci95"] == pytest.approx([5 / 7] * 2)
    low, high = proportion_interval(289, 329)
    assert [low, high] == pytest.approx(stats.beta.ppf([0.025, 0.975], 289.5, 40.5).tolist(), abs=1e-12)
    assert [low, high] == pytest.approx([0.8398, 0.9104], abs=1e-4)
    low, high = mean_of_proportions_interval(torch.tensor([31, 187, 0, 0, 31, 20, 20]), torch.as_tensor(COUNTS))
    assert low < 5 / 7 < high and high - low > 0.05
