"""The certification suite: randomized smoothing through SuiteRun (records, report, points.csv), independent of the
batch size, and `trixai-eval certify=smoothing`."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from robust_helpers import blobs, fit, small_cnn

from trixai.core.errors import TrixaiError
from trixai.core.reports import CertificationReport
from trixai.robust.smoothing import ABSTAIN
from trixai.suites.certification import CertificationSuite
from trixai.suites.robustness import RobustnessSuite
from trixai.suites.runner import SuiteRun, run_suites


@pytest.fixture(scope="module")
def trained():
    x, y = blobs(12, 3, seed=0, spread=0.6)
    model = fit(small_cnn(3, seed=0), x, y, steps=80)
    return model, x, y


def _certify(model, x, y, out, batch: int, **settings) -> dict:
    suite = CertificationSuite(**{"sigma": 0.12, "n0": 20, "n": 200, "radii": [0.0, 0.1, 0.2], **settings})
    run = SuiteRun(model, robustness=RobustnessSuite(attacks=["clean", "fgsm"], eps=[2 / 255], masking=None,
                                                     bootstrap=50), certification=suite)
    loader = [{"image": x[i:i + batch], "target": y[i:i + batch]} for i in range(0, len(x), batch)]
    run_suites(run, loader, out, progress=False)
    return json.loads((out / "certification.json").read_text())


def test_report_follows_the_records_and_does_not_depend_on_the_batch_size(trained, tmp_path):
    model, x, y = trained
    reports = {batch: _certify(model, x, y, tmp_path / str(batch), batch) for batch in (5, 12)}
    assert reports[5] | {"seconds_per_image": None, "source": None} == reports[12] | {"seconds_per_image": None,
                                                                                     "source": None}
    report = CertificationReport.from_json(reports[5])
    assert report.n_points == 12 and report.dimension == 3 * 16 * 16
    curve = report.curve["certified_accuracy"]
    assert all(a >= b for a, b in zip(curve, curve[1:])), curve  # non-increasing in the radius
    assert report.at_radii[0]["certified_accuracy"] == report.certified_accuracy.get("accuracy") == curve[0]
    assert report.at_radii[1]["linf_equivalent"] == pytest.approx(0.1 / (3 * 16 * 16) ** 0.5)
    with open(tmp_path / "5" / "points.csv") as handle:
        rows = list(csv.DictReader(handle))
    certified = [r for r in rows if r["certified_class"] not in ("", "abstain")]
    assert len(rows) == 12 and all(float(r["certified_radius"]) > 0 for r in certified)
    right = sum(r["certified_class"] == r["target"] for r in rows)
    assert right / 12 == pytest.approx(report.certified_accuracy.get("accuracy"))
    abstained = sum(r["certified_class"] == "abstain" for r in rows)
    assert abstained / 12 == pytest.approx(report.abstain_rate)
    assert (tmp_path / "5" / "figures" / "certified_accuracy_vs_radius.png").stat().st_size > 1000
    assert "Certified accuracy per L2 radius" in (tmp_path / "5" / "certification.md").read_text()


def test_multilabel_models_and_bad_settings_are_refused(trained):
    model, x, _ = trained
    with pytest.raises(TrixaiError, match="certify has unknown keys"):
        CertificationSuite.from_config({"sigmaa": 0.1})
    with pytest.raises(TrixaiError, match="radii"):
        CertificationSuite(radii=[-1.0])
    model.task = "multilabel"
    try:
        with pytest.raises(TrixaiError, match="multiclass"):
            CertificationSuite(n=10).start(model)
    finally:
        del model.task
    assert ABSTAIN == -1


def test_trixai_eval_certify_smoothing(compose_cfg, tmp_path):
    from trixai.data.synthetic import SyntheticLesions
    from trixai.models import create_model
    from trixai.models.export import export_model, model_metadata
    from trixai.tasks.eval import evaluate

    dataset = {"_target_": "trixai.data.synthetic.SyntheticLesions", "image_size": 16, "n_train": 7, "n_val": 7,
               "n_test": 7, "seed": 0, "min_per_class": 1, "cache_dir": None}
    bundle = SyntheticLesions(**{k: v for k, v in dataset.items() if k != "_target_"}).load()
    torch.manual_seed(0)
    model = create_model("test_resnet", 7, class_names=list(bundle.info.class_names), resolution=16)
    run_dir = tmp_path / "run"
    config = {"model": {"_target_": "trixai.models.create_model", "name": "test_resnet", "resolution": 16},
              "dataset": dataset}
    export_model(model, run_dir, model_metadata(model, config=config, seed=0))
    cfg = compose_cfg(f"ckpt={run_dir}", "robustness=none", "certify=smoothing", "certify.n=100", "certify.n0=10",
                      "certify.max_points=5", "name=cert", "progress=false", config_name="eval", tiny=False)
    flat = evaluate(cfg)
    report = json.loads((run_dir / "evals" / "cert" / "certification.json").read_text())
    assert report["n_points"] == 5 and report["n"] == 100 and "certify/certified_accuracy" in flat
    assert "Certified robustness" in (run_dir / "evals" / "cert" / "report.html").read_text()
