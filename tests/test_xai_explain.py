"""The explanation suite and ``trixai-explain``: reports, figures and errors on tiny models."""

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader

from trixai.core.errors import TrixaiError
from trixai.data.synthetic import SyntheticLesions, render_lesion
from trixai.models import create_model
from trixai.models.export import export_model, model_metadata
from trixai.robust.attacks import PGD
from trixai.suites.robustness import RobustnessSuite
from trixai.suites.runner import SuiteRun, run_suites
from trixai.tasks.explain import run
from trixai.xai.explainers import TCAV, GradCAM, SEAttention

SMALL = {"max_points": 8, "batch_size": 8, "gallery_per_class": 1,
         "metrics": {"steps": 4, "faithfulness": ["rise", "constant"], "topk": 0.15, "tolerance": 15,
                     "stability": True, "sanity": True, "sanity_samples": 4, "sanity_max_spearman": 0.5,
                     "manipulation": {"points": 3, "steps": 3}}}


def explanation_suite(model, loader, out_dir, explainer, settings, attack=None) -> dict:
    """The explanation suite over ``loader`` (stability against ``attack``), as trixai-explain runs it."""
    suite = RobustnessSuite.from_config(None, eval_attack=attack, max_points=settings.get("max_points"))
    run_ = SuiteRun(model, robustness=suite, report_robustness=False, explainer=explainer, explanation=settings)
    return run_suites(run_, loader, out_dir, progress=False).flat()


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
    pointing = report["variants"]["pointing_game"]  # synthetic images: no original size, 15 px at 224 scaled
    assert pointing["tolerance_px"] == pytest.approx([15 * 64 / 224] * 2) and pointing["at"] == "224 px, scaled"
    assert report["metrics"]["pointing_game"]["mean"] == pytest.approx(  # the mean over categories (TorchRay)
        sum(pointing["per_category"].values()) / len(pointing["per_category"]))
    assert report["metrics"]["pointing_game_per_sample"]["n"] == sum(pointing["counts"].values())
    assert report["variants"]["deletion_insertion"]["rise"]["deletion"] == "mean"
    figures = ["figures/xai_gallery.png", "figures/xai_curves.png"]
    figures += ["figures/xai_se_gates.png"] if name == "se_attention" else ["figures/xai_manipulation.png"]
    assert report["figures"] == figures and all((tmp_path / f).stat().st_size > 0 for f in figures)
    assert "| pointing_game |" in (tmp_path / "explanations.md").read_text()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # 17 points seen (< 30): degeneracy is not judged
    assert report["degeneracy"]["degenerate"] is False and report["uninformative"] is None
    assert metrics["xai/degenerate"] == 0.0 and "Uninformative" not in (tmp_path / "explanations.md").read_text()


def test_suite_marks_faithfulness_of_a_degenerate_model_uninformative(tmp_path, lesions, model):
    """A constant-bias classifier: zero weights, bias 5 on class 0 -> class 0 for every image."""
    constant = copy.deepcopy(model)
    with torch.no_grad():
        constant.backbone.classifier.weight.zero_()
        constant.backbone.classifier.bias.copy_(torch.tensor([5.0, 0, 0, 0, 0, 0, 0]))
    settings = {**SMALL, "metrics": {**SMALL["metrics"], "sanity": False}}
    split = ConcatDataset([lesions.test] * 3)  # 51 points: degeneracy is judged on every point seen, from 30 on
    metrics = explanation_suite(constant, DataLoader(split, batch_size=8), tmp_path, GradCAM(layer="mid"), settings)
    report = json.loads((tmp_path / "explanations.json").read_text())
    assert report["n_samples"] == 8 and report["degeneracy"]["n"] == len(split) == 51
    assert report["degeneracy"]["degenerate"] and report["degeneracy"]["majority_class_share"] == 1.0
    flagged = report["uninformative"]
    assert "class 0 is predicted for 100.0% of the 51 points" in flagged["reason"]
    assert {"deletion_auc_rise", "insertion_auc_constant", "average_drop", "increase_in_confidence",
            "pointing_game"} <= set(flagged["metrics"]) and "mask_area_fraction" not in flagged["metrics"]
    markdown = (tmp_path / "explanations.md").read_text()
    assert "**Uninformative:** degenerate model: class 0" in markdown and "| deletion_auc_rise † (lower is better) " \
        "|" in markdown and metrics["xai/degenerate"] == 1.0


def test_degeneracy_is_not_judged_on_a_few_explained_points(tmp_path, lesions, model):
    """Four explained points of one class say nothing about the model: the verdict is taken on all 14 points
    seen, and 17 < 30 points are not judged (a handful of samples once flagged a balanced model as degenerate)."""
    settings = {**SMALL, "max_points": 4, "metrics": {**SMALL["metrics"], "sanity": False, "faithfulness": []}}
    metrics = explanation_suite(model, DataLoader(lesions.test, batch_size=4), tmp_path, GradCAM(layer="mid"),
                                settings)
    report = json.loads((tmp_path / "explanations.json").read_text())
    assert report["n_samples"] == 4 and report["degeneracy"]["n"] == len(lesions.test) == 17 and not report["degeneracy"]["judged"]
    assert metrics["xai/degenerate"] == 0.0 and report["uninformative"] is None


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
                     max_points=14, batch_size=8, seed=0)
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
    return compose_cfg(f"ckpt={run_dir}", "explanation.max_points=6", "explanation.batch_size=6",
                       "explanation.metrics.manipulation.points=2", "explanation.metrics.manipulation.steps=2",
                       "explanation.metrics.steps=3", "explanation.metrics.sanity_samples=3", "attack.steps=1",
                       *overrides, config_name="explain", tiny=False)


def test_trixai_explain_on_a_run_dir(compose_cfg, run_dir):
    cfg = _explain_cfg(compose_cfg, run_dir, "name=first")
    metrics = run(cfg)
    out = run_dir / "evals" / "first"  # its own folder under the run
    report = json.loads((out / "explanations.json").read_text())
    assert report["n_samples"] == 6 and "pointing_game" in report["metrics"] and "xai/stability_ssim" in metrics
    assert (out / "records" / "explanations.safetensors").exists() and "evals/first/report.html" in \
        (run_dir / "report.html").read_text()
    with pytest.raises(TrixaiError, match="already holds explanations.json.*overwrite=true"):
        run(_explain_cfg(compose_cfg, run_dir, "name=first"))
    elsewhere = run_dir.parent / "mine"
    run(_explain_cfg(compose_cfg, run_dir, f"out_dir={elsewhere}", "explanation.metrics.sanity=false"))
    assert (elsewhere / "explanations.json").exists()


def test_unknown_explanation_keys_fail_naming_the_key(compose_cfg, run_dir, tmp_path):
    """A typo under explanation.* is refused, added on the command line (Hydra's `+` adds keys even to a typed
    group: the task refuses it before any work) or written in an experiment file (refused at composition)."""
    from hydra.errors import ConfigCompositionException

    with pytest.raises(TrixaiError, match=r"explanation has unknown keys \['explanation.typo'\]"):
        run(_explain_cfg(compose_cfg, run_dir, "+explanation.typo=1"))
    with pytest.raises(TrixaiError, match=r"explanation.metrics.typo"):
        run(_explain_cfg(compose_cfg, run_dir, "+explanation.metrics.typo=1"))
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "typo.yaml").write_text("# @package _global_\nexplanation:\n  typo: 1\n")
    with pytest.raises(ConfigCompositionException) as caught:
        compose_cfg(f"ckpt={run_dir}", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "+experiment=typo",
                    config_name="explain", tiny=False)
    assert "Key 'typo' not in 'ExplanationSettings'" in str(caught.value.__cause__ or caught.value)


def test_trixai_explain_on_a_folder_of_pngs(compose_cfg, run_dir, tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("MEL", "NV", "BCC"):
        image, _ = render_lesion(name, 90, rng)
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(folder / f"{name}.png")
    cfg = _explain_cfg(compose_cfg, run_dir, f"inputs={folder}", "explainer=multiscale_gradcam", "name=pngs",
                       "explanation.metrics.sanity=false", "explanation.metrics.faithfulness=[constant]")
    run(cfg)
    out = run_dir / "evals" / "pngs"
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


def test_explained_points_are_stratified_by_class_and_seeded():
    """A class-ordered split (40 of class 0, then 8 of class 1, then 2 of class 2): 10 points by proportional shares
    with every class represented, not the first 10 (all of class 0); the same seed draws the same points."""
    from trixai.suites.explanation import stratified_points

    targets = torch.tensor([0] * 40 + [1] * 8 + [2] * 2)
    chosen = stratified_points(targets, 10, seed=3)
    assert torch.equal(chosen, stratified_points(targets, 10, seed=3)) and len(set(chosen.tolist())) == 10
    assert torch.bincount(targets[chosen], minlength=3).tolist() == [8, 1, 1]  # shares 8, 1.6, 0.4 (>= 1 each)
    assert not torch.equal(chosen, stratified_points(targets, 10, seed=4))
    assert stratified_points(targets, 100, seed=0).tolist() == list(range(50))  # more than the split: all of it
    multilabel = torch.tensor([[1.0, 0.0]] * 6 + [[1.0, 1.0]] * 2 + [[0.0, 0.0]] * 2)  # strata: rarest positive label
    assert torch.bincount(torch.tensor([0] * 6 + [1] * 2 + [2] * 2)[stratified_points(multilabel, 5, 0)]).tolist() \
        == [3, 1, 1]


@pytest.mark.filterwarnings("ignore:AUROC/AUPRC undefined")
def test_points_the_robustness_pass_did_not_attack_get_no_stability(tmp_path, lesions, model):
    """The test phase explains points drawn over the whole split, the robustness suite may stop at max_points: the
    explained points beyond it keep their other metrics, and their stability is NaN (left out of the mean)."""
    targets = torch.as_tensor(np.asarray(lesions.test.targets))
    suite = RobustnessSuite.from_config({"attacks": ["clean"], "eps": [8 / 255], "max_points": 5, "masking": None},
                                        eval_attack=PGD(steps=1))
    lean = {**SMALL["metrics"], "faithfulness": ["rise"], "sanity": False, "manipulation": {"points": 0}}
    run_ = SuiteRun(model, robustness=suite, explainer=GradCAM(layer="mid"), block=4,
                    explanation={**SMALL, "max_points": 10, "metrics": lean}, split_targets=targets)
    run_suites(run_, DataLoader(lesions.test, batch_size=3), tmp_path, progress=False)
    report = json.loads((tmp_path / "explanations.json").read_text())
    explained = run_.explain.records().index
    assert report["n_samples"] == 10 and bool((explained >= 5).any())
    assert report["metrics"]["stability_ssim"]["n"] == int((explained < 5).sum())
    assert report["metrics"]["deletion_auc_rise"]["n"] == 10
