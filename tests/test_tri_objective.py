"""Tri-objective: the explanation term has a real, correct gradient w.r.t. the parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_timm

from trixai.core.errors import TrixaiError
from trixai.robust.attacks import PGD
from trixai.tasks.train import train
from trixai.training.objectives import TRADES, TriObjective, cam_ssim, trades_adversary

LAMBDA = 0.7


def test_explanation_gradient_is_nonzero_and_matches_finite_differences():
    model = tiny_timm(num_classes=3).double().eval()  # eval: BatchNorm fixed, so x_adv is reproducible
    torch.manual_seed(1)
    x, y = torch.rand(4, 3, 32, 32, dtype=torch.float64), torch.tensor([0, 1, 2, 1])
    attack = PGD(eps=16 / 255, alpha=4 / 255, steps=3)
    objective = TriObjective(beta=0.0, lambda_expl=LAMBDA)
    params = dict(model.named_parameters())

    torch.manual_seed(2)
    out = objective(model, x, y, attack=attack)
    total = torch.autograd.grad(out.loss, list(params.values()))
    ce = torch.autograd.grad(F.cross_entropy(model(x), y), list(params.values()))
    expl_grads = {name: (t - c) / LAMBDA for name, t, c in zip(params, total, ce, strict=True)}
    assert sum(g.abs().sum() for g in expl_grads.values()) > 0

    torch.manual_seed(2)
    x_adv = trades_adversary(model, x, attack, multilabel=False)  # the same example the objective used

    def term() -> torch.Tensor:
        return 1.0 - cam_ssim(model, x, x_adv, y, "final", create_graph=True)[0].mean()

    assert torch.allclose(term(), out.terms["expl"].double())
    # parameters below, inside and above the CAM layer: the term trains them through A and through dY/dA
    names = ["backbone.conv_stem.weight", "backbone.blocks.1.0.conv_exp.weight", "backbone.conv_head.weight",
             "backbone.bn2.weight", "backbone.classifier.weight"]
    generator = torch.Generator().manual_seed(0)
    checked = 0
    for name in names:
        param = params[name]
        for flat in torch.randint(0, param.numel(), (3,), generator=generator).tolist():
            index = torch.unravel_index(torch.tensor(flat), param.shape)
            h = 1e-6
            with torch.no_grad():
                param[index] += h
            plus = term().item()
            with torch.no_grad():
                param[index] -= 2 * h
            minus = term().item()
            with torch.no_grad():
                param[index] += h
            numeric = (plus - minus) / (2 * h)
            analytic = expl_grads[name][index].item()
            assert abs(numeric - analytic) <= 1e-5 + 1e-4 * abs(numeric), (name, index, numeric, analytic)
            checked += abs(analytic) > 0
    assert checked >= 5


def test_explanation_term_uses_the_configured_ssim_window():
    model = tiny_timm(num_classes=3).double().eval()
    x, y = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 2])
    attack = PGD(eps=16 / 255, alpha=4 / 255, steps=2)
    terms = {}
    for window, sigma in ((11, 1.5), (3, 0.8)):
        torch.manual_seed(3)
        out = TriObjective(beta=0.0, lambda_expl=1.0, cam_layer="mid", ssim_window=window, ssim_sigma=sigma)(
            model, x, y, attack=attack)
        torch.manual_seed(3)
        x_adv = trades_adversary(model, x, attack, multilabel=False)
        direct = cam_ssim(model, x, x_adv, y, "mid", create_graph=True, window_size=window,
                          window_sigma=sigma)[0].mean()
        torch.testing.assert_close(out.terms["cam_ssim"].double(), direct.detach())
        terms[window] = float(out.terms["cam_ssim"])
    assert terms[11] != terms[3]
    with pytest.raises(TrixaiError, match="ssim_window"):
        TriObjective(ssim_window=4)


def test_lambda_zero_is_trades():
    """The ablation's lambda_expl = 0 job is TRADES: same loss and parameter gradients (train mode, float64)."""
    model = tiny_timm(num_classes=3).double().train()
    x, y = torch.rand(4, 3, 32, 32, dtype=torch.float64), torch.tensor([0, 1, 2, 1])
    attack = PGD(eps=16 / 255, alpha=4 / 255, steps=3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    results = []
    for objective in (TRADES(beta=3.0), TriObjective(beta=3.0, lambda_expl=0.0)):
        model.load_state_dict(state)  # the same BatchNorm statistics for both
        torch.manual_seed(2)
        out = objective(model, x, y, attack=attack)
        results.append((out.loss, torch.autograd.grad(out.loss, list(model.parameters()))))
    (trades_loss, trades_grads), (tri_loss, tri_grads) = results
    torch.testing.assert_close(tri_loss, trades_loss)
    for tri, trades in zip(tri_grads, trades_grads, strict=True):
        torch.testing.assert_close(tri, trades)


def test_lambda_warmup_and_ramp():
    objective = TriObjective(lambda_expl=1.0, warmup_epochs=2, ramp_epochs=4)
    values = []
    for epoch in range(7):
        objective.set_epoch(epoch)
        values.append(objective.current_lambda())
    assert values == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]


def test_tri_objective_trains_end_to_end_and_logs_terms(compose_cfg):
    cfg = compose_cfg("objective=tri_objective")
    metrics = train(cfg)
    assert "cam_ssim" in metrics["val"] and "cam_ssim" in metrics["test"]
    assert 0.0 <= metrics["test"]["cam_ssim"] <= 1.0
    low, high = metrics["test"]["cam_ssim_ci95"]  # bootstrap interval of the mean over the test points
    assert low <= metrics["test"]["cam_ssim"] <= high
    import csv
    from pathlib import Path
    rows = list(csv.DictReader((Path(cfg.paths.output_dir) / "csv" / "metrics.csv").open()))
    logged = {key for row in rows for key, value in row.items() if value}
    assert {"train/ce", "train/kl", "train/expl", "train/cam_ssim", "train/lambda_expl"} <= logged
