"""TCAV (Kim et al. 2018): concept activation vectors and directional-derivative scores with significance.

A CAV is the unit normal of a linear classifier (L2-regularised logistic regression) separating a layer's
activations of concept images from those of random images, pointing towards the concept. The TCAV score of
a class is the fraction of that class's inputs whose target-logit gradient at the layer has a positive dot
product with the CAV. Significance: scores for the concept against R random sets are compared with scores
of random-vs-random CAVs by a two-sided Welch t-test.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from scipy import stats
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.core.frozen import frozen_eval
from trixai.xai.base import layer_gradients, record_activations, resolve_layers


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


def train_cav(concept: Tensor, random: Tensor, *, l2: float = 1e-2, seed: int = 0, holdout: float = 0.33) -> CAV:
    """Logistic regression (LBFGS, float64, features standardised on the training part) concept=1 vs random=0.

    The direction is the weight vector mapped back to the raw activation space and normalised.
    """
    if len(concept) < 2 or len(random) < 2:
        raise TrixaiError(f"TCAV needs >= 2 concept and >= 2 random images, got {len(concept)} and {len(random)}")
    features = torch.cat([concept, random]).double()
    labels = torch.cat([torch.ones(len(concept)), torch.zeros(len(random))]).double().to(features.device)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).to(features.device)
    n_test = int(round(holdout * len(labels))) if len(labels) >= 6 else 0
    test, train = order[:n_test], order[n_test:]
    mean, std = features[train].mean(0), features[train].std(0).clamp_min(1e-8)
    z = (features - mean) / std
    weight = torch.zeros(features.shape[1], dtype=torch.float64, device=features.device, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, device=features.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        logits = z[train] @ weight + bias
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[train]) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        evaluated = test if n_test else train
        accuracy = float((((z[evaluated] @ weight + bias) > 0).double() == labels[evaluated]).double().mean())
        direction = (weight / std).float()
    norm = direction.norm()
    if norm == 0:
        raise TrixaiError("the concept and random activations could not be separated at all (zero CAV)")
    return CAV(direction=direction / norm, accuracy=accuracy)


def tcav_score(gradients: Tensor, cav: CAV) -> float:
    """Fraction of inputs whose directional derivative ``grad . cav`` is positive."""
    return float(((gradients.double() @ cav.direction.double().to(gradients.device)) > 0).double().mean())


@dataclass
class TCAVResult:
    """Scores of the concept (one per random set) and of random-vs-random CAVs, with the t-test."""

    concept: str
    class_name: str
    layer: str
    score_mean: float
    score_std: float
    random_score_mean: float
    random_score_std: float
    p_value: float
    significant: bool
    scores: list[float]
    random_scores: list[float]
    cav_accuracy_mean: float
    n_inputs: int

    def as_dict(self) -> dict:
        return asdict(self)


def tcav(model: nn.Module, class_inputs: Tensor, class_index: int, concept_images: Tensor,
         random_sets: Sequence[Tensor], layer: str, *, concept: str = "concept", alpha: float = 0.05,
         batch_size: int = 64) -> TCAVResult:
    """TCAV of ``concept_images`` for class ``class_index`` at ``layer`` over ``len(random_sets)`` >= 2
    random counter-sets; random-vs-random CAVs pair set i with set i+1 (cyclically)."""
    if len(random_sets) < 2:
        raise TrixaiError(f"TCAV significance needs >= 2 random sets, got {len(random_sets)}")
    grads = layer_logit_gradients(model, class_inputs, class_index, layer, batch_size=batch_size)
    concept_acts = layer_activations(model, concept_images, layer, batch_size=batch_size)
    random_acts = [layer_activations(model, images, layer, batch_size=batch_size) for images in random_sets]
    cavs = [train_cav(concept_acts, acts, seed=i) for i, acts in enumerate(random_acts)]
    null = [train_cav(random_acts[i], random_acts[(i + 1) % len(random_acts)], seed=i) for i in range(len(random_acts))]
    scores = [tcav_score(grads, cav) for cav in cavs]
    random_scores = [tcav_score(grads, cav) for cav in null]
    s, r = torch.tensor(scores), torch.tensor(random_scores)
    if torch.equal(s, r) or (s.std() == 0 and r.std() == 0):
        p_value = 0.0 if s.mean() != r.mean() else 1.0
    else:
        with warnings.catch_warnings():  # one side may be constant (all scores 1.0): Welch's test still holds
            warnings.simplefilter("ignore", RuntimeWarning)
            p_value = float(stats.ttest_ind(scores, random_scores, equal_var=False).pvalue)
    names = getattr(model, "class_names", None)
    return TCAVResult(
        concept=concept, class_name=names[class_index] if names else str(class_index), layer=layer,
        score_mean=float(s.mean()), score_std=float(s.std(unbiased=False)),
        random_score_mean=float(r.mean()), random_score_std=float(r.std(unbiased=False)),
        p_value=p_value, significant=p_value < alpha, scores=scores, random_scores=random_scores,
        cav_accuracy_mean=sum(c.accuracy for c in cavs) / len(cavs), n_inputs=int(class_inputs.shape[0]),
    )
