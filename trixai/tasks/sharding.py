"""Sharded suites for ``trixai-eval`` and ``trixai-explain``: one shard per Hydra job (``-m shard.index=0,1,...``
through any launcher: joblib, submitit/SLURM) or per torchrun process, each writing its records under the output
folder; the last shard to finish (or ``shard.merge=true``, or rank zero under torchrun) merges them into the reports
of a single process. See docs/scaling.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from trixai.core.errors import TrixaiError
from trixai.suites.robustness import model_fingerprint
from trixai.suites.runner import SuiteReports, SuiteRun, run_suites
from trixai.suites.shards import (
    Shard,
    ShardView,
    claim_merge,
    execution,
    finish_shard,
    load_shards,
    start_shard,
    unfinished,
)
from trixai.tasks.context import TaskContext, check_first_batch

log = logging.getLogger(__name__)


def distributed() -> bool:
    """Whether this process is one of several started by torchrun (a process group is opened: gloo on CPU, NCCL
    on CUDA)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        if torch.cuda.is_available():  # each process its GPU, before NCCL binds the default one
            device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return True


def close_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard_of(cfg: DictConfig) -> Shard:
    """The ``shard`` config (each torchrun process is a shard), checked."""
    return Shard.from_config(OmegaConf.to_container(cfg.shard, resolve=True) if cfg.get("shard") else None)


def _overrides() -> list[tuple[str, str]]:
    """This Hydra job's command-line overrides as (key without ``+``/``~``, the override); none outside a job."""
    if not HydraConfig.initialized():
        return []
    return [(o.split("=", 1)[0].lstrip("+~"), o) for o in HydraConfig.get().overrides.task]


def given(key: str) -> bool:
    """Whether ``key`` was set on the command line (False outside a Hydra job)."""
    return any(name == key for name, _ in _overrides())


def check_shared_folder(cfg: DictConfig, shard: Shard, run_dir: Path | None) -> None:
    """Shards must write into one folder: a trixai run's shards need a ``name`` given on the command line (the
    default name holds the time each job starts), other models' an ``out_dir``."""
    if shard.count == 1 and shard.merge != "true" or dist.is_initialized():
        return
    if run_dir is not None and not given("name") and not cfg.get("out_dir"):
        raise TrixaiError(f"shard.count={shard.count}: name the evaluation on the command line (name=<name>), so "
                          "every shard and the merge write into the same folder <run>/evals/<name>")
    if run_dir is None and not cfg.get("out_dir"):
        raise TrixaiError(f"shard.count={shard.count}: give out_dir=<folder> shared by every shard and the merge")


def rerun_command(program: str, shard: Shard) -> Callable[[int], str]:
    """The command that (re)runs shard ``i`` of this evaluation: this command's overrides with that index."""
    shard_keys = ("shard.index", "shard.count", "shard.merge")
    kept = [o for name, o in _overrides() if name not in shard_keys] if HydraConfig.initialized() else ["..."]
    return lambda i: " ".join([program, *kept, f"shard.count={shard.count}", f"shard.index={i}"])


def fingerprint(context: TaskContext, cfg: DictConfig, split: str, points: int, block: int, shard: Shard,
                groups: tuple[str, ...]) -> dict:
    """What makes shards parts of one evaluation: the weights, the data, the split, the suites' settings, the
    seed, the block size and the shard count."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    return {"model": model_fingerprint(context.model), "data": context.data_cfg or {}, "split": split,
            "points": int(points), "block_size": int(block), "seed": int(cfg.seed), "shards": shard.count,
            "settings": {g: plain.get(g) for g in groups}}


def shard_points(dataset, shard: Shard, block: int, batch_size: int) -> DataLoader:
    """The shard's points of ``dataset`` in order (whole blocks of ``block`` points), each batch carrying the points'
    indices in the dataset."""
    return DataLoader(ShardView(dataset, shard.indices(len(dataset), block)), batch_size=batch_size, shuffle=False,
                      num_workers=0)


def shard_loader(context: TaskContext, split: str, batch_size: int, shard: Shard, block: int) -> DataLoader:
    """The shard's points of the split, the first batch checked against the model."""
    loader = shard_points(context.bundle.split(split), shard, block, batch_size)
    if len(loader.dataset):
        check_first_batch(context.model, next(iter(loader)), f"shard {shard.label} of the {split} split")
    return loader


def run_task_suites(run: SuiteRun, context: TaskContext, cfg: DictConfig, *, program: str, groups: tuple[str, ...],
                    split: str, batch_size: int, out_dir: Path, source: Mapping, progress: bool
                    ) -> SuiteReports | None:
    """The suites of ``trixai-eval``/``trixai-explain`` over the split: in this process, or this process's shard
    (``shard.count`` > 1, or a torchrun process), or only the merge (``shard.merge=true``). Returns the reports
    when this process wrote them, None when a shard finished and others are still to come."""
    shard, block = shard_of(cfg), int(cfg.block_size)
    if shard.count == 1 and shard.merge != "true":
        return run_suites(run, context.loader(split, batch_size), out_dir, progress=progress, source=source)
    points = len(context.bundle.split(split))
    print_ = fingerprint(context, cfg, split, points, block, shard, groups)
    rerun = rerun_command(program, shard)
    if shard.merge == "true":
        if dist.is_initialized():
            raise TrixaiError("shard.merge=true merges shards run separately; under torchrun rank zero merges by itself")
        if shard.count == 1:
            raise TrixaiError("shard.merge=true needs the number of shards to merge: shard.count=<N>")
        return merge(run, out_dir, shard.count, print_, rerun, source)
    loader = shard_loader(context, split, batch_size, shard, block)
    return shard_then_merge(run, loader, shard, out_dir, print_, rerun, source, progress)


def shard_then_merge(run: SuiteRun, loader: DataLoader, shard: Shard, out_dir: Path, print_: Mapping,
                     rerun: Callable[[int], str], source: Mapping, progress: bool) -> SuiteReports | None:
    """Run the suites on this shard's ``loader``, save its records, and merge when this process is the one to: rank
    zero of a process group (torchrun, Lightning DDP) once every rank is done, else the last shard to finish
    (``shard.merge=auto``). Returns the merged reports, or None."""
    folder = shard.folder(out_dir)
    started = start_shard(folder, print_, rerun(shard.index))
    run_suites(run, loader, None, progress=progress, label=f"shard {shard.label}")
    done = finish_shard(folder, run.parts(), print_, started=started, points=len(loader.dataset))
    log.info("shard %s: %d points in %.1f s (%d blocks reused from an earlier run)", shard.label, done["points"],
             done["seconds"], run.robust.reused_blocks)
    if dist.is_initialized():
        dist.barrier()
        if dist.get_rank() == 0 and shard.merge != "false":
            return merge(run, out_dir, shard.count, print_, rerun, source)
        return None
    if shard.merge == "auto" and claim_merge(out_dir, shard.count, print_):
        return merge(run, out_dir, shard.count, print_, rerun, source)
    waiting = unfinished(out_dir, shard.count, print_)
    log.info("shard %s finished; %s", shard.label,
             f"waiting for shards {waiting} (the last to finish merges)" if waiting else "another shard merges")
    return None


def merge(run: SuiteRun, out_dir: Path, count: int, print_: Mapping, rerun, source: Mapping) -> SuiteReports:
    """The reports of every shard's records, as one process would write them."""
    parts, done = load_shards(out_dir, count, print_, rerun)
    run.restore(parts)
    log.info("merging %d shards into %s", count, out_dir)
    return run.finish(out_dir, source=source, execution=execution(done, run.block))
