"""Bootstrap confidence intervals and the batched (weighted) metrics they are computed with."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics import classification as tmc

from trixai.core.bootstrap import Bootstrap, draw_indices, percentile_interval, point_estimates, strata
from trixai.core.metrics import (
    IGNORE_INDEX,
    MacroRankMetric,
    UndefinedMetricWarning,
    classification_metrics,
    weighted_auroc,
    weighted_average_precision,
    weighted_metrics,
)


def counts(indices: torch.Tensor, n: int) -> torch.Tensor:
    return torch.zeros(len(indices), n).scatter_add_(1, indices, torch.ones_like(indices, dtype=torch.float))


def test_percentile_interval_of_the_mean_matches_a_hand_computation():
    values = torch.tensor([1.0, 2.0, 4.0, 8.0])
    indices = torch.tensor([[0, 0, 0, 0], [0, 1, 2, 3], [3, 3, 3, 3], [1, 1, 2, 2], [0, 3, 3, 2]])
    means = counts(indices, 4) @ values / 4  # 1, 3.75, 8, 3, 5.25
    assert means.tolist() == [1.0, 3.75, 8.0, 3.0, 5.25]
    # sorted 1, 3, 3.75, 5.25, 8: the 2.5th percentile sits at rank 0.1, the 97.5th at rank 3.9 (linear)
    low, high = percentile_interval(means)
    assert low == pytest.approx(1 + 0.1 * (3 - 1)) and high == pytest.approx(5.25 + 0.9 * (8 - 5.25))
    assert [low, high] == pytest.approx(np.percentile(means.numpy(), [2.5, 97.5]).tolist())


def test_bootstrap_intervals_equal_a_per_resample_loop():
    values = torch.tensor([0.1, 0.5, 0.2, 0.9, 0.7, 0.3])
    boot = Bootstrap.draw(torch.tensor([0, 0, 0, 1, 1, 1]), resamples=200, seed=3)
    ci = boot.intervals(lambda w: {"mean": w @ values / w.sum(1)})["mean_ci95"]
    loop = np.array([values[row].mean().item() for row in boot.indices])
    assert ci == pytest.approx(np.percentile(loop, [2.5, 97.5]).tolist(), abs=1e-6)
    again = Bootstrap.draw(torch.tensor([0, 0, 0, 1, 1, 1]), resamples=200, seed=3)
    assert torch.equal(boot.indices, again.indices)  # seeded


def test_resamples_keep_every_stratum_size():
    targets = torch.tensor([0, 0, 1, 2, 2, 2, 1, 0])
    indices = draw_indices(strata(targets), resamples=50, seed=0)
    assert torch.equal(torch.bincount(targets[indices].flatten(), minlength=3), torch.bincount(targets) * 50)
    multilabel = torch.tensor([[1, 0, 1], [1, 0, 0], [0, 0, 0], [1, 1, 0], [1, 0, 1]])
    # label frequencies 4, 1, 2: rarest positive label per point, -1 without positives
    assert strata(multilabel).tolist() == [2, 0, -1, 1, 2]


def test_weighted_auroc_and_ap_equal_torchmetrics_on_each_resample():
    gen = torch.Generator().manual_seed(0)
    scores = (torch.rand(40, generator=gen) * 8).round() / 8  # many ties
    labels = (torch.rand(40, generator=gen) < 0.4).long()
    indices = draw_indices(labels, resamples=25, seed=1)
    w = counts(indices, 40)
    auroc, ap = weighted_auroc(scores, labels.bool(), w), weighted_average_precision(scores, labels.bool(), w)
    for b, row in enumerate(indices):
        assert auroc[b] == pytest.approx(float(tmc.BinaryAUROC()(scores[row], labels[row])), abs=1e-6)
        assert ap[b] == pytest.approx(float(tmc.BinaryAveragePrecision()(scores[row], labels[row])), abs=1e-6)
    assert weighted_auroc(scores, torch.zeros(40, dtype=torch.bool), w).isnan().all()  # no positives: undefined


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_weighted_metrics_equal_the_training_collection_per_resample(task):
    gen = torch.Generator().manual_seed(1)
    n, k = 60, 4
    logits = torch.randn(n, k, generator=gen) * 2
    if task == "multiclass":
        probs, targets = logits.softmax(1), torch.randint(k, (n,), generator=gen)
    else:
        probs, targets = logits.sigmoid(), (torch.rand(n, k, generator=gen) < 0.4).long()
        targets[torch.rand(n, k, generator=gen) < 0.1] = IGNORE_INDEX
    indices = draw_indices(strata(targets), resamples=12, seed=2)
    batched = weighted_metrics(probs, targets, task, counts(indices, n))
    for b, row in enumerate(indices):
        reference = classification_metrics(task, k)(probs[row], targets[row])
        assert set(reference) == set(batched)
        for name, value in reference.items():
            assert batched[name][b] == pytest.approx(float(value), abs=1e-5), (name, b)


def test_a_label_without_positives_is_left_out_of_the_macro_mean_with_a_warning():
    probs = torch.tensor([[0.9, 0.2, 0.1], [0.2, 0.7, 0.4], [0.8, 0.4, 0.3], [0.1, 0.9, 0.2]])
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 1, 0]])  # label "c": no positives
    metric = MacroRankMetric("multilabel", "auroc", ["a", "b", "c"])
    metric.update(probs, targets)
    with pytest.warns(UndefinedMetricWarning, match=r"label 'c' \(no positives\) among 4 points: left out"):
        value = float(metric.compute())
    per_label = tmc.MultilabelAUROC(3, average=None)(probs, targets)
    assert float(per_label[2]) == 0.0  # torchmetrics' value for the undefined label
    # label a: positives 0.9, 0.8 above negatives 0.2, 0.1 -> 1; label b: positive 0.7, 0.4, 0.9 vs negative 0.2 -> 1
    assert value == pytest.approx(1.0) and value == pytest.approx(float(per_label[:2].mean()))
    assert point_estimates(lambda w: weighted_metrics(probs, targets, "multilabel", w), 4)["auroc"] == pytest.approx(1.0)


def test_top2_stays_top2_when_the_first_update_agrees_with_top1():
    """A first block whose top-1 and top-2 counts agree must not merge top2 into acc (torchmetrics' compute
    groups would): after a second block, each equals its hand count."""
    metrics = classification_metrics("multiclass", 3)
    first = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])  # both right at top-1, so top-1 == top-2 here
    metrics.update(first, torch.tensor([0, 1]))
    second = torch.tensor([[0.5, 0.4, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])  # targets at ranks 2, 2 and 3
    metrics.update(second, torch.tensor([1, 1, 0]))
    out = {k: float(v) for k, v in metrics.compute().items()}
    assert out["acc"] == pytest.approx(2 / 5) and out["top2"] == pytest.approx(4 / 5)
