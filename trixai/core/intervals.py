"""Confidence intervals for proportions that keep their coverage at 0 and 1.

A percentile bootstrap stratified by class has zero width when every class is all-right or all-wrong, and then
excludes any true accuracy other than the observed one. These intervals do not collapse:

- One proportion x/n (accuracy, top-2, robust accuracy, the recall of one class): the Jeffreys interval (Brown, Cai
  & DasGupta 2001, "Interval estimation for a binomial proportion", Statistical Science 16(2), sec. 4.1.2): the
  (1 - level)/2 and (1 + level)/2 quantiles of Beta(x + 1/2, n - x + 1/2), with their boundary modification (lower
  bound 0 when x = 0, upper bound 1 when x = n). Its coverage is near, not at least, the level: for 20 points it
  dips to about 0.89 at some p inside (0, 1). Named variants: ``method="wilson"``, the Wilson score interval (ibid.,
  sec. 4.1.1); ``method="clopper_pearson"``, the exact interval (Clopper & Pearson 1934), coverage at least the
  level at every p, wider.
- A mean of K independent proportions x_k/n_k (balanced accuracy = mean per-class recall; with ``shares``, any
  weighted mean, e.g. accuracy with the class shares of the test set held fixed): the percentile interval of the
  posterior of the mean of independent per-class Jeffreys posteriors Beta(x_k + 1/2, n_k - x_k + 1/2) (Brodersen et
  al. 2010, "The balanced accuracy and its posterior distribution", ICPR, with Jeffreys' instead of a uniform
  prior), by seeded Monte Carlo. Boundary modification, the K-class form of Brown et al.'s: the lower bound is the
  quantile of the mean with every class at x_k = 0 held at 0, the upper bound the quantile with every class at
  x_k = n_k held at 1. For K = 1 it is the modified Jeffreys interval (up to Monte Carlo error); it only ever widens the interval, and a class
  whose true proportion is exactly 0 or 1 always shows x_k = 0 or n_k, so its bound is then its true value (with
  every class at n_k the upper bound is 1, at 0 the lower bound is 0). Classes without points are left out.
  The posterior treats the classes as independent (true of disjoint classes; not of the labels of one image).
  The draws for class k with x_k out of n_k come from a generator seeded by (seed, k, x_k, n_k): an interval
  depends on its counts and the seed only (up to rounding), also when many sets are computed in one batch.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from trixai.core.errors import TrixaiError

METHODS = ("jeffreys", "wilson", "clopper_pearson")
LEVEL = 0.95
DRAWS = 20_000
CHUNK_ELEMENTS = 1 << 21  # posterior draws × sets held at once, bounds memory on large batches


def proportion_bounds(successes: Tensor | np.ndarray | float, trials: Tensor | np.ndarray | float,
                      method: str = "jeffreys", level: float = LEVEL) -> tuple[Tensor, Tensor]:
    """Lower and upper bounds (float64, broadcast shape of the inputs) of the interval for ``successes`` out of
    ``trials``, elementwise; NaN where ``trials`` is 0."""
    x, n = np.broadcast_arrays(_array(successes, "successes"), _array(trials, "trials"))
    _check(x, n, level)
    if method not in METHODS:
        raise TrixaiError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    tail = (1 - level) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "jeffreys":
            low = stats.beta.ppf(tail, x + 0.5, n - x + 0.5)
            high = stats.beta.ppf(1 - tail, x + 0.5, n - x + 0.5)
        elif method == "wilson":
            z = stats.norm.ppf(1 - tail)
            center = (x + z * z / 2) / (n + z * z)
            half = z / (n + z * z) * np.sqrt(x * (n - x) / n + z * z / 4)
            low, high = np.clip(center - half, 0, 1), np.clip(center + half, 0, 1)
        else:
            low = stats.beta.ppf(tail, x, n - x + 1)
            high = stats.beta.ppf(1 - tail, x + 1, n - x)
    low, high = np.where(x == 0, 0.0, low), np.where(x == n, 1.0, high)
    empty = n == 0
    return torch.from_numpy(np.where(empty, np.nan, low)), torch.from_numpy(np.where(empty, np.nan, high))


def proportion_interval(successes: float, trials: float, method: str = "jeffreys", level: float = LEVEL
                        ) -> list[float] | None:
    """``[low, high]`` for ``successes`` out of ``trials`` (see :func:`proportion_bounds`); None when trials is 0."""
    low, high = proportion_bounds(float(successes), float(trials), method, level)
    return None if bool(low.isnan()) else [float(low), float(high)]


def mean_of_proportions_bounds(successes: Tensor | np.ndarray, trials: Tensor | np.ndarray,
                               level: float = LEVEL, draws: int = DRAWS, seed: int = 0,
                               shares: Tensor | np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """Lower and upper bounds (float64, shape (...)) for the mean of the proportions ``successes / trials`` over
    their last axis (K classes; ``trials`` and ``shares`` broadcast against ``successes`` (..., K)), weighted by
    ``shares`` (normalised over the classes with points; default equal: balanced accuracy), from ``draws``
    posterior draws (see the module docstring); NaN where no class has points and a positive share."""
    x = _array(successes, "successes")
    n = _array(trials, "trials")
    w = np.ones(()) if shares is None else _array(shares, "shares")
    if x.ndim == 0:
        raise TrixaiError(f"successes must have a class axis (..., K), got shape {x.shape}")
    x, n, w = np.broadcast_arrays(x, n, w)
    _check(x, n, level)
    if (x != np.round(x)).any() or (n != np.round(n)).any():
        raise TrixaiError("successes and trials must be whole counts for the mean of proportions")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise TrixaiError(f"draws must be a positive integer, got {draws!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TrixaiError(f"seed must be a non-negative integer, got {seed!r}")
    shape, classes = x.shape[:-1], x.shape[-1]
    x, n, w = (a.reshape(-1, classes) for a in (x, n, w))
    w = np.where(n > 0, w, 0.0)
    total = w.sum(1, keepdims=True)
    w = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    # Draws of every class's distinct (x, n) stacked (U, draws); select (S, U) puts each set's class shares on its
    # rows, so that the mean of every set is one matrix product.
    parts = [_posterior_draws(x[:, k], n[:, k], k, draws, seed) for k in range(classes)]
    at_zero, below_one = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    select = np.zeros((len(x), len(at_zero)))
    offset = 0
    for k, (held, _, row) in enumerate(parts):
        select[np.arange(len(x)), offset + row] = w[:, k]
        offset += len(held)
    tail = (1 - level) / 2
    rows = max(1, CHUNK_ELEMENTS // draws)
    lows, highs = [], []
    for chunk in np.array_split(select, range(rows, len(select), rows)):
        lows.append(np.quantile(chunk @ at_zero, tail, axis=1))
        # 1 - mean, so that every class held at 1 gives exactly 1
        highs.append(1 - np.quantile(chunk @ below_one, tail, axis=1))
    empty = total[:, 0] <= 0
    low = np.where(empty, np.nan, np.concatenate(lows)).reshape(shape)
    high = np.where(empty, np.nan, np.concatenate(highs)).reshape(shape)
    return torch.from_numpy(low), torch.from_numpy(high)


def mean_of_proportions_interval(successes: Tensor | np.ndarray, trials: Tensor | np.ndarray,
                                 level: float = LEVEL, draws: int = DRAWS, seed: int = 0,
                                 shares: Tensor | np.ndarray | None = None) -> list[float] | None:
    """``[low, high]`` for the mean of the K proportions ``successes[k] / trials[k]`` (K,) (see
    :func:`mean_of_proportions_bounds`); None when no class has points and a positive share."""
    if _array(successes, "successes").ndim != 1:
        raise TrixaiError(f"successes must have shape (K,), got {tuple(np.shape(successes))}")
    low, high = mean_of_proportions_bounds(successes, trials, level, draws, seed, shares)
    return None if bool(low.isnan()) else [float(low), float(high)]


def _posterior_draws(x: np.ndarray, n: np.ndarray, k: int, draws: int, seed: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of the U distinct (x, n) of class ``k`` among the sets, Jeffreys posterior draws θ (U, draws) held
    at 0 where x = 0 (for the lower bound), and 1 - θ held at 0 where x = n (for the upper bound); each set's row."""
    pairs, row = np.unique(np.stack([x, n], 1), axis=0, return_inverse=True)
    theta = np.stack([np.random.default_rng([seed, k, int(a), int(b)]).beta(a + 0.5, b - a + 0.5, draws)
                      for a, b in pairs])
    at_zero = np.where(pairs[:, :1] == 0, 0.0, theta)
    below_one = np.where(pairs[:, :1] == pairs[:, 1:], 0.0, 1 - theta)
    return at_zero, below_one, row.reshape(-1)


def _array(values: Tensor | np.ndarray | float, name: str) -> np.ndarray:
    array = values.detach().cpu().double().numpy() if isinstance(values, Tensor) else np.asarray(values, np.float64)
    if not np.isfinite(array).all() or (array < 0).any():
        raise TrixaiError(f"{name} must be finite and non-negative, got {values!r}")
    return array


def _check(x: np.ndarray, n: np.ndarray, level: float) -> None:
    if (x > n).any():
        raise TrixaiError(f"successes must not exceed trials, got {x.tolist()} out of {n.tolist()}")
    if not 0 < level < 1:
        raise TrixaiError(f"level must lie in (0, 1), got {level!r}")
