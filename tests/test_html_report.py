"""report.html: rendered from fixture JSON files and a tiny PNG, every section present or absent, self-contained
(figures inlined byte for byte, no external resource), and opened in a real headless browser (slow)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trixai.tasks.aggregate import Configuration, Stat
from trixai.tasks.html_report import fixed, heat, interval, num, render_run, write_run_report, write_sweep_report
from trixai.tasks.render import UNITS

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


def entry(acc: float, **extra) -> dict:
    per_class = {c: acc for c in CLASSES}
    return {"n": 10, "accuracy": acc, "accuracy_ci95": [acc - 0.1, acc + 0.05], "top2": 1.0, "balanced_accuracy": acc,
            "macro_f1": acc, "per_class_accuracy": per_class, "attack_success_rate": 0.25, **extra}


def robustness() -> dict:
    linf = {"linf_mean": 2 / 255, "linf_max": 2 / 255, "linf_within_eps": True}
    return {
        "format": "trixai-robustness/1", "task": "multiclass", "class_names": CLASSES, "n_points": 10,
        "eps": [2 / 255, 8 / 255], "eps_labels": ["2/255", "8/255"], "early_stop": False, "seed": 0, "device": "cpu",
        "eval_attack": {"name": "pgd10", "eps": "2/255"}, "clean": entry(0.9),
        "results": {"pgd10": {"2/255": entry(0.5, **linf), "8/255": entry(0.125, **linf)}},
        "worst_case": {"2/255": {**entry(0.4), "broken_by": {"clean": 1}},
                       "8/255": {**entry(0.0), "broken_by": {"clean": 1}}},
        "settings": {"pgd10": {"2/255": {"attack": "pgd10", "steps": 10}, "8/255": {"attack": "pgd10", "steps": 10}}},
        "masking_checks": [{"check": "accuracy ordering", "passed": True, "detail": "holds"},
                           {"check": "large eps drives accuracy to 0", "passed": False, "detail": "accuracy 0.3"},
                           {"check": "square vs white-box", "passed": None, "detail": "needs square"}],
        "masking_probe": {"attack": "pgd20", "eps": 0.5}, "resumed_batches": 0, "source": {"model": "m"},
    }


def explanations() -> dict:
    return {"explainer": {"name": "gradcam", "target": "predicted"}, "model": "test_resnet", "class_names": CLASSES,
            "n_samples": 8, "attack": {"attack": "pgd10", "eps": 2 / 255, "steps": 10},
            "metrics": {"deletion_auc_blur": {"mean": 0.25, "std": 0.1, "n": 8},
                        "deletion_auc_blur_ci95": [0.2, 0.3],
                        "stability_ssim": {"mean": 0.8125, "std": 0.05, "n": 8, "mean_ci95": [0.75, 0.875]}},
            "sanity": {"stages": [{"stage": "backbone.fc", "ssim": 0.5, "spearman": 0.25, "n": 4}], "max_spearman": 0.5,
                       "passed": True, "final_ssim": 0.5, "final_spearman": 0.25, "n": 4},
            "uninformative": {"metrics": ["deletion_auc_blur"], "reason": "degenerate model: class 0 for 100% of points"},
            "figures": ["figures/xai_gallery.png", "figures/xai_curves.png"]}


@pytest.fixture
def full_run(tmp_path) -> tuple[Path, dict[str, bytes]]:
    """A directory with every file a run page reads."""
    run = tmp_path / "run"
    run.mkdir()
    images = {name: png(run / "figures" / name, seed=i) for i, name in
              enumerate(["robust_accuracy_vs_eps.png", "corruption_accuracy_vs_severity.png", "xai_gallery.png",
                         "xai_curves.png"])}
    images["overlay.png"] = png(run / "overlays" / "a.png", seed=7)
    images["robust_curves.png"] = png(run / "robust_curves.png", seed=8)  # a figure no section owns
    files = {
        "model.json": {"timm_name": "test_resnet", "task": "multiclass", "class_names": CLASSES, "in_chans": 3,
                       "input_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "command": "trixai-train model=x",
                       "created": "2026-12-01T00:00:00+00:00", "git": {"commit": "abc123", "dirty": True},
                       "versions": {"torch": "2"}, "seed": 3, "config": {"dataset": {"_target_": "trixai.data.Folder"}}},
        "metrics.json": {"test": {"acc": 0.875, "acc_ci95": [0.8, 0.95], "rob_acc": 0.5, "f1": 0.75},
                         "eval_attack": {"attack": "pgd10", "eps": 2 / 255}, "monitor": "val/acc", "best_score": 0.9,
                         "epochs": 2, "class_counts": {"test": [3, 4, 3]},
                         "profile": {"params": 2_500_000, "macs": 1e9, "latency_ms_b1": 4.0, "device": "cpu"}},
        "robustness.json": robustness(),
        "corruptions.json": {"clean": {"accuracy": 0.9}, "results": {
            "gaussian_noise": {"1": {"accuracy": 0.75, "accuracy_ci95": [0.7, 0.8]}, "3": {"accuracy": 0.5}},
            "blur": {"1": {"accuracy": 0.625}}},
            "summary": {"gaussian_noise": {"mean_accuracy": 0.625, "relative_error": 0.275},
                        "blur": {"mean_accuracy": 0.625, "relative_error": 0.275}},
            "mean_accuracy": 0.625, "mce": None, "worst_corruption": {"name": "gaussian_noise", "mean_accuracy": 0.625}},
        "explanations.json": explanations(),
        "predictions.json": [{"file": "a.png", "prediction": "NV", "confidence": 0.75, "overlay": "overlays/a.png"}],
        "provenance.json": {"eval": {"command": "trixai-eval ckpt=run", "created": "2026-12-01T01:00:00+00:00",
                                     "git": {"commit": "def456"}, "versions": {"torch": "2"}, "config": {"split": "test"},
                                     "model": {"source": "trixai run", "file": "/x/model.safetensors",
                                               "sha256": "f" * 64, "metadata_from": {"class_names": "given"}},
                                     "dataset": "trixai.data.Folder"}},
    }
    for name, data in files.items():
        (run / name).write_text(json.dumps(data))
    return run, images


def test_number_formats():
    assert num(0.87654) == "0.8765" and num(2_500_000.0) == "2\u2009500\u2009000" and num(None) == "—"
    assert num(float("nan")) == "undefined" and num(True) == "yes"
    assert fixed(0.5) == "0.500" and fixed(1.0) == "1.000" and interval([0.8, 0.95]) == "[0.800, 0.950]"
    assert interval(None) == "" and interval("x") == ""
    assert heat(1.0) == "background-color: hsl(120, 70%, 90%)" and heat(0.0) == "background-color: hsl(0, 70%, 90%)"
    assert heat(0.5) == "background-color: hsl(60, 70%, 90%)" and heat(1.5) == "" and heat(None) == ""


def test_every_section_rendered_self_contained(full_run):
    run, images = full_run
    html = write_run_report(run).read_text()
    for section in ("summary", "model", "test", "robustness", "corruptions", "explanations", "predictions",
                    "figures", "profile", "provenance"):
        assert f'<section id="{section}">' in html, section
    # figures inlined byte for byte, in the order of the page; no other image source
    srcs = [attrs["src"] for tag, attrs in tags(html) if tag == "img"]
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    decoded = [base64.b64decode(s.split(",", 1)[1]) for s in srcs]
    assert decoded == [images["robust_accuracy_vs_eps.png"], images["corruption_accuracy_vs_severity.png"],
                       images["xai_gallery.png"], images["xai_curves.png"], images["overlay.png"],
                       images["robust_curves.png"]]
    # nothing from a network: no external src/href, no scripts, no style sheets or fonts from elsewhere
    links = [v for _, attrs in tags(html) for k, v in attrs.items() if k in ("src", "href")]
    assert all(v.startswith(("data:", "#")) for v in links), links
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    assert not re.search(r"https?://", html)
    # numbers with their intervals; escaping of untrusted text
    assert "0.900<span class=\"ci\">[0.800, 0.950]</span>" in html  # clean accuracy (0.9 - 0.1, 0.9 + 0.05)
    assert "0.812<span class=\"ci\">[0.750, 0.875]</span>" in html  # stability SSIM, interval inside the entry
    assert "0.250<span class=\"ci\">[0.200, 0.300]</span>" in html  # deletion AUC, interval beside the key
    assert "&lt;b&gt;BCC&lt;/b&gt;" in html and "<b>BCC</b>" not in html
    assert "1 passed, 1 failed." in html and ">1/2 passed<" in html  # undecided checks are not counted
    assert "degenerate model: class 0 for 100% of points. The metrics marked † describe" in html
    assert "<td>deletion_auc_blur †</td>" in html and "<td>stability_ssim</td>" in html
    assert "<th class=\"n\">severity 3</th><th class=\"n\">mean accuracy</th><th class=\"n\">relative error</th>" in html
    assert "Worst corruption: gaussian_noise (mean accuracy 0.625)" in html
    assert "gaussian_noise" in html and "abc123" in html and "f" * 64 in html and "pgd10, ε = 2/255, 10 steps" in html


def test_absent_sections_are_left_out(tmp_path):
    run = tmp_path / "eval"
    run.mkdir()
    (run / "robustness.json").write_text(json.dumps(robustness()))
    html = render_run(run)
    assert '<section id="robustness">' in html
    for section in ("test", "corruptions", "explanations", "predictions", "figures", "profile", "provenance"):
        assert f'id="{section}"' not in html, section
    assert "<img" not in html  # the accuracy-vs-eps figure is absent, so no broken image
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "No results in this directory yet" in render_run(empty)


def test_one_eps_omits_the_curve_and_odd_corruption_layouts_fall_back(tmp_path):
    evaluation = robustness()
    evaluation["eps"], evaluation["eps_labels"] = [2 / 255], ["2/255"]
    evaluation["results"]["pgd10"].pop("8/255")
    evaluation["worst_case"].pop("8/255")
    png(tmp_path / "figures" / "robust_accuracy_vs_eps.png")
    (tmp_path / "robustness.json").write_text(json.dumps(evaluation))
    (tmp_path / "corruptions.json").write_text(json.dumps({"summary": {"mce": 0.75}, "n": 4}))
    html = render_run(tmp_path)
    assert "<img" not in html  # one point is no curve: the table says it all
    assert "summary/mce" in html and "0.75" in html


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
    from trixai.suites.robustness_report import plot_curve  # a real matplotlib figure in the page

    plot_curve(robustness(), run / "figures" / "robust_accuracy_vs_eps.png")
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
    from trixai.tasks.html_report import try_write_run_report

    (tmp_path / "robustness.json").write_text("{not json")
    assert try_write_run_report(tmp_path) is None and not (tmp_path / "report.html").exists()
    assert "report.html not written" in caplog.text and "robustness.json: not readable JSON" in caplog.text


def test_tcav_and_multilabel_reports(tmp_path):
    (tmp_path / "explanations.json").write_text(json.dumps({
        "explainer": {"name": "tcav"}, "model": "m", "concept": "streaks", "layer": "backbone.layer4",
        "results": [{"class_name": "MEL", "score_mean": 0.75, "p_value": 0.01}]}))
    evaluation = robustness()
    evaluation["task"] = "multilabel"
    for entry in (evaluation["clean"], *evaluation["results"]["pgd10"].values(), *evaluation["worst_case"].values()):
        entry["per_label_accuracy"] = entry.pop("per_class_accuracy")
        entry["macro_auroc"] = 0.5
    (tmp_path / "robustness.json").write_text(json.dumps(evaluation))
    html = render_run(tmp_path)
    assert "concept <b>streaks</b>" in html and "<td>MEL</td><td>0.75</td><td>0.01</td>" in html
    assert "Per-label accuracy at ε = 8/255" in html and "exact match" in html and "<th class=\"n\">AUROC</th>" in html
