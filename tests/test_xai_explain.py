"""The explanation suite and ``trixai-explain``: reports, figures and errors on tiny models."""

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from trixai.core.errors import TrixaiError
from trixai.data.synthetic import SyntheticLesions, render_lesion
from trixai.models import create_model
from trixai.models.export import export_model, model_metadata
from trixai.robust.attacks import PGD
from trixai.suites.robustness import RobustnessSuite
from trixai.suites.runner import SuiteRun, run_suites
from trixai.tasks.explain import run
from trixai.xai.explainers import TCAV, GradCAM, SEAttention

SMALL = {"max_samples": 8, "batch_size": 8, "gallery_per_class": 1,
         "metrics": {"steps": 4, "faithfulness": ["rise", "constant"], "topk": 0.15, "tolerance": 15,
                     "stability": True, "sanity": True, "sanity_samples": 4, "sanity_max_spearman": 0.5}}


def explanation_suite(model, loader, out_dir, explainer, settings, attack=None) -> dict:
    """The explanation suite over ``loader`` (stability against ``attack``), as trixai-explain runs it."""
    suite = RobustnessSuite.from_config(None, eval_attack=attack, max_points=settings.get("max_samples"))
    run_ = SuiteRun(model, robustness=suite, report_robustness=False, explainer=explainer, explanation=settings)
    return run_suites(run_, loader, out_dir, progress=False)


@pytest.fixture(scope="module")
def lesions():
    return SyntheticLesions(image_size=64, n_train=7, n_val=7, n_test=14, min_per_class=1, cache_dir=None).load()


@pytest.fixture(scope="module")
def model(lesions):
    torch.manual_seed(0)
    return create_model("test_efficientnet", 7, class_names=lesions.info.class_names, resolution=64).eval()


@pytest.mark.parametrize("name", ["gradcam", "se_attention"])
def test_suite_writes_reports_and_returns_flat_metrics(tmp_path, lesions, model, name):
    explainer = GradCAM(layer="mid") if name == "gradcam" else SEAttention(layer="last")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    metrics = explanation_suite(model, DataLoader(lesions.test, batch_size=5), tmp_path, explainer,
                                {**SMALL, "target": "label"}, attack=PGD(steps=1))
    report = json.loads((tmp_path / "explanations.json").read_text())
    assert report["n_samples"] == 8 and report["attack"]["steps"] == 1
    for key in ("deletion_auc_rise", "insertion_auc_constant", "average_drop", "pointing_game",
                "energy_pointing_game", "topk_iou", "stability_ssim", "stability_spearman"):
        entry = report["metrics"][key]
        assert {"mean", "std", "n"} <= set(entry) and metrics[f"xai/{key}"] == pytest.approx(entry["mean"])
        assert 0 < entry["n"] <= 8
    assert len(report["sanity"]["stages"]) > 3 and "xai/sanity_passed" in metrics
    assert len(report["curves"]["rise"]["deletion"]) == 5
    assert report["variants"]["pointing_game"]["tolerance_px"] == pytest.approx(15 * 64 / 224)
    assert report["variants"]["deletion_insertion"]["rise"]["deletion"] == "mean"
    figures = ["figures/xai_gallery.png", "figures/xai_curves.png"]
    figures += ["figures/xai_se_gates.png"] if name == "se_attention" else []
    assert report["figures"] == figures and all((tmp_path / f).stat().st_size > 0 for f in figures)
    assert "| pointing_game |" in (tmp_path / "explanations.md").read_text()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # 7 of 8 points on one class, top probability far from saturated: not degenerate
    assert report["degeneracy"]["degenerate"] is False and report["uninformative"] is None
    assert metrics["xai/degenerate"] == 0.0 and "Uninformative" not in (tmp_path / "explanations.md").read_text()


def test_suite_marks_faithfulness_of_a_degenerate_model_uninformative(tmp_path, lesions, model):
    """A constant-bias classifier: zero weights, bias 5 on class 0 -> class 0 for every image."""
    constant = copy.deepcopy(model)
    with torch.no_grad():
        constant.backbone.classifier.weight.zero_()
        constant.backbone.classifier.bias.copy_(torch.tensor([5.0, 0, 0, 0, 0, 0, 0]))
    settings = {**SMALL, "metrics": {**SMALL["metrics"], "sanity": False}}
    metrics = explanation_suite(constant, DataLoader(lesions.test, batch_size=8), tmp_path, GradCAM(layer="mid"),
                                settings)
    report = json.loads((tmp_path / "explanations.json").read_text())
    assert report["degeneracy"]["degenerate"] and report["degeneracy"]["majority_class_share"] == 1.0
    flagged = report["uninformative"]
    assert "class 0 is predicted for 100.0% of the 8 points" in flagged["reason"]
    assert {"deletion_auc_rise", "insertion_auc_constant", "average_drop", "increase_in_confidence",
            "pointing_game"} <= set(flagged["metrics"]) and "mask_area_fraction" not in flagged["metrics"]
    markdown = (tmp_path / "explanations.md").read_text()
    assert "**Uninformative: degenerate model: class 0" in markdown and "| deletion_auc_rise (lower is better) " \
        "† uninformative |" in markdown and metrics["xai/degenerate"] == 1.0


def test_suite_target_by_class_name_and_bad_target(tmp_path, lesions, model):
    settings = {**SMALL, "target": "NV", "metrics": {**SMALL["metrics"], "sanity": False, "faithfulness": ["constant"]}}
    explanation_suite(model, DataLoader(lesions.test, batch_size=8), tmp_path, GradCAM(layer="mid"), settings)
    report = json.loads((tmp_path / "explanations.json").read_text())
    assert report["attack"] is None and "stability_ssim" not in report["metrics"]
    with pytest.raises(TrixaiError, match="explanation.target='NOT_A_CLASS'"):
        explanation_suite(model, DataLoader(lesions.test, batch_size=8), tmp_path, GradCAM(layer="mid"),
                          {**settings, "target": "NOT_A_CLASS"})


def test_suite_tcav_reports_per_class(tmp_path, lesions, model):
    explainer = TCAV(layer="high", concept="ruler", classes=["NV", "MEL"], n_concept=6, n_runs=2,
                     max_samples=14, batch_size=8, seed=0)
    metrics = explanation_suite(model, DataLoader(lesions.test, batch_size=14), tmp_path, explainer, {})
    report = json.loads((tmp_path / "explanations.json").read_text())
    assert {r["class_name"] for r in report["results"]} <= {"NV", "MEL"} and "xai/tcav/NV" in metrics
    assert "| NV |" in (tmp_path / "explanations.md").read_text()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, model):
    """A run directory as trixai-train exports it (weights + model.json with the resolved config)."""
    path = tmp_path_factory.mktemp("run")
    config = {"model": {"_target_": "trixai.models.create_model", "name": "test_efficientnet", "resolution": 64},
              "dataset": {"_target_": "trixai.data.synthetic.SyntheticLesions", "image_size": 64, "n_train": 7,
                          "n_val": 7, "n_test": 14, "min_per_class": 1, "cache_dir": None}}
    export_model(model, path, model_metadata(model, config=config, seed=0))
    return path


def _explain_cfg(compose_cfg, run_dir, *overrides):
    return compose_cfg(f"ckpt={run_dir}", "explanation.max_samples=6", "explanation.batch_size=6",
                       "explanation.metrics.steps=3", "explanation.metrics.sanity_samples=3", "attack.steps=1",
                       *overrides, config_name="explain", tiny=False)


def test_trixai_explain_on_a_run_dir(compose_cfg, run_dir):
    cfg = _explain_cfg(compose_cfg, run_dir)
    metrics = run(cfg)
    out = cfg.paths.output_dir
    report = json.loads(open(f"{out}/explanations.json").read())
    assert report["n_samples"] == 6 and "pointing_game" in report["metrics"] and "xai/stability_ssim" in metrics


def test_trixai_explain_on_a_folder_of_pngs(compose_cfg, run_dir, tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("MEL", "NV", "BCC"):
        image, _ = render_lesion(name, 90, rng)
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(folder / f"{name}.png")
    cfg = _explain_cfg(compose_cfg, run_dir, f"inputs={folder}", "explainer=multiscale_gradcam",
                       "explanation.metrics.sanity=false", "explanation.metrics.faithfulness=[constant]")
    run(cfg)
    out = cfg.paths.output_dir
    rows = json.loads(open(f"{out}/predictions.json").read())
    assert [r["file"] for r in rows] == ["BCC.png", "MEL.png", "NV.png"]
    assert all(0 < r["confidence"] <= 1 and r["prediction"] in r["probabilities"] for r in rows)
    assert all(open(f"{out}/{r['overlay']}", "rb").read(4) == b"\x89PNG" for r in rows)
    report = json.loads(open(f"{out}/explanations.json").read())
    assert report["n_samples"] == 3 and "pointing_game" not in report["metrics"]  # no masks for plain files
    assert open(f"{out}/figures/xai_gallery.png", "rb").read(4) == b"\x89PNG"


def test_trixai_explain_errors_name_the_culprit(compose_cfg, run_dir, tmp_path):
    with pytest.raises(TrixaiError, match="no file, folder or glob"):
        run(_explain_cfg(compose_cfg, run_dir, f"inputs={tmp_path}/missing*.png"))
    with pytest.raises(TrixaiError, match="needs a map explainer"):
        run(compose_cfg(f"ckpt={run_dir}", f"inputs={tmp_path}", "explainer=tcav", config_name="explain", tiny=False))
    with pytest.raises(TrixaiError, match="dataset classes"):
        run(_explain_cfg(compose_cfg, run_dir, "dataset=synthetic_cxr"))
