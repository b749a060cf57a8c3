"""TCAV (Kim et al. 2018): concept activation vectors and directional-derivative scores with significance.

A CAV is the unit normal of a linear classifier separating a layer's flattened activations of concept images
(label 1) from those of random images (label 0), pointing towards the concept. The default classifier
(``classifier="hinge"``) is tensorflow-tcav's and captum's (``captum.concept._utils.classifier.DefaultClassifier``):
scikit-learn's ``SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3)`` with its default hinge loss (a linear SVM),
seeded, on the raw activations (``fit="raw"``) in their own dtype, trained on captum's split: Python's
``random.shuffle`` seeded with the run's seed, the first floor(33 % of N) points held out for the accuracy.
With that seed for both the split and ``np.random`` the CAV equals captum's. ``classifier="logistic"`` (the previous default):
L2-regularised logistic regression, mean log-loss + ``l2`` / 2 * ||w||^2 (the objective of sklearn's
SGDClassifier(loss="log_loss", alpha=l2)) solved to convergence by Newton's method (:func:`logistic_regression`).
``fit="standardised"`` (trixai 0.1) fits on features standardised on the training part and maps the weights back.

The TCAV score of a class is the fraction of its inputs whose target-logit gradient at the layer has a positive
dot product with the CAV. Significance: ``R`` runs, each against its own random set, give R concept scores;
R random-vs-random CAVs, each from two further random sets, give R null scores; all 3R sets are independent
draws. A two-sided Student t-test (``test="student"``; ``welch`` = trixai 0.1's unequal-variance test) compares
the two samples. Kim et al. Bonferroni-correct the tests: with m hypotheses in a report (:func:`bonferroni_hypotheses`:
one per tested class, layer and concept) the corrected p-value is min(1, m * p) (:func:`bonferroni`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from random import Random

import torch
from scipy import stats
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.core.frozen import frozen_eval
from trixai.xai.base import layer_gradients, record_activations, resolve_layers

CAV_CLASSIFIERS = ("hinge", "logistic")
CAV_FITS = ("raw", "standardised")
T_TESTS = ("student", "welch")


def layer_activations(model: nn.Module, x: Tensor, layer: str, *, batch_size: int = 64) -> Tensor:
    """Flattened activations (N, D) of ``layer`` (a preset or module path) for images ``x``."""
    modules = resolve_layers(model, [layer])
    chunks = []
    with frozen_eval(model), torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            with record_activations(modules) as acts:
                model(x[start:start + batch_size])
            chunks.append(acts[layer].detach().flatten(1))
    return torch.cat(chunks)


def layer_logit_gradients(model: nn.Module, x: Tensor, target: int, layer: str, *,
                          batch_size: int = 64) -> Tensor:
    """Gradients (N, D) of the ``target`` logit w.r.t. the flattened activations of ``layer``."""
    modules = resolve_layers(model, [layer])
    chunks = []
    with frozen_eval(model):
        for start in range(0, x.shape[0], batch_size):
            _, grads, _, _ = layer_gradients(model, x[start:start + batch_size], target, modules)
            chunks.append(grads[layer].flatten(1))
    return torch.cat(chunks)


@dataclass
class CAV:
    """Unit concept direction in the layer's activation space and the classifier's held-out accuracy."""

    direction: Tensor
    accuracy: float


def logistic_regression(x: Tensor, y: Tensor, l2: float, *, max_iter: int = 100) -> tuple[Tensor, Tensor]:
    """Weights (D,) and bias minimising mean log-loss + ``l2`` / 2 * ||w||^2 (bias unpenalised), in float64.

    The optimal w lies in the span of the rows of ``x``, so the problem is solved exactly in that (<= N-dim)
    subspace by Newton's method with backtracking: deterministic and fast for D >> N.
    """
    x, y = x.double(), y.double()
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    keep = s > s.max() * 1e-12
    design = torch.cat([u[:, keep] * s[keep], torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], dim=1)
    penalty = torch.full((design.shape[1],), float(l2), dtype=x.dtype, device=x.device)
    penalty[-1] = 0.0
    theta = torch.zeros(design.shape[1], dtype=x.dtype, device=x.device)
    signs = 2 * y - 1

    def objective(t: Tensor) -> Tensor:
        return torch.nn.functional.softplus(-signs * (design @ t)).mean() + 0.5 * (penalty * t * t).sum()

    for _ in range(max_iter):
        p = torch.sigmoid(design @ theta)
        grad = design.T @ (p - y) / len(y) + penalty * theta
        if float(grad.abs().max()) < 1e-12:
            break
        hessian = (design.T * (p * (1 - p) / len(y))) @ design + torch.diag(penalty.clamp_min(1e-12))
        step, rate, current = torch.linalg.solve(hessian, grad), 1.0, objective(theta)
        while rate > 1e-10 and objective(theta - rate * step) > current - 1e-4 * rate * float(grad @ step):
            rate /= 2
        theta = theta - rate * step
    return vh[keep].T @ theta[:-1], theta[-1]


def split_indices(n: int, seed: int, holdout: float = 0.33) -> tuple[Tensor, Tensor]:
    """(train, test) indices of captum's split (``DefaultClassifier``): ``random.shuffle`` of 0..n-1 with Python's
    generator seeded with ``seed``, the first floor(``holdout`` * n) held out; no hold-out below 6 points."""
    order = list(range(n))
    Random(seed).shuffle(order)
    n_test = int(holdout * n) if n >= 6 else 0
    return torch.tensor(order[n_test:], dtype=torch.long), torch.tensor(order[:n_test], dtype=torch.long)


def hinge_svm(x: Tensor, y: Tensor, l2: float, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Weights (D,) and bias of sklearn's ``SGDClassifier(alpha=l2, max_iter=1000, tol=1e-3)`` (hinge loss: a linear
    SVM, tensorflow-tcav's and captum's CAV classifier) fitted on ``x`` in its dtype, ``random_state=seed``."""
    from sklearn.linear_model import SGDClassifier  # heavy import: only when a hinge CAV is fitted

    model = SGDClassifier(alpha=l2, max_iter=1000, tol=1e-3, random_state=seed)
    model.fit(x.detach().cpu().numpy(), y.detach().cpu().numpy())
    return torch.from_numpy(model.coef_[0]).to(x.device), torch.tensor(float(model.intercept_[0]), device=x.device)


def train_cav(concept: Tensor, random: Tensor, *, classifier: str = "hinge", fit: str = "raw", l2: float = 1e-2,
              seed: int = 0, holdout: float = 0.33) -> CAV:
    """Linear classifier concept=1 vs random=0 (``classifier``: ``hinge`` | ``logistic``, regularisation ``l2``)
    on the seeded split of :func:`split_indices`; accuracy on the held-out points (on the training points when
    there are < 6). The CAV is the unit weight vector in the raw activation space."""
    if classifier not in CAV_CLASSIFIERS:
        raise TrixaiError(f"explainer.cav_classifier={classifier!r} is not one of {list(CAV_CLASSIFIERS)}")
    if fit not in CAV_FITS:
        raise TrixaiError(f"explainer.cav_fit={fit!r} is not one of {list(CAV_FITS)}")
    if len(concept) < 2 or len(random) < 2:
        raise TrixaiError(f"TCAV needs >= 2 concept and >= 2 random images, got {len(concept)} and {len(random)}")
    features = torch.cat([concept, random])
    if features.dtype not in (torch.float32, torch.float64):  # half-precision activations: fit in float32
        features = features.float()
    labels = torch.cat([torch.ones(len(concept)), torch.zeros(len(random))]).to(features.device)
    train, test = (i.to(features.device) for i in split_indices(len(labels), seed, holdout))
    if int(labels[train].sum()) in (0, len(train)):
        raise TrixaiError(f"the seeded split (seed {seed}) left only one kind of image in the training part of "
                          f"{len(concept)} concept and {len(random)} random images: use more images")
    if fit == "standardised":
        features = features.double()
        shift, scale = features[train].mean(0), features[train].std(0).clamp_min(1e-8)
        features = (features - shift) / scale
    else:
        scale = torch.ones_like(features[0], dtype=torch.float64)
    if classifier == "hinge":
        weight, bias = hinge_svm(features[train], labels[train].to(features.dtype), l2, seed=seed)
    else:
        weight, bias = logistic_regression(features[train], labels[train], l2)
    evaluated = test if len(test) else train
    decision = features[evaluated].double() @ weight.double() + float(bias)
    accuracy = float(((decision > 0).double() == labels[evaluated].double()).double().mean())
    direction = (weight.double() / scale).float()
    norm = direction.norm()
    if norm == 0:
        raise TrixaiError("the concept and random activations could not be separated at all (zero CAV)")
    return CAV(direction=direction / norm, accuracy=accuracy)


def tcav_score(gradients: Tensor, cav: CAV) -> float:
    """Fraction of inputs whose directional derivative ``grad . cav`` is positive."""
    return float(((gradients.double() @ cav.direction.double().to(gradients.device)) > 0).double().mean())


def t_test(scores: Sequence[float], random_scores: Sequence[float], test: str = "student") -> float:
    """Two-sided p-value of the concept's scores against the random-vs-random scores (Student or Welch t-test).

    Two constant samples: 1.0 when equal, 0.0 when not (the t statistic is infinite).
    """
    if test not in T_TESTS:
        raise TrixaiError(f"explainer.t_test={test!r} is not one of {list(T_TESTS)}")
    s, r = torch.tensor(scores, dtype=torch.float64), torch.tensor(random_scores, dtype=torch.float64)
    if s.std() == 0 and r.std() == 0:
        return 0.0 if s.mean() != r.mean() else 1.0
    with warnings.catch_warnings():  # one side may be constant (all scores 1.0): the test still holds
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(scores, random_scores, equal_var=test == "student").pvalue)


def split_random_sets(random_sets: Sequence[Tensor]) -> tuple[list[Tensor], list[tuple[Tensor, Tensor]]]:
    """R = len // 3 runs: sets 0..R-1 are the concept's counter-sets, sets R + 2j and R + 2j + 1 the j-th
    random-vs-random pair (sets beyond 3R are unused)."""
    runs = len(random_sets) // 3
    if runs < 2:
        raise TrixaiError(f"TCAV significance needs >= 2 runs, i.e. >= 6 random sets (3 per run: one against the "
                          f"concept, two for a random-vs-random CAV), got {len(random_sets)}")
    pairs = [(random_sets[runs + 2 * j], random_sets[runs + 2 * j + 1]) for j in range(runs)]
    return list(random_sets[:runs]), pairs


def bonferroni_hypotheses(n_classes: int, n_layers: int = 1, n_concepts: int = 1) -> int:
    """m of the Bonferroni correction: one hypothesis (the concept's scores differ from random) per tested class,
    layer and concept of a report."""
    counts = {"n_classes": n_classes, "n_layers": n_layers, "n_concepts": n_concepts}
    bad = {k: v for k, v in counts.items() if int(v) != v or v < 1}
    if bad:
        raise TrixaiError(f"Bonferroni hypotheses need positive integer counts, got {bad}")
    return int(n_classes) * int(n_layers) * int(n_concepts)


def _check_hypotheses(n_hypotheses: int) -> int:
    if int(n_hypotheses) != n_hypotheses or n_hypotheses < 1:
        raise TrixaiError(f"TCAV n_hypotheses={n_hypotheses} (the Bonferroni m) must be a positive integer")
    return int(n_hypotheses)


def bonferroni(p_value: float, n_hypotheses: int) -> float:
    """Bonferroni-corrected p-value min(1, m * p) for m = ``n_hypotheses`` tests (NaN stays NaN)."""
    m = _check_hypotheses(n_hypotheses)
    return min(1.0, p_value * m) if math.isfinite(p_value) else p_value


@dataclass
class TCAVResult:
    """Scores of the concept (one per run) and of random-vs-random CAVs, with the t-test: raw p-value and verdict
    at ``alpha``, and the Bonferroni-corrected ones for the report's ``n_hypotheses`` tests."""

    concept: str
    class_name: str
    layer: str
    score_mean: float
    score_std: float
    random_score_mean: float
    random_score_std: float
    p_value: float
    significant: bool
    p_value_bonferroni: float
    significant_bonferroni: bool
    n_hypotheses: int
    alpha: float
    scores: list[float]
    random_scores: list[float]
    cav_accuracy_mean: float
    n_inputs: int
    n_runs: int
    cav_classifier: str
    cav_fit: str
    t_test: str

    def as_dict(self) -> dict:
        return asdict(self)


def tcav(model: nn.Module, class_inputs: Tensor, class_index: int, concept_images: Tensor,
         random_sets: Sequence[Tensor], layer: str, *, concept: str = "concept", alpha: float = 0.05,
         cav_classifier: str = "hinge", cav_fit: str = "raw", test: str = "student", n_hypotheses: int = 1,
         batch_size: int = 64) -> TCAVResult:
    """TCAV of ``concept_images`` for class ``class_index`` at ``layer``; ``random_sets`` (>= 6, independent draws)
    are split by :func:`split_random_sets` into R counter-sets and R random-vs-random pairs. Run i's CAVs use
    seed i (split and classifier). ``n_hypotheses``: the report's m (:func:`bonferroni_hypotheses`)."""
    counters, pairs = split_random_sets(random_sets)
    m = _check_hypotheses(n_hypotheses)
    if test not in T_TESTS:
        raise TrixaiError(f"explainer.t_test={test!r} is not one of {list(T_TESTS)}")
    if cav_classifier not in CAV_CLASSIFIERS:
        raise TrixaiError(f"explainer.cav_classifier={cav_classifier!r} is not one of {list(CAV_CLASSIFIERS)}")
    grads = layer_logit_gradients(model, class_inputs, class_index, layer, batch_size=batch_size)

    def acts(images: Tensor) -> Tensor:
        return layer_activations(model, images, layer, batch_size=batch_size)

    concept_acts = acts(concept_images)
    fit = {"classifier": cav_classifier, "fit": cav_fit}
    cavs = [train_cav(concept_acts, acts(r), **fit, seed=i) for i, r in enumerate(counters)]
    null = [train_cav(acts(a), acts(b), **fit, seed=i) for i, (a, b) in enumerate(pairs)]
    scores = [tcav_score(grads, cav) for cav in cavs]
    random_scores = [tcav_score(grads, cav) for cav in null]
    p_value = t_test(scores, random_scores, test)
    corrected = bonferroni(p_value, m)
    s, r = torch.tensor(scores, dtype=torch.float64), torch.tensor(random_scores, dtype=torch.float64)
    names = getattr(model, "class_names", None)
    return TCAVResult(
        concept=concept, class_name=names[class_index] if names else str(class_index), layer=layer,
        score_mean=float(s.mean()), score_std=float(s.std(unbiased=False)),
        random_score_mean=float(r.mean()), random_score_std=float(r.std(unbiased=False)),
        p_value=p_value, significant=math.isfinite(p_value) and p_value < alpha,
        p_value_bonferroni=corrected, significant_bonferroni=math.isfinite(corrected) and corrected < alpha,
        n_hypotheses=m, alpha=alpha, scores=scores, random_scores=random_scores,
        cav_accuracy_mean=sum(c.accuracy for c in cavs) / len(cavs), n_inputs=int(class_inputs.shape[0]),
        n_runs=len(counters), cav_classifier=cav_classifier, cav_fit=cav_fit, t_test=test,
    )
