"""report.html: rendered from the real writers' output (the suites on a tiny model, with the corruption suite),
every section present or absent, self-contained (figures inlined byte for byte, no external resource), and opened in
a real headless browser (slow)."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from robust_helpers import blobs, fit

from trixai.core.reports import CorruptionReport, RobustnessReport
from trixai.models import create_model
from trixai.render.html import fixed, heat, render_run, write_run_report, write_sweep_report
from trixai.robust.registry import create_attack
from trixai.suites.corruption import CorruptionSuite
from trixai.suites.robustness import RobustnessSuite
from trixai.suites.runner import SuiteRun, run_suites
from trixai.tasks.aggregate import Configuration, Stat
from trixai.tasks.render import UNITS
from trixai.xai.explainers import GradCAM

CLASSES = ["MEL", "NV", "<b>BCC</b>"]


class Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


def png(path: Path, seed: int = 0, size: tuple[int, int] = (24, 16)) -> bytes:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path.read_bytes()


def tiny_model():
    """timm's test ResNet at 16 px with the class names above, fitted a little on coloured blobs."""
    x, y = blobs(24, 3, seed=0)
    model = create_model("test_resnet", 3, class_names=CLASSES, resolution=16)
    return fit(model, x, y, steps=30), x, y


def batches(x: torch.Tensor, y: torch.Tensor, size: int = 12) -> list[dict]:
    """Dataset-like batches with lesion masks (the centred square) and file names."""
    mask = torch.zeros(len(x), 1, 16, 16, dtype=torch.uint8)
    mask[:, :, 4:12, 4:12] = 1
    return [{"image": x[i:i + size], "target": y[i:i + size], "mask": mask[i:i + size],
             "name": [f"img_{j:02d}.png" for j in range(i, min(i + size, len(x)))]} for i in range(0, len(x), size)]


def suites(model, out: Path, *, eps=(2 / 255, 8 / 255), corruptions: bool = True, explain: bool = True) -> None:
    """The real suites' reports in ``out``: robustness (clean, fgsm, pgd2), corruptions, explanations."""
    suite = RobustnessSuite(attacks=["clean", "fgsm", "pgd2"], eps=list(eps), bootstrap=200,
                            masking={"large_eps": 0.5, "steps": 2, "points": 8}, fragile_images=3,
                            eval_attack=create_attack("pgd2", eps[0]))
    corrupt = CorruptionSuite(set="dermoscopy", only=["gaussian_noise", "brightness_up"], severities=[1, 3],
                              bootstrap=200, gallery_severities=[1, 3], dataset="synthetic_lesions")
    run = SuiteRun(model, robustness=suite, corruptions=corrupt if corruptions else None,
                   explainer=GradCAM(layer="final") if explain else None,
                   explanation={"max_points": 8, "batch_size": 8, "metrics": {"sanity": True, "sanity_samples": 2,
                                                                             "faithfulness": ["rise"], "steps": 4}})
    x, y = model.blobs
    run_suites(run, batches(x, y), out, progress=False, source={"model": "tiny"})


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """A directory with every file a run page reads: the suites' real reports, plus a training run's files."""
    run = tmp_path_factory.mktemp("run")
    model, x, y = tiny_model()
    model.blobs = (x, y)
    suites(model, run)
    (run / "model.json").write_text(json.dumps({
        "timm_name": "test_resnet", "task": "multiclass", "class_names": CLASSES, "in_chans": 3, "input_size": 16,
        "mean": [0.5] * 3, "std": [0.25] * 3, "command": "trixai-train model=x", "created": "2026-12-01T00:00:00+00:00",
        "git": {"commit": "abc123", "dirty": True}, "versions": {"torch": "2"}, "seed": 3,
        "config": {"dataset": {"_target_": "trixai.data.Folder"}}}))
    (run / "metrics.json").write_text(json.dumps({
        "test": {"acc": 0.875, "acc_ci95": [0.8, 0.95], "rob_acc": 0.5, "f1": 0.75},
        "eval_attack": {"name": "pgd2", "eps": 2 / 255, "settings": {}}, "monitor": "val/acc", "best_score": 0.9,
        "epochs": 2, "class_counts": {"test": [3, 4, 3]},
        "profile": {"params": 2_500_000, "macs": 1e9, "latency_ms_b1": 4.0, "device": "cpu"}}))
    images = {"overlay.png": png(run / "overlays" / "a.png", seed=7),
              "robust_curves.png": png(run / "robust_curves.png", seed=8)}  # a figure no section owns
    (run / "predictions.json").write_text(json.dumps(
        [{"file": "a.png", "prediction": "NV", "confidence": 0.75, "overlay": "overlays/a.png"}]))
    (run / "provenance.json").write_text(json.dumps({"eval": {
        "command": "trixai-eval ckpt=run", "created": "2026-12-01T01:00:00+00:00", "git": {"commit": "def456"},
        "versions": {"torch": "2"}, "config": {"split": "test"},
        "model": {"source": "trixai run", "file": "/x/model.safetensors", "sha256": "f" * 64,
                  "metadata_from": {"class_names": "given"}}, "dataset": "trixai.data.Folder"}}))
    return run, images


def test_number_formats():
    from trixai.core.formatting import eps_label, interval, num, with_interval

    assert num(0.87654) == "0.8765" and num(2_500_000.0) == "2\u2009500\u2009000" and num(None) == "—"
    assert num(float("nan")) == "undefined" and num(True) == "yes"
    assert fixed(0.5) == "0.500" and fixed(1.0) == "1.000" and interval([0.8, 0.95]) == "[0.800, 0.950]"
    assert interval(None) == "" and interval("x") == ""
    assert with_interval(0.87841, [0.8, 0.95]) == "0.8784 [0.800, 0.950]" and with_interval(None) == "—"
    assert eps_label(8 / 255) == "8/255" and eps_label(0.01) == "0.01"
    assert heat(1.0) == "background-color: hsl(120, 70%, 90%)" and heat(0.0) == "background-color: hsl(0, 70%, 90%)"
    assert heat(0.5) == "background-color: hsl(60, 70%, 90%)" and heat(1.5) == "" and heat(None) == ""


def test_every_section_rendered_self_contained(full_run):
    run, images = full_run
    html = write_run_report(run).read_text()
    for section in ("summary", "model", "test", "robustness", "corruptions", "explanations", "predictions",
                    "figures", "profile", "provenance"):
        assert f'<section id="{section}">' in html, section
    robustness = RobustnessReport.from_json(json.loads((run / "robustness.json").read_text()))
    corruptions = CorruptionReport.from_json(json.loads((run / "corruptions.json").read_text()))
    explained = json.loads((run / "explanations.json").read_text())
    # figures inlined byte for byte, in the order of the page; no other image source
    expected = [*robustness.figures, *corruptions.figures, *explained["figures"]]
    assert "figures/fragile_images.png" in expected and "figures/corruption_gallery.png" in expected
    srcs = [attrs["src"] for tag, attrs in tags(html) if tag == "img"]
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    decoded = [base64.b64decode(s.split(",", 1)[1]) for s in srcs]
    assert decoded == [*((run / f).read_bytes() for f in expected), images["overlay.png"], images["robust_curves.png"]]
    # nothing from a network: no external src/href, no scripts, no style sheets or fonts from elsewhere
    links = [v for _, attrs in tags(html) for k, v in attrs.items() if k in ("src", "href")]
    assert all(v.startswith(("data:", "#")) for v in links), links
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    assert not re.search(r"https?://", html)
    # numbers with their intervals, from the reports; escaping of untrusted text
    clean = robustness.clean
    low, high = clean.interval("accuracy")
    assert f'{clean.get("accuracy"):.3f}<span class="ci">[{low:.3f}, {high:.3f}]</span>' in html
    assert "&lt;b&gt;BCC&lt;/b&gt;" in html and "<b>BCC</b>" not in html
    decided = [c for c in robustness.masking_checks if c.passed is not None]
    passed = sum(c.passed for c in decided)
    assert f"{passed} passed, {len(decided) - passed} failed." in html and f">{passed}/{len(decided)} passed<" in html
    assert "abc123" in html and "f" * 64 in html and "pgd2, ε = 2/255, 2 steps" in html


def test_corruption_table_columns_are_exactly_the_severities(full_run):
    """The writer's corruptions.json (severities 1 and 3) gives a table of exactly those severity columns, then the
    summaries: no "severity mean" column (the summary means live outside the severity cells)."""
    run, _ = full_run
    html = render_run(run)
    section = html[html.index('<section id="corruptions">'):html.index("</section>", html.index('<section id="corruptions">'))]
    first_table = section[section.index("<table>"):section.index("</table>")]
    header = re.findall(r"<th[^>]*>([^<]*)</th>", first_table.split("</tr>")[0])
    assert header == ["corruption", "severity 1", "severity 3", "mean accuracy", "balanced error", "rel. error"]
    data = json.loads((run / "corruptions.json").read_text())
    assert all(set(per) == {"1", "3"} for per in data["results"].values())


def test_points_file_agrees_with_the_report(full_run):
    run, _ = full_run
    report = json.loads((run / "robustness.json").read_text())
    with open(run / "points.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == report["n_points"] == 24 and rows[0]["name"] == "img_00.png"
    assert [int(r["index"]) for r in rows] == list(range(24))
    for name, per in report["results"].items():
        for label, entry in per.items():
            robust = sum(int(r[f"{name}@{label}_robust"]) for r in rows)  # the report's accuracy is float32
            assert robust == round(entry["accuracy"] * len(rows)) and robust / len(rows) == pytest.approx(
                entry["accuracy"], rel=1e-6), (name, label)
    for label, entry in report["worst_case"].items():
        assert sum(int(r[f"worst@{label}_robust"]) for r in rows) == round(entry["accuracy"] * len(rows))
    assert sum(int(r["clean_right"]) for r in rows) == round(report["clean"]["accuracy"] * len(rows))


def test_absent_sections_are_left_out(full_run, tmp_path):
    run, _ = full_run
    (tmp_path / "robustness.json").write_text((run / "robustness.json").read_text())
    html = render_run(tmp_path)
    assert '<section id="robustness">' in html
    for section in ("test", "corruptions", "explanations", "predictions", "profile", "provenance"):
        assert f'id="{section}"' not in html, section
    assert "<img" not in html  # the figures are absent, so no broken image
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "No results in this directory yet" in render_run(empty)


def test_one_eps_omits_the_curve(tmp_path):
    model, x, y = tiny_model()
    model.blobs = (x, y)
    suites(model, tmp_path, eps=(2 / 255,), corruptions=False, explain=False)
    report = json.loads((tmp_path / "robustness.json").read_text())
    assert report["figures"] == ["figures/fragile_images.png", "figures/calibration.png"]  # one eps: no curve
    assert not (tmp_path / "figures" / "robust_accuracy_vs_eps.png").exists()


def test_sweep_page(tmp_path):
    figure = png(tmp_path / "pareto_robust_acc_vs_flops.png")
    rows = [{"sweep": "s", "run": str(i), "model": "b0", "objective": "trades", "varied": "", "seed": i,
             "resolution": 64, "test/acc": 0.5 + 0.25 * i, "profile/params": 4e6, "path": str(tmp_path / str(i))}
            for i in range(2)]
    summary = [Configuration("s", "b0", "trades", "", "", (0, 1), {"test/acc": Stat(0.625, 0.176, 2),
                                                                  "profile/params": Stat(4e6, 0.0, 2)})]
    path = write_sweep_report(tmp_path, rows=rows, summary=summary, columns=["test/acc", "profile/params"],
                              id_columns=["sweep", "run", "model", "objective", "varied", "seed", "resolution"],
                              units=UNITS, sources=[tmp_path], figures={"pareto_robust_acc_vs_flops.png":
                                                                        tmp_path / "pareto_robust_acc_vs_flops.png"},
                              provenance={"command": "trixai-report dir=x", "git": {"commit": "c0ffee"},
                                          "versions": {}, "config": {"dir": "x"}})
    html = path.read_text()
    (src,) = [a["src"] for t, a in tags(html) if t == "img"]
    assert base64.b64decode(src.split(",", 1)[1]) == figure
    assert "params (M)" in html and ">4</td>" in html  # 4e6 parameters shown in millions
    assert "0.625 ± 0.18" in html and "0.75" in html and "c0ffee" in html and "trixai-report dir=x" in html


BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHECK_IMAGES = ("<script>window.addEventListener('load', function () { document.body.setAttribute('data-images', "
                "Array.from(document.images).map(function (i) { return i.complete && i.naturalWidth > 0 ? 'ok' : "
                "'broken'; }).join(',')); });</script></body>")


@pytest.mark.slow
def test_report_in_headless_chromium(full_run, tmp_path):
    """Open report.html in Debian's chromium: a screenshot that is not blank, and every <img> decoded."""
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no chromium to open report.html: `apt-get install chromium` (Debian/Ubuntu; `make test` installs "
                    "it when run as root), or put chromium/google-chrome on PATH")
    run, _ = full_run
    page = write_run_report(run)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, "--window-size=1280,2200", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2200, 1280)
    assert pixels.std() > 20 and (pixels < 200).mean() > 0.05, "the screenshot is (nearly) blank"
    checked = tmp_path / "checked.html"
    checked.write_text(page.read_text().replace("</body>", CHECK_IMAGES))
    dom = subprocess.run([browser, *flags, "--virtual-time-budget=10000", "--dump-dom", checked.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    states = re.search(r'data-images="([^"]*)"', dom).group(1).split(",")
    assert states == ["ok"] * page.read_text().count("<img "), states


def test_a_training_run_keeps_its_results_when_the_page_fails(tmp_path, caplog):
    from trixai.render.html import try_write_run_report

    (tmp_path / "robustness.json").write_text("{not json")
    assert try_write_run_report(tmp_path) is None and not (tmp_path / "report.html").exists()
    assert "report.html not written" in caplog.text and "robustness.json: not readable JSON" in caplog.text
    (tmp_path / "robustness.json").write_text(json.dumps({"format": "trixai-robustness/1"}))
    assert try_write_run_report(tmp_path) is None and "written by another trixai version" in caplog.text


def test_multilabel_report(tmp_path):
    x, _ = blobs(24, 3, seed=1)
    y = (torch.rand(24, 3, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    model = create_model("test_resnet", 3, class_names=CLASSES, task="multilabel", resolution=16)
    model = fit(model, x, y, steps=20)
    suite = RobustnessSuite(attacks=["clean", "fgsm"], eps=[2 / 255, 8 / 255], bootstrap=100, masking=None)
    run_suites(SuiteRun(model, robustness=suite), [{"image": x, "target": y}], tmp_path, progress=False)
    html = render_run(tmp_path)
    assert "Per-label accuracy at ε = 8/255" in html and "exact match" in html and "AUROC</th>" in html
