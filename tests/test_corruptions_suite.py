"""The corruption suite: per-cell metrics against direct computation, CE/mCE/BE/rBE by hand, reports, the suite
runner (corruptions + explanation stability under corruption), configs."""

from __future__ import annotations

import json

import pytest
import torch
from robust_helpers import blobs, fit, small_cnn
from torch.utils.data import DataLoader, TensorDataset

from trixai.core.errors import TrixaiError
from trixai.core.reports import Cell, CorruptionReport
from trixai.robust.corruptions import corruption_set, make_generator
from trixai.suites.base import PointBatch
from trixai.suites.corruption import (
    CorruptionSuite,
    corruption_seed,
    label_balanced_accuracy,
    load_baseline,
    summarise,
)
from trixai.suites.robustness import RobustnessSuite
from trixai.suites.runner import SuiteRun, run_suites


@pytest.fixture(scope="module")
def trained():
    x, y = blobs(48, 4, size=24, seed=0, spread=0.5)
    model = fit(small_cnn(4, seed=0), x, y, steps=100)
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.9
    return model, DataLoader(TensorDataset(x, y), batch_size=24)


def _evaluate(model, loader, out_dir, **settings) -> dict:
    """The report (as its JSON) of one pass of the corruption suite over ``loader``."""
    run = CorruptionSuite(**settings).start(model)
    start = 0
    for batch in loader:
        points = PointBatch.of(batch, start=start)
        start += len(points)
        run.update(points)
    return json.loads(json.dumps(run.finish(out_dir).to_json()))


def test_cells_match_direct_computation_and_severity_hurts(trained, tmp_path):
    model, loader = trained
    evaluation = _evaluate(model, loader, tmp_path, set="dermoscopy", severities=[1, 5], bootstrap=100, seed=3)
    x, y = loader.dataset.tensors
    # one cell by hand: the batches corrupted with the suite's seeds, then top-1 accuracy
    index = list(corruption_set("dermoscopy")).index("motion_blur")
    corruption = corruption_set("dermoscopy")["motion_blur"]
    with torch.no_grad():
        predictions = torch.cat([
            model(corruption(xb, 5, generator=make_generator(corruption_seed(3, b, index, 5), "cpu"))).argmax(1)
            for b, (xb, _) in enumerate(loader)])
    cell = evaluation["results"]["motion_blur"]["5"]
    assert cell["accuracy"] == pytest.approx(float((predictions == y).float().mean()))
    assert cell["error"] == pytest.approx(1 - cell["accuracy"])
    recall = [float((predictions[y == c] == c).float().mean()) for c in range(4)]
    assert cell["balanced_accuracy"] == pytest.approx(sum(recall) / 4)
    for entry in [evaluation["clean"], cell]:
        for key in ("accuracy", "balanced_accuracy", "auroc"):
            low, high = entry[f"{key}_ci95"]
            assert low <= entry[key] + 1e-9 and entry[key] <= high + 1e-9
    # a trained model loses accuracy with severity for most corruptions (ties allowed)
    worse = [n for n, per in evaluation["results"].items() if per["5"]["accuracy"] <= per["1"]["accuracy"]]
    assert len(worse) >= 0.8 * len(evaluation["results"]), evaluation["summary"]
    assert evaluation["worst_corruption"]["mean_accuracy"] == min(r["mean_accuracy"]
                                                                 for r in evaluation["summary"].values())
    assert evaluation["mce"] is None and evaluation["n_points"] == len(y)


def test_errors_relative_to_a_baseline_by_hand():
    def cell(acc, bal):
        return Cell({"accuracy": acc, "error": 1 - acc, "balanced_accuracy": bal, "balanced_error": 1 - bal})

    def report(clean, results):
        return CorruptionReport(task="multiclass", class_names=["x"], n_points=10, image_size=[8, 8], set="generic",
                                severities=[1, 2], corruptions=list(results), clean=clean, results=results, summary={},
                                worst_corruption={}, settings={})

    model = report(cell(0.9, 0.8), {"a": {"1": cell(0.8, 0.7), "2": cell(0.6, 0.5)},
                                    "b": {"1": cell(0.9, 0.8), "2": cell(0.7, 0.6)}})
    base = report(cell(0.8, 0.7), {"a": {"1": cell(0.6, 0.5), "2": cell(0.4, 0.3)},
                                   "b": {"1": cell(0.5, 0.5), "2": cell(0.5, 0.4)}})
    base.source = {"path": "base.json"}
    summarise(model, base)
    a, b = model.summary["a"], model.summary["b"]
    assert a.ce == pytest.approx((0.2 + 0.4) / (0.4 + 0.6))
    assert a.relative_ce == pytest.approx((0.1 + 0.3) / (0.2 + 0.4))
    assert a.be == pytest.approx(0.4 / 0.6) and a.rbe == pytest.approx((0.4 - 0.2) / (0.6 - 0.3))
    assert b.ce == pytest.approx(0.4 / 1.0) and b.relative_ce == pytest.approx(0.2 / 0.6)
    assert model.mce == pytest.approx((a.ce + b.ce) / 2)
    assert model.relative_mce == pytest.approx((a.relative_ce + b.relative_ce) / 2)
    assert model.worst_corruption["name"] == "a" and a.mean_accuracy == pytest.approx(0.7)
    assert a.relative_error == pytest.approx(0.2) and a.balanced_accuracy_mean == pytest.approx(0.6)
    assert model.baseline == {"path": "base.json", "model": None, "clean_error": pytest.approx(0.2)}


def test_multilabel_balanced_accuracy_by_hand():
    probs = torch.tensor([[0.9, 0.2], [0.6, 0.7], [0.1, 0.4], [0.3, 0.8]])
    targets = torch.tensor([[1, 0], [0, 1], [0, -1], [1, 1]])  # -1: a masked label (U-Ignore)
    # label 0: TPR 1/2, TNR 1/2; label 1: TPR 2/2, TNR 1/1 -> mean of 0.5 and 1.0
    assert float(label_balanced_accuracy(probs, targets, torch.ones(1, 4))[0]) == pytest.approx(0.75)


def test_suite_runner_reports_baseline_and_explanation_stability(trained, tmp_path):
    from trixai.xai.explainers import GradCAM

    model, loader = trained
    settings = {"set": "dermoscopy", "only": ["gaussian_noise", "black_corner"], "severities": [1, 5],
                "bootstrap": 50, "explanation_severity": 3}
    run = SuiteRun(model, robustness=RobustnessSuite.from_config(None), report_robustness=False,
                   explainer=GradCAM(layer="4"), explanation={"max_points": 8, "metrics": {"sanity": False, "faithfulness": []}},
                   corruptions=CorruptionSuite(**settings))
    flat = run_suites(run, loader, tmp_path, progress=False, source={"model": "small_cnn"}).flat()
    report = json.loads((tmp_path / "corruptions.json").read_text())
    assert report["format"] == "trixai-corruptions/2" and list(report["results"]) == settings["only"]
    assert set(report["results"]["black_corner"]) == {"1", "5"}  # severities only; the means are in the summary
    assert flat["corruption/black_corner/mean_accuracy"] == pytest.approx(report["summary"]["black_corner"]["mean_accuracy"])
    for name in ("corruptions.md", "figures/corruption_accuracy_vs_severity.png", "figures/corruption_gallery.png"):
        assert (tmp_path / name).exists(), name
    assert "| black_corner |" in (tmp_path / "corruptions.md").read_text()
    explanations = json.loads((tmp_path / "explanations.json").read_text())
    assert explanations["corruption"] == {"set": "dermoscopy", "severity": 3}
    assert -1 <= flat["xai/corruption_spearman"] <= 1 and 0 < flat["xai/corruption_ssim_black_corner"] <= 1
    # the model against itself as the baseline: every CE, relative CE, BE, rBE is 1
    again = _evaluate(model, loader, tmp_path / "again",
                      **{k: v for k, v in settings.items() if k != "explanation_severity"}, baseline=str(tmp_path))
    for key in ("mce", "be"):
        assert again[key] == pytest.approx(1.0)
    assert again["baseline"]["path"] == str(tmp_path / "corruptions.json")
    other = CorruptionReport.from_json({**report, "corruptions": ["hair"], "severities": [1],
                                        "results": {"hair": {"1": {"accuracy": 0.5}}}})
    with pytest.raises(TrixaiError, match="lacks"):
        load_baseline(tmp_path, other)


def test_settings_are_checked_and_auto_picks_the_modality():
    assert CorruptionSuite(dataset="nih_cxr14").set == "chest_xray"
    with pytest.raises(TrixaiError, match="severities"):
        CorruptionSuite(set="generic", severities=[0, 1])
    with pytest.raises(TrixaiError, match="unknown keys"):
        CorruptionSuite.from_config({"sets": "generic"})
    assert CorruptionSuite.from_config(None) is None


def test_config_group(compose_cfg):
    assert compose_cfg().corruptions is None  # train: off by default
    cfg = compose_cfg("corruptions=dermoscopy", "ckpt=x", config_name="eval", tiny=False)
    suite = CorruptionSuite.from_config(dict(cfg.corruptions), seed=5)
    assert suite.set == "dermoscopy" and suite.seed == 5 and len(suite.corruptions) == 16
    auto = compose_cfg("corruptions=auto", "ckpt=x", config_name="eval", tiny=False)
    assert CorruptionSuite.from_config(dict(auto.corruptions), dataset="chexpert").set == "chest_xray"


def test_augmentation_setting_reaches_the_training_module(compose_cfg):
    from hydra.utils import instantiate

    from trixai.tasks.train import build_module

    cfg = compose_cfg("+data.augment.corruptions={p: 1.0, severities: [5], only: [black_corner]}")
    assert compose_cfg(config_name="explain", tiny=False).corruptions is None
    datamodule = instantiate(cfg.data, dataset=instantiate(cfg.dataset))
    assert "corruptions" not in datamodule.augment  # the data layer only carries the setting
    module = build_module(cfg, datamodule)
    augment = module.corruption_augment
    assert augment.set == "dermoscopy" and augment.settings()["corruptions"] == ["black_corner"]
    x = next(iter(datamodule.train_dataloader()))["image"]
    corner = augment(x, seed=0)[:, :, 0, 0]  # severity 5: radius 0.9 x half the side, the corner is black
    assert torch.equal(corner, torch.zeros_like(corner))


@pytest.mark.slow
def test_train_test_phase_runs_the_corruption_suite_with_augmentation(compose_cfg):
    from pathlib import Path

    from trixai.tasks.train import train

    cfg = compose_cfg("corruptions=auto", "corruptions.only=[gaussian_noise,hair]", "corruptions.severities=[1,5]",
                      "corruptions.bootstrap=20", "+data.augment.corruptions={p: 0.5, severities: [1, 2]}")
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    report = json.loads((run / "corruptions.json").read_text())
    assert report["set"] == "dermoscopy" and list(report["results"]) == ["gaussian_noise", "hair"]
    # the whole test split, in the same pass as the robustness suite and test/acc
    assert report["n_points"] == json.loads((run / "robustness.json").read_text())["n_points"]
    assert report["clean"]["accuracy"] == pytest.approx(metrics["test"]["acc"], abs=1e-6)
    assert metrics["extra"]["corruption/hair/mean_accuracy"] == report["summary"]["hair"]["mean_accuracy"]
    assert "xai/corruption_ssim" in metrics["extra"]
