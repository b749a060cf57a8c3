"""Evaluation that scales out: results independent of the batch size and of the shards, merged shards equal to one
process, resume after a crash, and merges refused with the culprit named."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trixai.core.errors import TrixaiError
from trixai.core.records import Records
from trixai.data.synthetic import SyntheticLesions
from trixai.models import create_model
from trixai.models.export import export_model, model_metadata
from trixai.suites.runner import ProgressLines
from trixai.suites.shards import Shard, claim_merge, differences, finish_shard, unfinished
from trixai.tasks.eval import evaluate
from trixai.tasks.explain import run as explain

DATASET = {"_target_": "trixai.data.synthetic.SyntheticLesions", "image_size": 16, "n_train": 7, "n_val": 7,
           "n_test": 40, "seed": 0, "min_per_class": 1, "cache_dir": None}
#: Random starts everywhere (PGD, APGD, Square, FAB restarts) and corruption noise: draws that must not move.
EVAL = ["robustness=cpu", "robustness.attacks=[clean,pgd2,autoattack]", "robustness.eps=[8/255]",
        "+robustness.attack_settings.autoattack={steps: 2, targets: 1, queries: 4, version: rand, eot_iter: 2}",
        "+robustness.attack_settings.pgd2={random_start: true}", "robustness.masking.points=5",
        "robustness.masking.steps=2", "corruptions=generic", "corruptions.severities=[2]",
        "corruptions.only=[gaussian_noise,contrast]", "logger=none", "progress=false", "block_size=8"]
EXPLAIN = ["explanation.max_points=12", "explanation.batch_size=6", "explanation.metrics.steps=3",
           "explanation.metrics.sanity_samples=3", "explanation.metrics.manipulation.points=4",
           "explanation.metrics.manipulation.steps=2", "attack.steps=1", "block_size=8", "corruptions=generic",
           "corruptions.severities=[2]", "corruptions.only=[gaussian_noise]", "corruptions.explanation_severity=2"]
#: Report fields that hold times, where the files went or how the work ran: everything else must be equal.
VOLATILE = {"seconds", "images_per_s", "execution", "resumed_batches", "source", "figures", "seconds_per_image"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    bundle = SyntheticLesions(**{k: v for k, v in DATASET.items() if k != "_target_"}).load()
    torch.manual_seed(0)
    model = create_model("test_efficientnet", 7, class_names=list(bundle.info.class_names), resolution=16).eval()
    path = tmp_path_factory.mktemp("run")
    config = {"model": {"_target_": "trixai.models.create_model", "name": "test_efficientnet", "resolution": 16},
              "dataset": DATASET}
    export_model(model, path, model_metadata(model, config=config, seed=0))
    return path


def _stable(value):
    """A report without its volatile fields."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _reports(folder: Path, names=("robustness.json", "corruptions.json")) -> dict:
    return {name: _stable(json.loads((folder / name).read_text())) for name in names}


def _eval(compose_cfg, run_dir, name, *overrides):
    return evaluate(compose_cfg(f"ckpt={run_dir}", f"name={name}", *EVAL, *overrides, config_name="eval", tiny=False))


def test_batch_size_changes_no_number(compose_cfg, run_dir):
    _eval(compose_cfg, run_dir, "b16", "batch_size=16")
    _eval(compose_cfg, run_dir, "b5", "batch_size=5")  # batches straddle the blocks of 8 points
    _eval(compose_cfg, run_dir, "b64", "batch_size=64")  # the whole split in one batch
    one = _reports(run_dir / "evals" / "b16")
    assert one == _reports(run_dir / "evals" / "b5") == _reports(run_dir / "evals" / "b64")
    assert one["robustness.json"]["n_points"] == 40 and "autoattack" in one["robustness.json"]["results"]


def test_two_shards_merge_into_the_single_process_reports(compose_cfg, run_dir):
    _eval(compose_cfg, run_dir, "single", "batch_size=16")
    assert _eval(compose_cfg, run_dir, "sharded", "batch_size=7", "shard.count=2", "shard.index=1") == {}
    out = run_dir / "evals" / "sharded"
    assert not (out / "robustness.json").exists() and (out / "shards" / "1-of-2" / "done.json").exists()
    _eval(compose_cfg, run_dir, "sharded", "batch_size=16", "shard.count=2", "shard.index=0")  # the last merges
    assert _reports(out) == _reports(run_dir / "evals" / "single")
    merged = json.loads((out / "robustness.json").read_text())
    assert merged["execution"]["workers"] == 2 and [s["points"] for s in merged["execution"]["shards"]] == [24, 16]
    single_points = (run_dir / "evals" / "single" / "points.csv").read_text().splitlines()
    assert [row.split(",")[:3] for row in (out / "points.csv").read_text().splitlines()] == \
        [row.split(",")[:3] for row in single_points]


def test_explanations_of_two_shards_equal_one_process(compose_cfg, run_dir):
    def cfg(name, *overrides):
        return compose_cfg(f"ckpt={run_dir}", f"name={name}", *EXPLAIN, *overrides, config_name="explain", tiny=False)

    explain(cfg("x-single"))
    explain(cfg("x-sharded", "shard.count=3", "shard.index=2", "shard.merge=false"))
    explain(cfg("x-sharded", "shard.count=3", "shard.index=0", "shard.merge=false"))
    explain(cfg("x-sharded", "shard.count=3", "shard.index=1", "shard.merge=false"))
    assert not (run_dir / "evals" / "x-sharded" / "explanations.json").exists()  # merge=false: nobody merged
    explain(cfg("x-sharded", "shard.count=3", "shard.merge=true"))
    names = ("explanations.json", "corruptions.json")
    single, sharded = _reports(run_dir / "evals" / "x-single", names), _reports(run_dir / "evals" / "x-sharded", names)
    assert single == sharded
    assert single["explanations.json"]["n_samples"] == 12 and "manipulation_topk_intersection" in \
        single["explanations.json"]["metrics"]


def test_a_merge_names_the_missing_shard_and_the_mismatched_settings(compose_cfg, run_dir):
    _eval(compose_cfg, run_dir, "broken", "shard.count=3", "shard.index=0")
    with pytest.raises(TrixaiError, match=r"shard 1 of 3 .* never started; rerun it: trixai-eval .*"
                                          r"shard\.count=3 shard\.index=1") as missing:
        _eval(compose_cfg, run_dir, "broken", "shard.count=3", "shard.merge=true")
    assert "shard 2 of 3" in str(missing.value)
    _eval(compose_cfg, run_dir, "broken", "shard.count=3", "shard.index=1")
    _eval(compose_cfg, run_dir, "broken", "shard.count=3", "shard.index=2",
          "seed=1", "shard.merge=false")
    with pytest.raises(TrixaiError, match=r"shard 2 of 3 .* belongs to another evaluation: its seed differ"):
        _eval(compose_cfg, run_dir, "broken", "shard.count=3", "shard.merge=true")


def test_shard_config_errors_name_the_key(compose_cfg, run_dir):
    with pytest.raises(TrixaiError, match=r"shard.index=2: expected 0..1"):
        _eval(compose_cfg, run_dir, "bad", "shard.count=2", "shard.index=2")
    with pytest.raises(TrixaiError, match="shard.merge='maybe': allowed are auto, true, false"):
        Shard(2, 0, "maybe")
    with pytest.raises(TrixaiError, match="shard.merge=true needs the number of shards to merge: shard.count"):
        _eval(compose_cfg, run_dir, "bad", "shard.merge=true")
    cfg = compose_cfg(f"ckpt={run_dir}", *EVAL, "shard.count=2", config_name="eval", tiny=False)
    with pytest.raises(TrixaiError, match="name the evaluation on the command line"):
        evaluate(cfg)


def test_a_finished_shard_of_an_earlier_evaluation_does_not_count_as_finished(tmp_path):
    for i, seed in ((0, 0), (1, 1)):  # shard 1 was left by an evaluation with another seed
        finish_shard(Shard(2, i).folder(tmp_path), {}, {"seed": seed}, started=0.0, points=4)
    assert unfinished(tmp_path, 2) == [] and unfinished(tmp_path, 2, {"seed": 0}) == [1]
    assert not claim_merge(tmp_path, 2, {"seed": 0})
    finish_shard(Shard(2, 1).folder(tmp_path), {}, {"seed": 0}, started=0.0, points=4)
    assert claim_merge(tmp_path, 2, {"seed": 0}) and not claim_merge(tmp_path, 2, {"seed": 0})  # one claim per set


def test_progress_lines_at_every_tenth_and_the_last_once(caplog):
    progress = ProgressLines("shard 0-of-2", 100, every=1e9)
    with caplog.at_level("INFO", logger="trixai.suites.runner"):
        for points in (4, 4, 4, 30, 58):  # 4, 8, 12, 42, 100 points: the tenths 1, 4 and 10 are crossed
            progress.advance(points)
        progress.close()
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(",")[0] for line in lines] == [
        "shard 0-of-2: 12/100 points (12 %)", "shard 0-of-2: 42/100 points (42 %)", "shard 0-of-2: 100/100 points (100 %)"]
    unfinished_job = ProgressLines("job", 10, every=1e9)
    with caplog.at_level("INFO", logger="trixai.suites.runner"):
        caplog.clear()
        unfinished_job.advance(15)  # more points than announced: logged once, then closed without a repeat
        unfinished_job.advance(0)
        unfinished_job.close()
    assert len(caplog.records) == 1


def test_shards_deal_whole_blocks_round_robin():
    assert Shard(2, 0).indices(20, 4).tolist() == [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19]
    assert Shard(2, 1).indices(20, 4).tolist() == [4, 5, 6, 7, 12, 13, 14, 15]
    assert differences({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 2, "d": 4}}) == ["b.d"]


def test_a_crashed_evaluation_reuses_its_finished_blocks(compose_cfg, run_dir, caplog, monkeypatch):
    """An evaluation dies after its second block; the rerun reuses those blocks and ends where an uninterrupted
    run does (kill -9 of a real process: the slow test below)."""
    import trixai.suites.runner as runner

    original, calls = runner.SuiteRun.flush, {"n": 0}

    def dying_flush(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # mid-run, after two blocks were saved
        return original(self)

    monkeypatch.setattr(runner.SuiteRun, "flush", dying_flush)
    with pytest.raises(KeyboardInterrupt):
        _eval(compose_cfg, run_dir, "crash", "batch_size=8", "shard.count=2", "shard.index=0", "shard.merge=false")
    monkeypatch.setattr(runner.SuiteRun, "flush", original)
    with caplog.at_level("INFO"):
        _eval(compose_cfg, run_dir, "crash", "batch_size=8", "shard.count=2", "shard.index=0", "shard.merge=false")
    assert "(2 blocks reused from an earlier run)" in caplog.text
    _eval(compose_cfg, run_dir, "crash", "batch_size=8", "shard.count=2", "shard.index=1")
    _eval(compose_cfg, run_dir, "whole", "batch_size=8")
    assert _reports(run_dir / "evals" / "crash") == _reports(run_dir / "evals" / "whole")
    # the fragile images of the reused blocks were saved with them: the same figure's points and images
    fragile = [Records.load(run_dir / "evals" / name / "records" / "robustness_fragile.safetensors")
               for name in ("crash", "whole")]
    assert torch.equal(fragile[0].index, fragile[1].index)
    assert any(int(i) // 8 in (0, 2) for i in fragile[0].index)  # kept from a block the rerun reused
    assert torch.equal(fragile[0]["adversarial"], fragile[1]["adversarial"])


#: One thread per worker everywhere: float sums on the CPU depend on the thread count (joblib's workers get one).
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def _cli(module: str, *args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", f"trixai.cli.{module}", *args], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _torchrun(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                           f"trixai.cli.{module}", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("module", ["eval", "explain"])
def test_joblib_launcher_and_torchrun_shards_equal_one_process(run_dir, tmp_path, module):
    settings = EVAL if module == "eval" else EXPLAIN
    names = ("robustness.json", "corruptions.json") if module == "eval" else ("explanations.json", "corruptions.json")
    common = [f"ckpt={run_dir}", *settings, f"hydra.run.dir={tmp_path}/h", f"hydra.sweep.dir={tmp_path}/m"]
    single = _cli(module, *common, f"name={module}-single", cwd=tmp_path)
    assert single.wait(600) == 0, single.stdout.read()[-3000:]
    launched = _cli(module, "-m", *common, f"name={module}-joblib", "shard.count=2", "shard.index=0,1",
                    "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", cwd=tmp_path)
    assert launched.wait(600) == 0, launched.stdout.read()[-3000:]
    torchrun = _torchrun(module, *common, f"name={module}-torchrun", cwd=tmp_path)
    assert torchrun.returncode == 0, (torchrun.stdout + torchrun.stderr)[-3000:]
    evals = run_dir / "evals"
    reference = _reports(evals / f"{module}-single", names)
    assert _reports(evals / f"{module}-joblib", names) == reference
    assert _reports(evals / f"{module}-torchrun", names) == reference
    for way in ("joblib", "torchrun"):
        assert sorted(p.name for p in (evals / f"{module}-{way}" / "shards").glob("*-of-2")) == ["0-of-2", "1-of-2"]


@pytest.mark.slow
def test_kill_9_of_a_shard_then_rerun_equals_an_uninterrupted_run(run_dir, tmp_path):
    common = [f"ckpt={run_dir}", *EVAL, "batch_size=8", f"hydra.run.dir={tmp_path}/h",
              "robustness.attack_settings.autoattack.steps=40"]  # slow enough to be killed mid-run
    shard_0 = [*common, "name=killed", "shard.count=2", "shard.index=0", "shard.merge=false"]
    partial = run_dir / "evals" / "killed" / "partial"
    shard = _cli("eval", *shard_0, cwd=tmp_path)
    deadline = time.monotonic() + 300
    while not list(partial.glob("*/autoattack*_b000000.pt")) and shard.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert shard.poll() is None, shard.stdout.read()[-3000:]
    os.kill(shard.pid, signal.SIGKILL)
    shard.wait()
    saved = len(list(partial.glob("*/clean_b*.pt")))
    assert 1 <= saved < 3  # shard 0 holds blocks 0, 2 and 4 of the 40 points
    rerun = _cli("eval", *shard_0, cwd=tmp_path)
    output = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, output[-3000:]
    assert f"({saved} blocks reused from an earlier run)" in output
    other = _cli("eval", *common, "name=killed", "shard.count=2", "shard.index=1", cwd=tmp_path)  # merges
    assert other.wait(600) == 0, other.stdout.read()[-3000:]
    whole = _cli("eval", *common, "name=whole-killed", cwd=tmp_path)
    assert whole.wait(600) == 0, whole.stdout.read()[-3000:]
    assert _reports(run_dir / "evals" / "killed") == _reports(run_dir / "evals" / "whole-killed")
