"""AutoAttack's model checks and the saturation check: each tripped by a model built to trip it, passed by a plain one."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from robust_helpers import blobs, fit, small_cnn
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trixai.core.frozen import frozen_eval
from trixai.core.reports import ROBUSTNESS_FORMAT, RobustnessReport
from trixai.render.markdown import robustness_markdown
from trixai.robust.model_checks import inference_optimisation, model_checks, probabilities, randomness, training_mode
from trixai.suites import masking
from trixai.suites.base import PointBatch
from trixai.suites.robustness import RobustnessSuite


@pytest.fixture(scope="module")
def batch():
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return x, torch.arange(8) % 5


def _checks(model, x, y):
    with frozen_eval(model):
        return {c["check"].split(" (")[0]: c for c in model_checks(model, x, y)}


def test_a_plain_model_passes_every_model_check(batch):
    x, y = batch
    model = small_cnn(5, seed=0)
    checks = _checks(model, x, y)
    assert len(checks) == 3 and all(c["passed"] is True for c in checks.values()), checks
    with torch.no_grad():
        logits = model.eval()(x)
    assert probabilities(logits, multilabel=False)["passed"] and probabilities(logits, multilabel=True)["passed"]


class Noisy(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + 0.05 * torch.randn_like(x))


def test_a_random_model_fails_the_determinism_check(batch):
    x, y = batch
    check = randomness(Noisy(small_cnn(5)).eval(), x, y)
    assert check["passed"] is False and "version=rand" in check["detail"]


def test_softmax_and_sigmoid_outputs_fail_the_logit_check(batch):
    x, _ = batch
    with torch.no_grad():
        logits = small_cnn(5).eval()(x)
    softmax = probabilities(logits.softmax(dim=1), multilabel=False)
    assert softmax["passed"] is False and "softmax" in softmax["detail"]
    assert probabilities(logits.sigmoid(), multilabel=True)["passed"] is False
    assert probabilities(logits.sigmoid(), multilabel=False)["passed"] is True  # rows do not sum to 1


class StubbornDropout(nn.Dropout):
    """Dropout that ignores ``eval()``: left in training mode."""

    def train(self, mode: bool = True) -> StubbornDropout:
        return super().train(True)


def test_batch_statistics_and_modules_left_training_fail_the_eval_mode_check(batch):
    x, y = batch
    batch_stats = small_cnn(5)
    batch_stats[1] = nn.BatchNorm2d(8, track_running_stats=False)  # batch statistics even in eval mode
    with frozen_eval(batch_stats):
        check = training_mode(batch_stats, x)
    assert check["passed"] is False and "depend on the rest of the batch" in check["detail"]

    dropout = nn.Sequential(small_cnn(5), StubbornDropout(0.5))
    checks = _checks(dropout, x, y)
    assert checks["model in eval mode"]["passed"] is False
    assert "modules in training mode: 1" in checks["model in eval mode"]["detail"]
    assert checks["model is deterministic"]["passed"] is False


class TrainingBatchNorm(nn.BatchNorm2d):
    def train(self, mode: bool = True) -> TrainingBatchNorm:
        return super().train(True)


def test_running_statistics_updated_in_eval_fail_the_check_and_are_restored(batch):
    x, y = batch
    model = small_cnn(5)
    model[1] = TrainingBatchNorm(8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    checks = _checks(model, x, y)
    detail = checks["model in eval mode"]["detail"]
    assert checks["model in eval mode"]["passed"] is False and "1.running_mean" in detail
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the checks changed nothing


class Purifier(nn.Module):
    """A dynamic defence: one gradient step on the input's entropy before classifying it."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.detach().requires_grad_(True)
        entropy = -(self.inner(z).softmax(1) * self.inner(z).log_softmax(1)).sum()
        (grad,) = torch.autograd.grad(entropy, z)
        return self.inner((x - 0.01 * grad.sign()).clamp(0, 1))


def test_optimisation_at_inference_time_fails_the_dynamic_check(batch):
    x, y = batch
    model = Purifier(small_cnn(5)).eval()
    with frozen_eval(model):
        check = inference_optimisation(model, x)
    assert check["passed"] is False and "torch.autograd.grad" in check["detail"]
    assert inference_optimisation(small_cnn(5).eval(), x)["passed"] is True


def _evaluation(success: float, correct: int = 10) -> RobustnessReport:
    """A report (from its JSON) with one FGSM result: ``correct`` initially correct points, this success rate."""
    scores = {"n": 10, "accuracy": 0.5, "initially_correct": correct, "attack_success_rate": success}
    return RobustnessReport.from_json({
        "format": ROBUSTNESS_FORMAT, "task": "multiclass", "class_names": ["a", "b"], "n_points": 10,
        "eps": [8 / 255], "clean": scores, "results": {"fgsm": {"8/255": {**scores, "eps": 8 / 255}}},
        "worst_case": {}})


def test_zero_success_on_saturated_outputs_is_flagged():
    assert masking.saturated_success(_evaluation(0.0), saturated=6).passed is False
    assert masking.saturated_success(_evaluation(0.0), saturated=5).passed is True  # not most points
    assert masking.saturated_success(_evaluation(0.1), saturated=10).passed is True
    assert masking.saturated_success(_evaluation(0.0, correct=0), saturated=10).passed is True
    logits = torch.tensor([[0.0, 7.0, 0.0], [0.0, 6.0, 0.0], [3.0, 0.0, 0.0]])  # top softmax 0.99818, 0.99505
    zero_gradient = torch.tensor([False, False, True])
    assert masking.saturated_points(logits, False, zero_gradient).tolist() == [False, False, True]
    logits[0, 1] = 7.7  # top probability 1 / (1 + 2 e^-7.7) = 0.99909
    assert masking.saturated_points(logits, False, zero_gradient).tolist() == [True, False, True]


class Saturated(nn.Module):
    """Logits scaled by 1e4: softmax saturates, the CE input gradient underflows to exactly zero."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1e4 * self.inner(x)


def test_the_suite_reports_saturation_masking_and_the_model_checks(caplog, tmp_path):
    x, y = blobs(16, 4, seed=1)
    model = Saturated(fit(small_cnn(4, seed=1), x, y, steps=60))
    suite = RobustnessSuite(attacks=["clean", "fgsm"], eps=[8 / 255], masking=None)
    robust = suite.start(model)
    for start, (xb, yb) in enumerate(DataLoader(TensorDataset(x, y), batch_size=8)):
        robust.update(PointBatch.of((xb, yb), start=8 * start))
    with caplog.at_level(logging.WARNING, logger="trixai.suites.masking"):
        report = robust.finish(tmp_path)
    evaluation = json.loads(json.dumps(report.to_json()))
    checks = {c["check"]: c for c in evaluation["masking_checks"]}
    assert evaluation["results"]["fgsm"]["8/255"]["attack_success_rate"] == 0.0
    saturation = checks["no attack at 0 % success on saturated outputs"]
    assert saturation["passed"] is False and "fgsm@8/255" in saturation["detail"]
    assert checks["outputs are logits, not probabilities"]["passed"] is True
    for name in ("model is deterministic (repeated forwards agree)",
                 "model in eval mode (no batch statistics, dropout or state updates)",
                 "no optimisation at inference time (autograd inside the forward)"):
        assert checks[name]["passed"] is True, checks[name]
    assert "robustness check failed: no attack at 0 % success" in caplog.text
    assert "| no attack at 0 % success on saturated outputs | FAIL |" in robustness_markdown(report)


def test_a_random_model_evaluated_with_eot_passes(batch):
    x, y = batch
    model = Noisy(small_cnn(5)).eval()
    with frozen_eval(model):
        checks = model_checks(model, x, y, eot=True)
    assert checks[0]["passed"] is True and "evaluated with autoattack version=rand" in checks[0]["detail"]
    assert "not measured (random model)" in checks[1]["detail"]
