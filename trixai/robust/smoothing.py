"""Randomized smoothing: certified L2 robustness of the smoothed classifier (Cohen, Rosenfeld & Kolter, ICML 2019).

The smoothed classifier is g(x) = argmax_c P(f(x + ε) = c) with ε ~ N(0, σ²I) and f the model's arg-max. Theorem 1
of the paper: if the top class has probability p_A ≥ p̲_A > ½, g is constant within the L2 ball of radius
σ·Φ⁻¹(p̲_A) around x. :meth:`Smoothing.certify` and :meth:`Smoothing.predict` are the paper's Monte Carlo algorithms
CERTIFY and PREDICT, with the reference implementation's semantics (github.com/locuslab/smoothing, code/core.py).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import beta, binomtest, norm
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.core.frozen import frozen_eval

ABSTAIN = -1
"""The class returned where the smoothed classifier abstains (as the reference's ``Smooth.ABSTAIN``)."""

NOISE_BLOCK = 100
"""Noise samples per generator: the draws of one point come in blocks of this many, each block from its own
generator, so the noise depends on neither the batching of points nor ``max_rows``."""


@dataclass(frozen=True)
class Certification:
    """CERTIFY's result per point (CPU tensors, N points, K classes)."""

    prediction: Tensor
    """(N,) int64: ĉ_A where certified, else :data:`ABSTAIN`."""
    radius: Tensor
    """(N,) float64: σ·Φ⁻¹(p̲_A) in the [0, 1] input space (L2), 0 where abstaining."""
    p_lower: Tensor
    """(N,) float64: the one-sided Clopper–Pearson lower bound p̲_A at level 1 − α."""
    c_hat: Tensor
    """(N,) int64: the class picked by the selection counts (also where abstaining)."""
    n_a: Tensor
    """(N,) int64: the estimation count of ``c_hat``."""
    selection_counts: Tensor
    """(N, K) int64: class counts of the n0 selection samples."""
    estimation_counts: Tensor
    """(N, K) int64: class counts of the n estimation samples."""


@dataclass(frozen=True)
class Prediction:
    """PREDICT's result per point (CPU tensors, N points, K classes)."""

    prediction: Tensor
    """(N,) int64: the top class where the test rejects a tie (p-value ≤ α), else :data:`ABSTAIN`."""
    n_a: Tensor
    """(N,) int64: the top count."""
    n_b: Tensor
    """(N,) int64: the runner-up count."""
    p_value: Tensor
    """(N,) float64: the two-sided binomial test of n_A out of n_A + n_B at ½."""
    counts: Tensor
    """(N, K) int64: class counts of the n samples."""


@dataclass(frozen=True)
class Smoothing:
    """Randomized smoothing with Gaussian noise N(0, σ²I) added in the model's [0, 1] input space.

    The model normalises inside, so the noise and the certified radius are in [0, 1] pixel units. The noisy inputs
    are NOT clamped to [0, 1], as in the reference implementation (whose models are also trained on unclamped noise).
    Smoothing certifies the multiclass arg-max; a model with ``.task == "multilabel"`` raises :class:`TrixaiError`
    (a per-label certificate is a different method).

    Every noise draw of a point derives from (``seed``, the point's index, the phase, the block of
    :data:`NOISE_BLOCK` samples), each block from its own ``torch.Generator`` on the input's device: a point's
    result does not depend on which points share its batch, nor on ``max_rows`` (up to floating-point effects of
    the batch size on the model's outputs). Streams differ between device types (CPU, CUDA).

    ``n0`` selection samples, ``n`` estimation samples (PREDICT uses ``n``), failure probability ``alpha``;
    ``max_rows`` bounds the noisy samples (of several points) per forward, the reference's ``batch``. The defaults
    are the paper's and the reference's ``certify.py``'s (n0 = 100, n = 100,000, α = 0.001, batch 1,000).
    """

    sigma: float
    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    max_rows: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma) and self.sigma > 0):
            raise TrixaiError(f"smoothing.sigma must be a finite number > 0, got {self.sigma!r}")
        for name in ("n0", "n", "max_rows"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise TrixaiError(f"smoothing.{name} must be an integer ≥ 1, got {value!r}")
        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha < 1):
            raise TrixaiError(f"smoothing.alpha must be in (0, 1), got {self.alpha!r}")

    def certify(self, model: nn.Module, x: Tensor, index: Sequence[int] | Tensor) -> Certification:
        """CERTIFY for a batch ``x`` (N, ...) whose points have the dataset indices ``index`` (N,).

        ĉ_A is the arg-max of the n0 selection counts (lowest class on ties); n_A its count among the n estimation
        samples; p̲_A = Beta⁻¹(α; n_A, n − n_A + 1), the one-sided Clopper–Pearson (1934) lower bound at level 1 − α
        (0 when n_A = 0; the reference's ``proportion_confint(n_A, n, alpha=2α, method="beta")[0]``). The point is
        certified with radius σ·Φ⁻¹(p̲_A) when p̲_A > ½, as in the paper's pseudo-code; otherwise it abstains
        (class :data:`ABSTAIN`, radius 0). The reference code abstains only when p̲_A < ½, so the two differ only
        at p̲_A = ½ exactly, where the radius would be 0.
        """
        points = self._points(model, x, index)
        selection = self._counts(model, x, points, "selection", self.n0)
        estimation = self._counts(model, x, points, "estimation", self.n)
        c_hat = selection.argmax(dim=1)
        n_a = estimation.gather(1, c_hat[:, None])[:, 0]
        k = n_a.numpy()
        p_lower = np.where(k > 0, beta.ppf(self.alpha, np.maximum(k, 1), self.n - k + 1), 0.0)
        certified = p_lower > 0.5
        radius = np.where(certified, self.sigma * norm.ppf(p_lower), 0.0)
        return Certification(
            prediction=torch.where(torch.from_numpy(certified), c_hat, torch.full_like(c_hat, ABSTAIN)),
            radius=torch.from_numpy(radius),
            p_lower=torch.from_numpy(p_lower),
            c_hat=c_hat, n_a=n_a, selection_counts=selection, estimation_counts=estimation,
        )

    def predict(self, model: nn.Module, x: Tensor, index: Sequence[int] | Tensor) -> Prediction:
        """PREDICT for a batch ``x`` (N, ...) whose points have the dataset indices ``index`` (N,).

        From n samples: the top two counts n_A, n_B (the lower class first on ties) and the two-sided binomial test
        of n_A out of n_A + n_B at ½ (Hung & Fithian 2019, as in the paper); abstain when the p-value exceeds α.
        """
        points = self._points(model, x, index)
        counts = self._counts(model, x, points, "prediction", self.n)
        ordered, classes = counts.sort(dim=1, descending=True, stable=True)
        n_a, n_b = ordered[:, 0], ordered[:, 1]
        p_value = torch.tensor([binomtest(a, a + b, 0.5).pvalue for a, b in zip(n_a.tolist(), n_b.tolist())],
                               dtype=torch.float64)
        prediction = torch.where(p_value <= self.alpha, classes[:, 0], torch.full_like(classes[:, 0], ABSTAIN))
        return Prediction(prediction=prediction, n_a=n_a, n_b=n_b, p_value=p_value, counts=counts)

    def noise(self, point: Tensor, index: int, phase: str, num: int) -> Tensor:
        """The first ``num`` noise draws (num, ...) of the point with dataset index ``index`` in ``phase``
        (``"selection"``, ``"estimation"`` or ``"prediction"``), already scaled by σ, on ``point``'s device."""
        return torch.cat(list(self._draws(point, index, phase, num)))

    def _draws(self, point: Tensor, index: int, phase: str, num: int) -> Iterator[Tensor]:
        """The noise of :meth:`noise` block by block: block b from a generator seeded by (seed, index, phase, b)."""
        for block, start in enumerate(range(0, num, NOISE_BLOCK)):
            digest = hashlib.sha256(f"{self.seed}/{index}/{phase}/{block}".encode()).digest()
            generator = torch.Generator(device=point.device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)
            size = (min(NOISE_BLOCK, num - start), *point.shape)
            yield torch.randn(size, generator=generator, device=point.device, dtype=point.dtype) * self.sigma

    def _points(self, model: nn.Module, x: Tensor, index: Sequence[int] | Tensor) -> list[int]:
        if getattr(model, "task", "multiclass") == "multilabel":
            raise TrixaiError("randomized smoothing certifies the multiclass arg-max; the model's task is "
                              "'multilabel' (a per-label certificate is a different method)")
        points = [int(i) for i in (index.tolist() if isinstance(index, Tensor) else index)]
        if len(points) != len(x) or not points:
            raise TrixaiError(f"smoothing needs one index per point and at least one point: got {len(points)} "
                              f"indices for {len(x)} points")
        return points

    def _counts(self, model: nn.Module, x: Tensor, points: list[int], phase: str, num: int) -> Tensor:
        """Class counts (N, K) of the model's arg-max on ``num`` noisy samples per point (CPU int64)."""
        counts: Tensor | None = None
        rows = ((i, x[i] + draws) for i, point in enumerate(points) for draws in self._draws(x[i], point, phase, num))
        with frozen_eval(model), torch.no_grad():
            for owners, batch in _groups(rows, self.max_rows):
                logits = model(batch)
                if logits.dim() != 2 or logits.shape[1] < 2:
                    raise TrixaiError(f"randomized smoothing needs (N, K ≥ 2) class scores from the model, got "
                                      f"outputs of shape {tuple(logits.shape)}")
                if counts is None:
                    counts = torch.zeros(len(points), logits.shape[1], dtype=torch.int64, device=logits.device)
                labels = logits.argmax(dim=1)
                counts.index_put_((owners.to(labels.device), labels), torch.ones_like(labels), accumulate=True)
        assert counts is not None  # at least one point and one sample
        return counts.cpu()


def _groups(rows: Iterable[tuple[int, Tensor]], max_rows: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Concatenate the (point, samples) parts into forwards of exactly ``max_rows`` rows (the last may be shorter);
    yields (point of each row, rows)."""
    owners: list[Tensor] = []
    parts: list[Tensor] = []
    size = 0
    for i, samples in rows:
        while len(samples):
            take = samples[: max_rows - size]
            owners.append(torch.full((len(take),), i, dtype=torch.int64))
            parts.append(take)
            size += len(take)
            samples = samples[len(take):]
            if size == max_rows:
                yield torch.cat(owners), torch.cat(parts)
                owners, parts, size = [], [], 0
    if parts:
        yield torch.cat(owners), torch.cat(parts)


def certified_accuracy(radius: Tensor, correct: Tensor, at: Sequence[float]) -> list[float]:
    """Certified accuracy at each radius r of ``at``: the fraction of points whose certified class equals the label
    and whose radius is ≥ r (Cohen et al. 2019; the reference's ``analyze.py``).

    ``correct`` is ``certification.prediction == label``, so abstentions (class :data:`ABSTAIN`) count as wrong.
    """
    if radius.shape != correct.shape or radius.dim() != 1:
        raise TrixaiError(f"certified_accuracy needs radius and correct of one shape (N,), got "
                          f"{tuple(radius.shape)} and {tuple(correct.shape)}")
    return [float((correct.bool() & (radius >= r)).double().mean()) for r in at]


def linf_equivalent_radius(radius: float | Tensor, dim: int) -> float | Tensor:
    """The L∞ radius r/√d whose ball lies inside the certified L2 ball of radius r in d input dimensions
    (‖δ‖₂ ≤ √d·‖δ‖∞): a conservative L∞ certificate, for comparison with L∞ attacks' ε."""
    return radius / math.sqrt(dim)
