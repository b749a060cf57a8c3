"""Randomized smoothing (Cohen et al. 2019): closed form of a linear classifier, abstention at a tie, agreement
with a literal re-statement of the reference's CERTIFY/PREDICT, batch independence, untouched model state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import state_snapshot, tiny_cnn, tiny_timm
from scipy.stats import beta, binom, binomtest, norm
from torch import nn

from trixai.core.errors import TrixaiError
from trixai.robust.smoothing import (
    ABSTAIN,
    Smoothing,
    certified_accuracy,
    linf_equivalent_radius,
)

D = 16


def linear_binary(seed: int = 0) -> tuple[nn.Linear, torch.Tensor, float]:
    """f(x) = argmax(Wx + b) with 2 classes in D dims (float64); returns the model, u = w₁ − w₀ and b₁ − b₀."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(D, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, D, generator=g, dtype=torch.float64))
        model.bias.copy_(torch.randn(2, generator=g, dtype=torch.float64))
    u = (model.weight[1] - model.weight[0]).detach()
    return model, u, float(model.bias[1].detach() - model.bias[0].detach())


def points_at_margins(u: torch.Tensor, db: float, margins: list[float], seed: int = 1) -> torch.Tensor:
    """Points x with u·x + (b₁ − b₀) = margin: moved from random points in [0, 1]^D along u."""
    x = torch.rand(len(margins), D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    shift = (torch.tensor(margins, dtype=torch.float64) - (x @ u + db)) / u.dot(u)
    return x + shift[:, None] * u


def test_certified_radius_of_a_linear_classifier_is_within_the_clopper_pearson_slack_of_the_true_radius():
    """p_A(x) = Φ(|m| / (σ‖u‖)), so the smoothed classifier's true radius is σΦ⁻¹(p_A) = |m| / ‖u‖. With n
    samples the count n_A is Binomial(n, p_A): with probability ≥ 1 − δ it is ≥ k_lo = the δ-quantile, so CERTIFY's
    radius σΦ⁻¹(p̲_A(n_A)) is ≥ σΦ⁻¹(p̲_A(k_lo)); and p̲_A ≤ p_A (radius ≤ true radius) with probability ≥ 1 − α."""
    model, u, db = linear_binary()
    sigma, n, alpha, delta = 0.5, 10_000, 0.001, 1e-6
    p_true = np.array([0.7, 0.9, 0.99, 0.999, 0.99999])
    signs = np.array([1, -1, 1, -1, 1])
    margins = (signs * sigma * float(u.norm()) * norm.ppf(p_true)).tolist()
    x = points_at_margins(u, db, margins)
    label = torch.tensor((signs > 0).astype(np.int64))
    assert torch.equal(model(x).argmax(1), label)

    cert = Smoothing(sigma=sigma, n0=100, n=n, alpha=alpha, max_rows=4096).certify(model, x, range(len(x)))

    true_radius = np.abs(margins) / float(u.norm())
    np.testing.assert_allclose(true_radius, sigma * norm.ppf(p_true), rtol=1e-12)
    k_lo = binom.ppf(delta, n, p_true)
    k_hi = binom.isf(delta, n, p_true)
    slack_floor = sigma * norm.ppf(beta.ppf(alpha, k_lo, n - k_lo + 1))
    assert torch.equal(cert.prediction, label) and torch.equal(cert.c_hat, label)
    n_a = cert.n_a.numpy()
    assert np.all((k_lo <= n_a) & (n_a <= k_hi)), (n_a, k_lo, k_hi)  # the noise really is N(0, σ²I)
    radius = cert.radius.numpy()
    assert np.all(radius <= true_radius), (radius, true_radius)
    assert np.all(radius >= slack_floor), (radius, slack_floor)
    # The slack is the Clopper–Pearson bound's: e.g. at p_A = 0.9 the radius loses at most 0.07 of 0.64.
    assert true_radius[1] - slack_floor[1] < 0.07 and true_radius[1] == pytest.approx(0.6408, abs=1e-4)


def test_a_point_on_the_decision_boundary_abstains_in_certify_and_predict():
    model, u, db = linear_binary()
    x = points_at_margins(u, db, [0.0, 5.0])  # a tie (p_A = ½) and a clear class-1 point
    smoothing = Smoothing(sigma=0.5, n0=100, n=10_000, alpha=0.001)
    cert = smoothing.certify(model, x, [10, 11])
    pred = smoothing.predict(model, x, [10, 11])

    assert cert.prediction.tolist() == [ABSTAIN, 1]
    assert cert.radius[0] == 0 and cert.p_lower[0] < 0.5 < cert.p_lower[1] and cert.radius[1] > 0
    k = int(cert.n_a[0])
    assert cert.p_lower[0] == pytest.approx(beta.ppf(0.001, k, 10_000 - k + 1), rel=1e-12)
    assert pred.prediction.tolist() == [ABSTAIN, 1]
    assert torch.equal(pred.n_a + pred.n_b, torch.tensor([10_000, 10_000]))
    for i in range(2):
        a, b = int(pred.n_a[i]), int(pred.n_b[i])
        assert float(pred.p_value[i]) == pytest.approx(binomtest(a, a + b, 0.5).pvalue, rel=1e-12)
    assert pred.p_value[0] > 0.001 >= pred.p_value[1]


def reference_counts(model, x, noise, num_classes, batch_size):
    """The reference's _sample_noise, fed the given noise (already scaled by σ) in its own batches."""
    counts = np.zeros(num_classes, dtype=int)
    num, used = len(noise), 0
    with torch.no_grad():
        for _ in range(math.ceil(num / batch_size)):
            this_batch_size = min(batch_size, num)
            num -= this_batch_size
            batch = x.repeat((this_batch_size, *[1] * x.dim()))
            predictions = model(batch + noise[used:used + this_batch_size]).argmax(1)
            used += this_batch_size
            for idx in predictions.numpy():
                counts[idx] += 1
    return counts


def reference_certify(model, x, noise0, noise, num_classes, sigma, alpha, batch_size):
    """The reference's CERTIFY; its _lower_confidence_bound is proportion_confint(nA, N, alpha=2α, "beta")[0],
    i.e. beta.ppf(α, nA, N − nA + 1), and 0 for nA = 0."""
    model.eval()
    counts_selection = reference_counts(model, x, noise0, num_classes, batch_size)
    c_a_hat = counts_selection.argmax().item()
    counts_estimation = reference_counts(model, x, noise, num_classes, batch_size)
    n_a, n = counts_estimation[c_a_hat].item(), len(noise)
    p_a_bar = beta.ppf(alpha, n_a, n - n_a + 1) if n_a > 0 else 0.0
    if p_a_bar < 0.5:
        return ABSTAIN, 0.0
    return c_a_hat, sigma * norm.ppf(p_a_bar)


def reference_predict(model, x, noise, num_classes, alpha, batch_size):
    """The reference's PREDICT (scipy's binom_test is now binomtest(...).pvalue)."""
    model.eval()
    counts = reference_counts(model, x, noise, num_classes, batch_size)
    top2 = counts.argsort()[::-1][:2]
    count1, count2 = counts[top2[0]], counts[top2[1]]
    if binomtest(int(count1), int(count1 + count2), p=0.5).pvalue > alpha:
        return ABSTAIN
    return int(top2[0])


def tiny_mlp() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    with torch.no_grad():
        model[0].weight.mul_(4)
        model[2].weight.mul_(4)
    return model


def test_certify_and_predict_agree_with_the_reference_on_the_same_noise():
    model = tiny_mlp()
    x = torch.rand(8, 6, generator=torch.Generator().manual_seed(1))
    index = list(range(8))
    smoothing = Smoothing(sigma=0.25, n0=30, n=300, alpha=0.001, max_rows=128)
    cert = smoothing.certify(model, x, index)
    pred = smoothing.predict(model, x, index)

    for i, point in enumerate(index):
        noise0 = smoothing.noise(x[i], point, "selection", 30)
        noise = smoothing.noise(x[i], point, "estimation", 300)
        c, radius = reference_certify(model, x[i], noise0, noise, 3, 0.25, 0.001, batch_size=64)
        assert int(cert.prediction[i]) == c
        assert float(cert.radius[i]) == pytest.approx(radius, rel=1e-12, abs=0)
        assert reference_predict(model, x[i], smoothing.noise(x[i], point, "prediction", 300), 3, 0.001, 64) \
            == int(pred.prediction[i])
    # The points exercise every branch: certified classes 0, 1 and 2, abstentions in both algorithms, and a point
    # whose selection class is not the estimation majority.
    assert {0, 1, 2, ABSTAIN} <= set(cert.prediction.tolist())
    assert ABSTAIN in pred.prediction.tolist() and len(set(pred.prediction.tolist())) >= 3
    assert bool((cert.estimation_counts.argmax(1) != cert.c_hat).any())


def test_results_do_not_depend_on_how_points_are_batched():
    model = tiny_cnn().eval()
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    index = torch.arange(100, 106)
    base = dict(sigma=0.5, n0=20, n=250, alpha=0.01, seed=7)  # 250 samples: three noise blocks per point
    together = Smoothing(**base, max_rows=1000)
    alone = Smoothing(**base, max_rows=37)
    fours = Smoothing(**base, max_rows=128)

    def stacked(results):
        return {k: torch.cat([getattr(r, k) for r in results]) for k in vars(results[0])}

    runs = {
        "one batch": stacked([together.certify(model, x, index)]),
        "one by one": stacked([alone.certify(model, x[i:i + 1], index[i:i + 1]) for i in range(6)]),
        "batches of 4": stacked([fours.certify(model, x[:4], index[:4]), fours.certify(model, x[4:], index[4:])]),
    }
    for name, run in runs.items():
        for key, value in run.items():
            assert torch.equal(value, runs["one batch"][key]), (name, key)
    assert torch.equal(stacked([alone.predict(model, x[i:i + 1], index[i:i + 1]) for i in range(6)])["counts"],
                       together.predict(model, x, index).counts)
    # The noise does come from (seed, index, phase): another index, phase or seed draws other noise.
    draws = together.noise(x[0], 100, "estimation", 250)
    assert draws.shape == (250, 3, 8, 8)
    assert not torch.equal(draws, together.noise(x[0], 101, "estimation", 250))
    assert not torch.equal(draws, together.noise(x[0], 100, "selection", 250))
    assert not torch.equal(draws, Smoothing(**{**base, "seed": 8}).noise(x[0], 100, "estimation", 250))
    assert torch.equal(draws[:100], together.noise(x[0], 100, "estimation", 100))


def test_model_state_is_untouched():
    model = tiny_cnn().train()
    before, modes = state_snapshot(model)
    x = torch.rand(3, 3, 8, 8)
    smoothing = Smoothing(sigma=0.25, n0=10, n=50)
    smoothing.certify(model, x, [0, 1, 2])
    smoothing.predict(model, x, [0, 1, 2])
    assert [m.training for m in model.modules()] == modes and model.training
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    after, _ = state_snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # eval mode: BatchNorm statistics did not move


def test_user_errors_name_the_culprit():
    with pytest.raises(TrixaiError, match="multilabel"):
        Smoothing(sigma=0.25, n0=2, n=2).certify(tiny_timm(task="multilabel"), torch.rand(1, 3, 32, 32), [0])
    with pytest.raises(TrixaiError, match="smoothing.sigma"):
        Smoothing(sigma=0.0)
    with pytest.raises(TrixaiError, match="smoothing.alpha"):
        Smoothing(sigma=0.25, alpha=1.0)
    with pytest.raises(TrixaiError, match="smoothing.n0"):
        Smoothing(sigma=0.25, n0=0)
    with pytest.raises(TrixaiError, match="2 indices for 3 points"):
        Smoothing(sigma=0.25, n0=2, n=2).predict(tiny_cnn(), torch.rand(3, 3, 8, 8), [0, 1])


def test_certified_accuracy_by_hand():
    radius = torch.tensor([0.5, 0.0, 1.2, 0.3, 0.8], dtype=torch.float64)
    prediction = torch.tensor([1, ABSTAIN, 0, 2, 1])
    label = torch.tensor([1, 1, 0, 1, 1])
    # correct: points 0, 2, 4 (the abstention and the wrong class are not)
    assert certified_accuracy(radius, prediction == label, [0.0, 0.5, 0.6, 1.2, 1.3]) == [0.6, 0.6, 0.4, 0.2, 0.0]


def test_linf_equivalent_radius_is_the_largest_linf_ball_inside_the_l2_ball():
    d, r = 3 * 8 * 8, 0.5
    linf = linf_equivalent_radius(r, d)
    assert linf == pytest.approx(0.5 / 13.856406460551018)
    corner = torch.full((d,), linf, dtype=torch.float64)  # the L∞ ball's farthest point is on the L2 sphere
    assert float(corner.norm()) == pytest.approx(r, rel=1e-12)
