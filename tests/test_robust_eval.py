"""The robustness suite: metrics, worst case, masking checks, resumable partial results, reports, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import pytest
import torch
from robust_helpers import blobs, fit, small_cnn
from torch.utils.data import DataLoader, TensorDataset

from trixai.core import catalogue
from trixai.core.errors import TrixaiError
from trixai.core.metrics import UndefinedMetricWarning
from trixai.robust.registry import create_attack
from trixai.suites.base import PointBatch
from trixai.suites.robustness import MaskingSettings, RobustnessSuite
from trixai.suites.runner import SuiteRun, run_suites
from trixai.suites.scoring import highest_loss_logits

EPS = [2 / 255, 8 / 255]
AA = {"steps": 6, "targets": 1, "queries": 20}
MASKING = MaskingSettings(large_eps=0.5, steps=5, points=16)


def robustness_suite(model, loader, *, out_dir, **settings) -> dict:
    """The suite over ``loader`` with its reports in ``out_dir``; returns the flat metrics."""
    return run_suites(SuiteRun(model, robustness=RobustnessSuite(**settings)), loader, out_dir).flat()


def evaluate_robustness(model, loader, *, partial_dir=None, out_dir=None, **settings) -> dict:
    """The report (as its JSON) of one pass of the suite over ``loader``."""
    robust = RobustnessSuite(**settings).start(model, partial_dir=partial_dir)
    start = 0
    for batch in loader:
        points = PointBatch.of(batch, start=start)
        start += len(points)
        robust.update(points)
    out_dir = out_dir or partial_dir or tempfile.mkdtemp(prefix="trixai-test-")
    return json.loads(json.dumps(robust.finish(out_dir).to_json()))


@pytest.fixture(scope="module")
def trained():
    x, y = blobs(32, 4, seed=0)
    model = fit(small_cnn(4, seed=0), x, y)
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.9
    return model, DataLoader(TensorDataset(x, y), batch_size=16)


@pytest.fixture(scope="module")
def evaluation(trained, tmp_path_factory):
    model, loader = trained
    out = tmp_path_factory.mktemp("suite")
    flat = robustness_suite(model, loader, attacks={"clean": None, "fgsm": None, "pgd5": None, "pgd10": None,
                                                    "autoattack": AA}, eps=EPS, out_dir=out,
                            masking=MASKING)
    return flat, json.loads((out / "robustness.json").read_text()), out


def test_ordering_checks_hold_on_a_trained_model(evaluation):
    _, report, _ = evaluation
    checks = {c["check"].split(" (")[0]: c["passed"] for c in report["masking_checks"]}
    assert all(passed is True for passed in checks.values()), report["masking_checks"]
    clean = report["clean"]["accuracy"]
    for label in report["eps_labels"]:
        worst = report["worst_case"][label]["accuracy"]
        for per_eps in report["results"].values():
            assert worst <= per_eps[label]["accuracy"] <= clean
    assert report["results"]["pgd10"]["8/255"]["accuracy"] < report["results"]["pgd10"]["2/255"]["accuracy"] or \
        report["results"]["pgd10"]["2/255"]["accuracy"] == 0


def test_report_fields_bounds_and_files(evaluation):
    flat, report, out = evaluation
    for name, per_eps in report["results"].items():
        for label, entry in per_eps.items():
            assert entry["linf_max"] <= entry["eps"] + 1e-6 and entry["linf_within_eps"], (name, label)
            assert set(entry["per_class_accuracy"]) == {"0", "1", "2", "3"}
            for key in ("top2", "balanced_accuracy", "macro_f1", "attack_success_rate", "images_per_s", "linf_mean"):
                assert entry[key] is not None, key
    aa = report["results"]["autoattack"]["8/255"]
    assert sum(aa["broken_by"].values()) == report["results"]["autoattack"]["8/255"]["initially_correct"] - round(
        aa["accuracy"] * aa["n"])
    assert [c["name"] for c in report["settings"]["autoattack"]["8/255"]["components"]] == \
        ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert flat["robust/worst/8_255/accuracy"] == report["worst_case"]["8/255"]["accuracy"]
    markdown = (out / "robustness.md").read_text()
    assert "Gradient-masking checks" in markdown and "apgd-t" in markdown
    assert (out / "figures" / "robust_accuracy_vs_eps.png").stat().st_size > 1000


def test_rerun_resumes_from_partial_results(trained, tmp_path):
    model, loader = trained
    kwargs = {"attacks": ["clean", "pgd3"], "eps": [8 / 255], "partial_dir": tmp_path,
              "masking": None}
    first = evaluate_robustness(model, loader, **kwargs)
    assert first["resumed_batches"] == 0
    files = sorted(tmp_path.glob("*/pgd3_*_b*.pt"))  # in the folder of this evaluation's fingerprint
    assert len(files) == 2
    files[1].unlink()  # an interrupted run: one batch missing
    second = evaluate_robustness(model, loader, **kwargs)
    assert second["resumed_batches"] == 2 + 1  # clean batches + the pgd batch left
    assert second["results"]["pgd3"]["8/255"]["accuracy"] == first["results"]["pgd3"]["8/255"]["accuracy"]
    other = fit(small_cnn(4, seed=9), *next(iter(loader)), steps=5)
    assert evaluate_robustness(other, loader, **kwargs)["resumed_batches"] == 0


def test_multilabel_suite_reports_auroc_and_per_label_accuracy(tmp_path):
    x, _ = blobs(24, 3, seed=1)
    y = (torch.rand(24, 3, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    model = fit(small_cnn(3, seed=1), x, y, steps=60)
    model.task, model.class_names = "multilabel", ["a", "b", "c"]
    loader = DataLoader([{"image": xi, "target": yi} for xi, yi in zip(x, y)], batch_size=12)
    robustness_suite(model, loader, attacks={"clean": None, "pgd5": None, "autoattack": AA}, eps=[4 / 255],
                     out_dir=tmp_path, masking=MaskingSettings(large_eps=None))
    report = json.loads((tmp_path / "robustness.json").read_text())
    entry = report["results"]["autoattack"]["4/255"]
    assert set(entry["per_label_accuracy"]) == {"a", "b", "c"}
    assert 0 <= entry["macro_auroc"] <= 1 and 0 <= entry["macro_auprc"] <= 1
    assert entry["accuracy"] <= report["clean"]["accuracy"]
    assert "flip any label" in (tmp_path / "robustness.md").read_text()


def test_early_stop_changes_accuracy_only_and_undefined_labels_are_left_out(tmp_path):
    """Multi-label, label "c" never positive: its AUROC is undefined (warning, left out of the macro mean); with
    early stop only accuracy changes source, every other metric comes from the same full-budget run."""
    x, _ = blobs(24, 3, seed=1)
    y = (torch.rand(24, 3, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    y[:, 2] = 0
    model = fit(small_cnn(3, seed=1), x, y, steps=60)
    model.task, model.class_names = "multilabel", ["a", "b", "c"]
    loader = DataLoader([{"image": xi, "target": yi} for xi, yi in zip(x, y)], batch_size=12)
    reports = {}
    for early_stop in (False, True):
        with pytest.warns(UndefinedMetricWarning, match=r"label 'c' \(no positives\) among 24 points"):
            reports[early_stop] = evaluate_robustness(model, loader, attacks=["clean", "pgd5"], eps=[8 / 255],
                                                      early_stop=early_stop, masking=None, bootstrap=200)
    full, early = (reports[flag]["results"]["pgd5"]["8/255"] for flag in (False, True))
    for key in ("macro_auroc", "macro_auprc", "macro_f1", "label_accuracy_macro", "mean_margin"):
        assert early[key] == full[key], key
    assert "with early stop" in early["metric_runs"]["accuracy, attack_success_rate, per-class accuracy"]
    assert "with early stop" not in full["metric_runs"]["accuracy, attack_success_rate, per-class accuracy"]
    clean = reports[False]["clean"]
    assert clean["auroc_undefined"] == ["c"] and clean["per_label_auroc"]["c"] is None
    assert clean["macro_auroc"] == pytest.approx((clean["per_label_auroc"]["a"] + clean["per_label_auroc"]["b"]) / 2)
    assert full["macro_auroc"] <= clean["macro_auroc"]
    for entry in (clean, full, reports[False]["worst_case"]["8/255"]):
        low, high = entry["accuracy_ci95"]
        assert low <= entry["accuracy"] <= high
        assert entry["macro_auroc_ci95"][0] <= entry["macro_auroc"] <= entry["macro_auroc_ci95"][1]


def test_worst_case_of_other_metrics_takes_the_highest_loss_output():
    targets = torch.tensor([0, 1])
    a = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.0, 2.0], [0.0, 3.0]])  # point 0: b fools it (higher CE); point 1: a has the lower margin
    logits, chosen = highest_loss_logits([a, b], targets)
    assert chosen.tolist() == [1, 0] and torch.equal(logits, torch.stack([b[0], a[1]]))


def test_bad_input_names_the_culprit(trained):
    model, loader = trained
    with pytest.raises(TrixaiError, match="pgdx"):
        evaluate_robustness(model, loader, attacks=["pgdx"], eps=[0.01])
    with pytest.raises(TrixaiError, match="eps"):
        evaluate_robustness(model, loader, attacks=["fgsm"], eps=[8])
    with pytest.raises(TrixaiError, match="stepz"):
        create_attack("pgd10", 0.03, stepz=3)
    with pytest.raises(TrixaiError, match="version"):
        create_attack("autoattack", 0.03, version="fast")


def test_trixai_eval_cli_on_a_run_dir(tmp_path):
    """Export a (briefly trained) model as a run dir, then `trixai-eval` writes the report."""
    from trixai.data.synthetic import SyntheticLesions
    from trixai.models import create_model
    from trixai.models.export import export_model, model_metadata

    dataset = {"_target_": "trixai.data.synthetic.SyntheticLesions", "image_size": 16, "n_train": 14, "n_val": 7,
               "n_test": 7, "seed": 0, "min_per_class": 1, "cache_dir": None}
    bundle = SyntheticLesions(**{k: v for k, v in dataset.items() if k != "_target_"}).load()
    model = create_model("test_resnet", 7, class_names=list(bundle.info.class_names), resolution=16)
    config = {"model": {"_target_": "trixai.models.create_model", "name": "test_resnet", "resolution": 16},
              "dataset": dataset}
    run_dir = tmp_path / "run"
    export_model(model, run_dir, model_metadata(model, config=config, seed=0))
    command = [sys.executable, "-c", "from trixai.cli.eval import main; main()", f"ckpt={run_dir}",
               "robustness.attacks=[clean,fgsm,pgd2,autoattack]", "robustness.eps=[4/255,0.0313725490]",
               "+robustness.attack_settings.autoattack={steps: 3, targets: 1, queries: 5}", "robustness.masking.points=4",
               "robustness.masking.steps=2",
               "logger=none", "progress=false", "name=first", f"hydra.run.dir={tmp_path / 'hydra'}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    out = run_dir / "evals" / "first"  # the evaluation's own folder: the run's files stay as they were
    report = json.loads((out / "robustness.json").read_text())
    assert set(report["results"]) == {"fgsm", "pgd2", "autoattack"} and report["n_points"] == len(bundle.test)
    assert report["source"]["split"] == "test" and report["eps_labels"] == ["4/255", "8/255"]
    assert (out / "figures" / "robust_accuracy_vs_eps.png").exists() and not (run_dir / "robustness.json").exists()
    assert "evals/first/report.html" in (run_dir / "report.html").read_text()  # the run's page links it
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode != 0 and "already holds robustness.json" in again.stderr and "overwrite=true" in again.stderr


def test_trixai_eval_rejects_an_unknown_split(tmp_path):
    from omegaconf import OmegaConf

    from trixai.tasks.eval import evaluate

    with pytest.raises(TrixaiError, match="split='holdout'"):
        evaluate(OmegaConf.create({"split": "holdout", "ckpt": str(tmp_path)}))


def _table_widths(markdown: str) -> list[set[int]]:
    """Cell counts of each markdown table's rows (header, separator, body)."""
    tables, current = [], []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line.strip().strip("|").count("|") + 1)
        elif current:
            tables.append(set(current))
            current = []
    return tables


def test_report_tables_are_well_formed_with_and_without_attacks(evaluation, trained, tmp_path):
    model, loader = trained
    robustness_suite(model, loader, attacks={"clean": None}, eps=EPS, out_dir=tmp_path, masking=MASKING)
    clean_only = (tmp_path / "robustness.md").read_text()
    assert "## Per-class accuracy\n" in clean_only and "Which attack broke" not in clean_only
    for markdown in (clean_only, (evaluation[2] / "robustness.md").read_text()):
        widths = _table_widths(markdown)
        assert widths and all(len(w) == 1 for w in widths), widths


def test_the_worst_case_is_no_better_than_any_attack_on_any_metric(evaluation):
    """Accuracy: per point the first fooling output; a ranking metric (AUROC, F1) has no per-point worst case, so
    the worst case takes each metric's worst attack (or the per-point highest-loss outputs where they are worse)."""
    _, report, _ = evaluation
    for label, worst in report["worst_case"].items():
        attacks = {name: per[label] for name, per in report["results"].items() if label in per}
        for key, value in worst.items():
            direction = catalogue.better(key)
            if key in ("accuracy", "attack_success_rate") or direction not in ("higher", "lower") \
                    or not isinstance(value, float):
                continue
            values = [a[key] for a in attacks.values() if isinstance(a.get(key), float)]
            assert value <= min(values) + 1e-9 if direction == "higher" else value >= max(values) - 1e-9, (label, key)
        assert "worst per metric" in worst["metric_runs"]


def test_a_block_straddling_max_points_keeps_its_attacked_points():
    """With max_points inside a block, the block's result gives clean logits for every point and the evaluation
    attack's logits for the attacked first points, as the blocks wholly inside max_points do."""
    x, y = blobs(12, 3, seed=3)
    model = fit(small_cnn(outputs=3), x, y, steps=40)
    suite = RobustnessSuite(attacks=["clean"], eps=[], masking=None, max_points=6,
                            eval_attack=create_attack("fgsm", 8 / 255))
    run = SuiteRun(model, robustness=suite, block=4)
    results = run.update({"image": x, "target": y}) + run.flush()
    assert [r.index.tolist() for r in results] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert [r.rows for r in results] == [4, 2, 0]
    with torch.no_grad():
        clean = model(x)
    for result in results:
        assert torch.allclose(result.clean_logits, clean[result.index], atol=1e-5)
    attacked = torch.cat([r.eval_logits[:r.rows] for r in results if r.rows])
    with torch.no_grad():
        expected = model(suite.eval_attack(model, x[:6], y[:6]))
    assert torch.allclose(attacked, expected, atol=1e-5)
