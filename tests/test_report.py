"""trixai-report: one row per run, mean ± std over seeds, Pareto fronts, W&B table, static profile fallback."""

import csv
import io
import json
import statistics
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_module

from trixai.core.errors import TrixaiError
from trixai.models import create_model
from trixai.models.export import export_model, model_metadata
from trixai.tasks.aggregate import Configuration, Stat, pareto_front, seed_summary, sweep_order
from trixai.tasks.render import markdown_table, report_markdown, summary_csv
from trixai.tasks.report import build_report
from trixai.tasks.runs import flatten
from trixai.training.profiling import count_flops

# (model, objective, seed) -> (test/acc, test/rob_acc, ssim mean); profiles per model.
RUNS = {
    ("efficientnet_b0", "standard", 1): (0.80, 0.10, 0.40),
    ("efficientnet_b0", "standard", 2): (0.82, 0.14, 0.44),
    ("efficientnet_b0", "trades", 1): (0.70, 0.40, 0.70),
    ("efficientnet_b0", "trades", 2): (0.72, 0.44, 0.74),
    ("resnet50", "standard", 1): (0.83, 0.12, 0.30),
    ("resnet50", "standard", 2): (0.85, 0.16, 0.34),
    ("resnet50", "trades", 1): (0.71, 0.38, 0.60),
    ("resnet50", "trades", 2): (0.69, 0.42, 0.62),
}
PROFILES = {"efficientnet_b0": {"params": 5.3e6, "flops": 0.77e9, "latency_ms_b1": 10.0},
            "resnet50": {"params": 25.6e6, "flops": 8.2e9, "latency_ms_b1": 20.0}}


def _write_run(run_dir: Path, model: str, objective: str, seed: int, values: tuple[float, float, float]) -> None:
    run_dir.mkdir(parents=True)
    acc, rob, ssim = values
    metrics = {"val": {"acc": acc, "rob_acc": rob}, "test": {"acc": acc, "rob_acc": rob},
               "monitor": "val/rob_acc", "best_score": rob, "epochs": 1, "profile": PROFILES[model]}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    meta = {"timm_name": model, "seed": seed, "input_size": 224,
            "config": {"model": {"name": model, "resolution": 224}, "seed": seed,
                       "logger": {"wandb": {"group": "train-sweep"}}}}
    (run_dir / "model.json").write_text(json.dumps(meta))
    (run_dir / "explanations.json").write_text(json.dumps({"stability": {"ssim": {"mean": ssim, "n": 16}}}))
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model={model}", f"objective={objective}",
                                                                         f"seed={seed}"]))
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(
        {"hydra": {"runtime": {"choices": {"model": model, "objective": objective}}}}))


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    sweep = tmp_path / "multiruns" / "2026-11-23_12-00-00"
    for index, ((model, objective, seed), values) in enumerate(RUNS.items()):
        _write_run(sweep / str(index), model, objective, seed, values)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    return sweep


def _cfg(dirs, out_dir: Path, *extra: str):
    with initialize_config_module(config_module="trixai.conf", version_base="1.3"):
        return compose("report", overrides=[f"dir={dirs}", f"out_dir={out_dir}", "wandb.mode=disabled", *extra])


def _read_csv(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_pareto_front_hand_made():
    points = [(1.0, 0.5), (2.0, 0.4), (2.0, 0.7), (4.0, 0.7), (8.0, 0.9), (0.5, 0.1)]
    assert pareto_front(points) == [5, 0, 2, 4]


def test_flatten_keeps_numbers_only():
    assert flatten({"a": {"b": 1, "c": "x", "d": [1, 2]}, "e": True, "f": None}) == {"a/b": 1.0, "e": 1.0}


def test_seed_statistics_are_numbers_and_markdown_scales_them():
    """Seed statistics are typed numbers (mean, std, n), not text; Markdown writes "mean ± std" in its units."""
    rows = [{"sweep": "s", "run": str(seed), "model": "m", "objective": "o", "varied": "", "group_key": "model=m",
             "seed": seed, "test/acc": acc, "test/auroc": float("nan"), "profile/params": params,
             "profile/flops": 0.77e9}
            for seed, acc, params in ((1, 0.80, 5.0e6), (2, 0.84, 5.6e6))]
    [configuration] = seed_summary(rows, ["test/acc", "test/auroc", "test/f1", "profile/params", "profile/flops"])
    assert isinstance(configuration, Configuration) and (configuration.n, configuration.seeds) == (2, (1, 2))
    assert set(configuration.stats) == {"test/acc", "profile/params", "profile/flops"}  # no finite value: no statistic
    params = configuration.stats["profile/params"]
    assert isinstance(params, Stat) and isinstance(params.mean, float) and isinstance(params.std, float)
    assert params.mean == pytest.approx(5.3e6) and params.std == pytest.approx(statistics.stdev([5.0e6, 5.6e6]))
    assert params.n == 2
    assert configuration.stats["profile/flops"] == Stat(mean=0.77e9, std=0.0, n=2)
    table = markdown_table([configuration.stats], ["test/acc", "profile/params", "profile/flops", "test/auroc"])
    assert table.splitlines() == ["| test/acc | params (M) | GFLOPs | test/auroc |", "|---|---|---|---|",
                                  "| 0.82 ± 0.02828 [0.5659, 1.074] | 5.3 ± 0.4243 [1.488, 9.112] | 0.77 ± 0 [0.77, 0.77] | — |"]
    sections = report_markdown(rows, [configuration], ["test/acc", "profile/params"], [Path("s")], {})
    assert sections[1].splitlines()[-1] == "| s | m | o | — | 2 | 0.82 ± 0.02828 [0.5659, 1.074] | 5.3 ± 0.4243 [1.488, 9.112] |"


def test_t_interval_across_seeds_matches_a_hand_computation():
    """mean 0.3, sample std sqrt(0.07), t_{0.975, 2} = 4.302653: half-width 4.302653 * 0.264575 / sqrt(3)."""
    low, high = Stat.of([0.1, 0.2, 0.6]).t_interval
    half = 4.302653 * 0.07 ** 0.5 / 3 ** 0.5
    assert (low, high) == pytest.approx((0.3 - half, 0.3 + half), abs=1e-6)
    assert Stat.of([0.5]).t_interval is None  # one seed: no interval
    rows = [{"sweep": "s", "model": "m", "objective": "o", "group_key": "model=m", "seed": seed, "test/acc": acc}
            for seed, acc in ((1, 0.1), (2, 0.2), (3, 0.6))]
    [row] = list(csv.DictReader(io.StringIO(summary_csv(seed_summary(rows, ["test/acc"]), ["test/acc"]))))
    assert float(row["test/acc t95_low"]) == pytest.approx(0.3 - half, abs=1e-6)
    assert float(row["test/acc t95_high"]) == pytest.approx(0.3 + half, abs=1e-6)


def test_report_table_summary_and_figures(sweep_dir, tmp_path):
    out = tmp_path / "report"
    paths = build_report(_cfg(sweep_dir, out))
    rows = _read_csv(out / "report.csv")
    assert len(rows) == len(RUNS) == paths["rows"]
    first = rows[0]
    assert (first["model"], first["objective"], first["seed"], first["sweep"]) == ("efficientnet_b0", "standard", "1",
                                                                                     sweep_dir.name)
    assert float(first["test/rob_acc"]) == 0.10
    assert float(first["profile/flops"]) == 0.77e9
    assert float(first["explanations/stability/ssim/mean"]) == 0.40
    summary = _read_csv(out / "summary.csv")
    assert len(summary) == 4 and all(s["n"] == "2" for s in summary)
    trades_b0 = next(s for s in summary if s["model"] == "efficientnet_b0" and s["objective"] == "trades")
    assert float(trades_b0["test/rob_acc mean"]) == pytest.approx(0.42)
    assert float(trades_b0["test/rob_acc std"]) == pytest.approx(statistics.stdev([0.40, 0.44]))
    markdown = (out / "report.md").read_text()
    assert "Mean ± std over seeds" in markdown and "0.42 ± 0.02828" in markdown
    assert markdown.count("| efficientnet_b0 |") == 4 + 2  # runs, then seed groups
    assert first["varied"] == "model=efficientnet_b0 objective=standard"  # the seed varies too, but is a repeat
    assert "| params (M) | GFLOPs |" in markdown and "| 5.3 | 0.77 |" in markdown
    assert set(paths["figures"]) == {"pareto_robust_acc_vs_flops.png", "pareto_robust_acc_vs_latency.png",
                                     "pareto_stability_vs_flops.png", "tradeoff_accuracy_vs_stability.png"}
    for figure in paths["figures"].values():
        assert figure.stat().st_size > 10_000 and figure.read_bytes()[:4] == b"\x89PNG"


def test_tradeoff_curve_follows_the_swept_value(tmp_path):
    """A lambda sweep: points labelled by the varied override and joined in the order of its values."""
    sweep = tmp_path / "multiruns" / "t"
    lambdas = {"1.0": (0.70, 0.40, 0.90), "0.0": (0.80, 0.45, 0.60), "0.3": (0.78, 0.44, 0.75)}
    for index, (lam, values) in enumerate(lambdas.items()):
        run_dir = sweep / str(index)
        _write_run(run_dir, "efficientnet_b0", "tri_objective", 1, values)
        (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
            [f"objective.lambda_expl={lam}", "experiment=tri_objective_ablation"]))
    out = tmp_path / "report"
    paths = build_report(_cfg(sweep, out))
    rows = _read_csv(out / "report.csv")
    assert [r["varied"] for r in rows] == [f"objective.lambda_expl={lam}" for lam in lambdas]
    summary = _read_csv(out / "summary.csv")
    assert {s["varied"] for s in summary} == {f"objective.lambda_expl={lam}" for lam in lambdas}
    figure = paths["figures"]["tradeoff_accuracy_vs_stability.png"]
    assert figure.read_bytes()[:4] == b"\x89PNG"
    assert "| objective.lambda_expl=0.3 |" in (out / "report.md").read_text()


def test_a_single_metric_override_is_one_pattern(sweep_dir, tmp_path):
    """`stability_metric=test/cam_ssim` (a string, not a list) selects that column, not its characters."""
    for index, run_dir in enumerate(sorted(sweep_dir.glob("[0-9]"))):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        metrics["test"]["cam_ssim"] = 0.5 + index / 100
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path / "report"
    paths = build_report(_cfg(sweep_dir, out, "stability_metric=test/cam_ssim", "extra_columns=test/rob_acc"))
    header = (out / "report.md").read_text().split("| test/acc |")[1].splitlines()[0]
    assert header.startswith(" test/rob_acc | test/cam_ssim | params (M)"), header
    assert [float(r["test/cam_ssim"]) for r in _read_csv(out / "report.csv")] == [0.5 + i / 100 for i in range(8)]
    assert "tradeoff_accuracy_vs_stability.png" in paths["figures"]


def test_tradeoff_points_are_ordered_by_numeric_value():
    labels = ["objective.lambda_expl=1.0", "objective.lambda_expl=0.1", "objective.lambda_expl=0.0"]
    assert sorted(labels, key=sweep_order) == labels[::-1]
    assert sweep_order("model=resnet50") > sweep_order("objective.lambda_expl=3")


def test_report_logs_table_to_wandb_offline(sweep_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "report"
    build_report(_cfg(sweep_dir, out, "wandb.mode=offline"))
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1  # one group: the sweep's
    assert any(p.suffix == ".wandb" for p in runs[0].iterdir())


def test_several_run_dirs_and_static_profile_fallback(tmp_path):
    """Runs without a recorded profile get params/FLOPs from their exported model."""
    dirs = []
    for name in ("a", "b"):
        model = create_model("test_efficientnet", 3, resolution=32)
        run_dir = tmp_path / name
        meta = model_metadata(model, config={"model": {"_target_": "trixai.models.create_model",
                                                         "name": "test_efficientnet", "resolution": 32}}, seed=0)
        export_model(model, run_dir, meta)
        (run_dir / "metrics.json").write_text(json.dumps({"test": {"acc": 0.5, "rob_acc": 0.25}}))
        dirs.append(str(run_dir))
    out = tmp_path / "report"
    paths = build_report(_cfg(f"[{','.join(dirs)}]", out))
    rows = _read_csv(out / "report.csv")
    assert [r["run"] for r in rows] == ["a", "b"]
    expected = count_flops(create_model("test_efficientnet", 3), torch.rand(1, 3, 32, 32))
    assert float(rows[0]["profile/flops"]) == expected
    assert set(paths["figures"]) == {"pareto_robust_acc_vs_flops.png"}  # no latency, no explanations


def test_bad_dir_is_a_clear_error(tmp_path):
    with pytest.raises(TrixaiError, match="no run directories"):
        build_report(_cfg(tmp_path, tmp_path / "out"))
    with pytest.raises(TrixaiError, match="no such directory"):
        build_report(_cfg(tmp_path / "missing", tmp_path / "out"))
