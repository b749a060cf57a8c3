"""Calibration (ECE, reliability diagram) and selective prediction (risk-coverage, AURC), batched over weights."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.classification import BinaryCalibrationError, MulticlassCalibrationError

from trixai.core.bootstrap import Bootstrap
from trixai.core.calibration import (
    aurc,
    calibration_inputs,
    calibration_metrics,
    ece,
    per_output_calibration,
    reliability,
    risk_coverage,
)
from trixai.core.errors import TrixaiError
from trixai.core.metrics import IGNORE_INDEX

# Six points; bins of width 1/15, right-closed: (14/15, 1] holds 0.95 and 0.94, (13/15, 14/15] holds 0.90,
# (9/15, 10/15] holds 0.62 and 0.61, (4/15, 5/15] holds 0.30.
CONFIDENCE = torch.tensor([0.95, 0.94, 0.62, 0.61, 0.30, 0.90], dtype=torch.float64)
CORRECT = torch.tensor([1, 0, 1, 1, 0, 1])


def test_ece_of_a_hand_worked_example():
    # bin 15: acc 1/2, conf 0.945 -> |gap| 0.445, 2 points; bin 10: acc 1, conf 0.615 -> 0.385, 2 points;
    # bin 5: acc 0, conf 0.30 -> 0.30; bin 14: acc 1, conf 0.90 -> 0.10
    by_hand = (2 * 0.445 + 2 * 0.385 + 0.30 + 0.10) / 6
    assert by_hand == pytest.approx(0.343333, abs=1e-6)
    assert ece(CONFIDENCE, CORRECT).tolist() == pytest.approx([by_hand], abs=1e-12)
    diagram = reliability(CONFIDENCE, CORRECT)
    assert diagram["count"] == [0, 0, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 1, 2]
    assert diagram["accuracy"][14] == 0.5 and diagram["confidence"][14] == pytest.approx(0.945)
    assert diagram["accuracy"][9] == 1.0 and diagram["confidence"][9] == pytest.approx(0.615)
    assert diagram["accuracy"][0] is None and diagram["confidence"][0] is None
    assert diagram["lower"][9] == pytest.approx(9 / 15) and diagram["upper"][9] == pytest.approx(10 / 15)


def test_bins_are_right_closed_and_torchmetrics_binning_is_left_closed():
    edges = torch.linspace(0, 1, 16)[1:]  # 1/15, ..., 1: each upper edge of Guo et al.'s bins
    assert reliability(edges, torch.ones(15))["count"] == [1] * 15
    # torchmetrics: [m/15, (m+1)/15), and 1 alone in a 16th bin
    tm = reliability(edges, torch.ones(15), binning="torchmetrics")
    assert tm["count"] == [0] + [1] * 15 and tm["lower"][15] == tm["upper"][15] == 1.0
    # where the two differ: confidence 1 (wrong) and 0.94 (right) share (14/15, 1] but not torchmetrics' bins
    confidence, correct = torch.tensor([1.0, 0.94]), torch.tensor([0, 1])
    assert ece(confidence, correct).item() == pytest.approx(abs(0.5 - 0.97), abs=1e-6)
    assert ece(confidence, correct, binning="torchmetrics").item() == pytest.approx((1.0 + 0.06) / 2, abs=1e-6)
    assert ece(confidence, correct, binning="torchmetrics").item() == pytest.approx(
        BinaryCalibrationError(n_bins=15)(confidence, correct).item(), abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_multiclass_ece_equals_torchmetrics(seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(400, 7, generator=gen) * (1 + seed)
    targets = torch.randint(0, 7, (400,), generator=gen)
    reference = MulticlassCalibrationError(7, n_bins=15, norm="l1")(logits, targets).item()
    ones = torch.ones(1, 400)
    assert calibration_metrics(logits, targets, "multiclass", ones, binning="torchmetrics")["ece"].item() == \
        pytest.approx(reference, abs=1e-6)
    confidence = calibration_inputs(logits, targets, "multiclass")[0][:, 0]
    on_edge = torch.isin(confidence, torch.linspace(0, 1, 16))
    assert not on_edge.any()  # no confidence on a bin edge: Guo's binning gives the same value
    assert calibration_metrics(logits, targets, "multiclass", ones)["ece"].item() == pytest.approx(reference, abs=1e-6)


def test_saturated_logits_still_match_torchmetrics_binning():
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(300, 4, generator=gen) * 40  # many softmax maxima exactly 1.0 in float32
    targets = torch.randint(0, 4, (300,), generator=gen)
    assert (calibration_inputs(logits, targets, "multiclass")[0] == 1).sum() > 50
    reference = MulticlassCalibrationError(4, n_bins=15)(logits, targets).item()
    ours = calibration_metrics(logits, targets, "multiclass", torch.ones(1, 300), binning="torchmetrics")["ece"]
    assert ours.item() == pytest.approx(reference, abs=1e-6)


def test_multilabel_calibration_is_the_top_label_calibration_of_each_label():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(250, 3, generator=gen) * 2
    targets = (torch.rand(250, 3, generator=gen) < 0.4).float()
    label_mask = (torch.rand(250, 3, generator=gen) > 0.2).float()
    confidence, correct, valid = calibration_inputs(logits, targets, "multilabel", label_mask)
    assert torch.equal(valid, label_mask.bool())
    per_label = per_output_calibration(logits, targets, "multilabel", torch.ones(1, 250), label_mask,
                                       binning="torchmetrics")
    p = logits.sigmoid()
    for k in range(3):
        keep = valid[:, k]
        # the top label of a two-class problem [1 - p, p]: confidence max(p, 1 - p), correct (p > 0.5) == y
        two_class = torch.stack([1 - p[keep, k], p[keep, k]], 1)
        reference = MulticlassCalibrationError(2, n_bins=15)(two_class, targets[keep, k].long()).item()
        assert per_label["ece"][0, k].item() == pytest.approx(reference, abs=1e-6)
        binary = BinaryCalibrationError(n_bins=15)(confidence[keep, k], correct[keep, k].long()).item()
        assert per_label["ece"][0, k].item() == pytest.approx(binary, abs=1e-6)
    # masked labels passed as IGNORE_INDEX in integer targets give the same numbers; the metric is the label mean
    ignored = targets.long().masked_fill(label_mask == 0, IGNORE_INDEX)
    same = calibration_metrics(logits, ignored, "multilabel", torch.ones(1, 250), binning="torchmetrics")
    assert same["ece"].item() == pytest.approx(per_label["ece"].mean().item(), abs=1e-12)
    assert same["aurc"].item() == pytest.approx(per_label["aurc"].mean().item(), abs=1e-12)


def test_aurc_of_a_hand_worked_example():
    confidence = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    correct = torch.tensor([1, 0, 1, 1, 0])
    # risks of the k most confident: 0/1, 1/2, 1/3, 1/4, 2/5
    coverage, risk = risk_coverage(confidence, correct)
    assert coverage.tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert risk.tolist() == pytest.approx([0, 1 / 2, 1 / 3, 1 / 4, 2 / 5])
    assert aurc(confidence, correct).item() == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 4 + 2 / 5) / 5)  # 89/300
    # a tie: 0.8 (wrong) and 0.8 (right) are one group; at k = 2 the expected risk over both orders, 1/4
    tied = torch.tensor([0.9, 0.8, 0.8, 0.7])
    for right in (torch.tensor([1, 0, 1, 0]), torch.tensor([1, 1, 0, 0])):
        assert risk_coverage(tied, right)[1].tolist() == pytest.approx([0, 1 / 4, 1 / 3, 1 / 2])
        assert aurc(tied, right).item() == pytest.approx((0 + 1 / 4 + 1 / 3 + 1 / 2) / 4)


def test_aurc_of_a_perfect_ranking_is_the_closed_form():
    n, errors = 50, 12
    confidence = torch.linspace(1, 0.1, n)
    correct = torch.arange(n) < n - errors  # every error below every correct point
    harmonic = sum(1 / k for k in range(n - errors + 1, n + 1))  # H(n) - H(n - e)
    closed = (errors - (n - errors) * harmonic) / n  # (1/n) sum_{k > n-e} (k - (n - e)) / k
    assert aurc(confidence, correct).item() == pytest.approx(closed, abs=1e-12)
    # large n: Geifman et al.'s AURC* = r + (1 - r) ln(1 - r), r the error rate
    n, r = 100_000, 0.2
    correct = torch.arange(n) < int(n * (1 - r))
    assert aurc(torch.linspace(1, 0, n, dtype=torch.float64), correct).item() == pytest.approx(
        r + (1 - r) * math.log(1 - r), abs=1e-4)


def test_weights_equal_repeated_points():
    gen = torch.Generator().manual_seed(3)
    confidence = (torch.rand(40, generator=gen) * 10).round() / 10 * 0.6 + 0.4  # many ties
    correct = torch.rand(40, generator=gen) < confidence
    weights = torch.randint(0, 4, (5, 40), generator=gen).float()
    batched_ece, batched_aurc = ece(confidence, correct, weights), aurc(confidence, correct, weights)
    for row, w in enumerate(weights.long()):
        c, y = confidence.repeat_interleave(w), correct.repeat_interleave(w)
        assert batched_ece[row].item() == pytest.approx(ece(c, y).item(), abs=1e-12)
        assert batched_aurc[row].item() == pytest.approx(aurc(c, y).item(), abs=1e-12)
        assert batched_aurc[row].item() == pytest.approx(risk_coverage(c, y)[1].mean().item(), abs=1e-12)
    shuffled = torch.randperm(40, generator=gen)  # ties in another order: the same AURC
    assert aurc(confidence[shuffled], correct[shuffled], weights[:, shuffled]).tolist() == pytest.approx(
        batched_aurc.tolist(), abs=1e-12)
    assert ece(confidence, correct, torch.zeros(1, 40)).isnan().all()


def test_bootstrap_replicates_are_the_metrics_of_each_resample():
    gen = torch.Generator().manual_seed(1)
    logits, targets = torch.randn(60, 3, generator=gen) * 2, torch.randint(0, 3, (60,), generator=gen)
    boot = Bootstrap.draw(targets, resamples=30, seed=0)
    replicates = boot.replicates(lambda w: calibration_metrics(logits, targets, "multiclass", w))
    for b in (0, 7, 29):
        rows = boot.indices[b]
        resampled = calibration_metrics(logits[rows], targets[rows], "multiclass", torch.ones(1, 60))
        assert replicates["ece"][b].item() == pytest.approx(resampled["ece"].item(), abs=1e-12)
        assert replicates["aurc"][b].item() == pytest.approx(resampled["aurc"].item(), abs=1e-12)


def test_bad_arguments_name_the_culprit():
    with pytest.raises(TrixaiError, match="bins must be a positive integer"):
        ece(CONFIDENCE, CORRECT, bins=0)
    with pytest.raises(TrixaiError, match="binning must be one of guo, torchmetrics"):
        reliability(CONFIDENCE, CORRECT, binning="sklearn")
    with pytest.raises(TrixaiError, match="task must be one of multiclass, multilabel"):
        calibration_inputs(torch.zeros(2, 2), torch.zeros(2), "binary")
    with pytest.raises(TrixaiError, match=r"weights must have shape \(B, 6\)"):
        aurc(CONFIDENCE, CORRECT, torch.ones(6))
