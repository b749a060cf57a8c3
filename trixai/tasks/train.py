"""``trixai-train``: fit, test on clean and attacked data, export the model and print the result table."""

from __future__ import annotations

import gc
import inspect
from pathlib import Path

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from trixai.core.errors import TrixaiError
from trixai.core.files import atomic_write_json
from trixai.core.metrics import primary_metric
from trixai.core.settings import check_groups
from trixai.data.datamodule import TrixDataModule
from trixai.models.export import export_model, model_metadata
from trixai.render.console import print_results
from trixai.render.html import try_write_run_report
from trixai.robust.corruptions.augment import CorruptionAugment
from trixai.suites.corruption import CorruptionSuite
from trixai.suites.robustness import RobustnessSuite, model_fingerprint
from trixai.suites.runner import SuiteReports, SuiteRun
from trixai.suites.shards import Shard
from trixai.tasks.context import dataset_name, split_targets
from trixai.tasks.loggers import finish_loggers, log_reports
from trixai.tasks.quiet import quiet_third_party
from trixai.tasks.sharding import shard_points, shard_then_merge
from trixai.training.collapse import CollapseGuard
from trixai.training.module import TrixModule
from trixai.training.profiling import profile_model


def build_module(cfg: DictConfig, datamodule: TrixDataModule) -> TrixModule:
    """Model, objective, adversaries and optimiser, all from config; sizes and class order from the data."""
    info = datamodule.info
    model = instantiate(cfg.model, num_classes=info.num_classes, class_names=list(info.class_names),
                        task=info.task, in_chans=info.in_chans)
    return TrixModule(
        model, _objective(cfg),
        attack=instantiate(cfg.attack) if cfg.attack else None,
        eval_attack=instantiate(cfg.eval_attack) if cfg.eval_attack else None,
        optimizer=instantiate(cfg.optimizer), scheduler=instantiate(cfg.scheduler),
        class_weights=datamodule.class_weights(),
        clean_warmup_epochs=cfg.clean_warmup_epochs, warmup_class_weights=cfg.warmup_class_weighting,
        cam_ssim_layer=cfg.cam_ssim_eval, channels_last=cfg.channels_last, eval_seed=cfg.seed,
        corruption_augment=CorruptionAugment.from_config(datamodule.corruption_augment,
                                                         dataset=_dataset_name(cfg)),
    )


def _objective(cfg: DictConfig):
    """The ``objective`` group's target; a key it does not take (e.g. an experiment's ``objective.adversary_mode``
    under an objective without an adversary) is named, with how to drop it."""
    target = get_class(cfg.objective._target_)
    accepted = set(inspect.signature(target).parameters)
    unknown = [key for key in cfg.objective if not str(key).startswith("_") and key not in accepted]
    if unknown:
        raise TrixaiError(f"objective={getattr(target, 'name', target.__name__)} takes no objective.{unknown[0]} "
                          f"(its keys: {sorted(accepted) or 'none'}); an experiment may set it for another objective: "
                          f"drop it with ~objective.{unknown[0]}")
    return instantiate(cfg.objective)


def _dataset_name(cfg: DictConfig) -> str | None:
    """The name that picks the dataset's corruption set (``set: auto``)."""
    return dataset_name(OmegaConf.to_container(cfg.dataset, resolve=True))


def _auto_monitor(cfg: DictConfig, task: str) -> str:
    robust = "rob_" if cfg.eval_attack else ""
    return f"val/{robust}{primary_metric(task)}"


def _scalars(metrics: dict, stage: str) -> dict[str, float]:
    """``stage``'s logged metrics without the stage prefix (``val/rob_acc`` -> ``rob_acc``), for metrics.json."""
    return {k.removeprefix(f"{stage}/"): float(v) for k, v in metrics.items() if k.startswith(f"{stage}/")}


def build_test_suites(cfg: DictConfig, module: TrixModule, dataset: str | None = None, targets=None) -> SuiteRun:
    """The suites of the test phase: every (attack, eps) of ``robustness`` once per test batch (the evaluation
    attack's run gives test/rob_*), the ``corruptions`` suite on every test batch, and the explainer over the first
    test samples with those adversarial and corrupted images. ``dataset``: its name, for ``corruptions=auto``;
    ``targets``: the test split's targets (the explained points are drawn stratified by class)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    suite = RobustnessSuite.from_config(plain.get("robustness"), eval_attack=module.eval_attack, seed=cfg.seed)
    return SuiteRun(module.model, robustness=suite, report_robustness=cfg.robustness is not None,
                    explainer=instantiate(cfg.explainer) if cfg.explainer else None,
                    explanation=plain.get("explanation"), channels_last=cfg.channels_last,
                    corruptions=CorruptionSuite.from_config(plain.get("corruptions"), dataset=dataset, seed=cfg.seed),
                    split_targets=targets, block=int(cfg.block_size))


def _sharded_test_suites(cfg: DictConfig, module: TrixModule, datamodule: TrixDataModule, trainer: L.Trainer,
                         dataset: str | None, targets, run_dir: Path, source: dict) -> SuiteReports | None:
    """Under DDP: each rank runs the suites on its shard of the test split (whole blocks, round-robin) and rank
    zero merges the records into the reports one process would write (returns them on rank zero)."""
    suites = build_test_suites(cfg, module, dataset, targets)
    shard, block = Shard(trainer.world_size, trainer.global_rank, "auto"), int(cfg.block_size)
    test = datamodule.bundle.test
    loader = shard_points(test, shard, block, datamodule.eval_batch_size)
    print_ = {"model": model_fingerprint(module.model), "points": len(test), "block_size": block,
              "shards": shard.count}
    return shard_then_merge(suites, loader, shard, run_dir, print_, lambda i: f"the whole job (rank {i} failed)",
                            source, progress=False)


def train(cfg: DictConfig) -> dict:
    """Run one training job described by ``cfg``; returns the content written to ``metrics.json``."""
    quiet_third_party()
    check_groups(cfg)
    if cfg.threads is not None:
        if not isinstance(cfg.threads, int) or cfg.threads < 1:
            raise TrixaiError(f"threads={cfg.threads!r}: expected a positive integer, or null for torch's default")
        torch.set_num_threads(cfg.threads)
    L.seed_everything(cfg.seed, workers=True)
    datamodule: TrixDataModule = instantiate(cfg.data, dataset=instantiate(cfg.dataset))
    module = build_module(cfg, datamodule)
    with open_dict(cfg):
        cfg.monitor = cfg.monitor or _auto_monitor(cfg, datamodule.info.task)
    run_dir = Path(cfg.paths.output_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    module.meta = model_metadata(module.model, config=config, seed=cfg.seed)

    loggers: list[Logger] = [instantiate(c) for c in (cfg.logger or {}).values()]
    for logger in loggers:
        logger.log_hyperparams(config)
    # `callbacks.<name>=null` drops one callback; `trainer.enable_progress_bar=false` drops the progress bar
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c is not None]
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        val = _scalars(trainer.callback_metrics, "val")
        checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
        score = checkpoint.best_model_score if best else None  # None without a monitor (Lightning's default callback)
        test = {}
        # one process: the test loop drives the suites (each test batch attacked once); under DDP the test loop
        # scores the evaluation attack alone, then every rank runs the suites on its shard and rank zero merges
        single = trainer.world_size == 1
        dataset = _dataset_name(cfg)
        if cfg.test:
            targets = split_targets(datamodule.bundle.test)
            module.test_suites = build_test_suites(cfg, module, dataset, targets) if single else None
            test = trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
        metrics = {
            "val": val,
            "test": _scalars(test, "test") | (module.test_intervals if cfg.test else {}),
            "monitor": cfg.monitor,
            "best_checkpoint": best,
            "best_score": float(score) if score is not None else None,
            "epochs": trainer.current_epoch,
            "eval_attack": None if module.eval_attack is None else {
                "name": module.eval_attack.name, "eps": module.eval_attack.eps, "settings": module.eval_attack.settings()},
            "class_counts": datamodule.bundle.stats.get("class_counts"),
        }
        guard = next((c for c in trainer.callbacks if isinstance(c, CollapseGuard)), None)
        if guard is not None and guard.history:
            metrics["collapse_guard"] = {"history": guard.history, "collapse": guard.collapse}
        if cfg.test:
            source = {"run_dir": str(run_dir)}
            reports = (module.test_suites.finish(run_dir, source=source) if single else
                       _sharded_test_suites(cfg, module, datamodule, trainer, dataset, targets, run_dir, source))
            if trainer.is_global_zero:
                log_reports(loggers, reports, run_dir)
                metrics["extra"] = reports.flat() | reports.intervals()  # <metric>_ci95 beside the suites' metrics
        if trainer.is_global_zero:
            if cfg.profile:
                metrics["profile"] = profile_model(module.model, device=module.device, **cfg.profile)
        module.meta["metrics"] = metrics
        if trainer.is_global_zero:
            export_model(module.model, run_dir, module.meta, fp16=cfg.export_fp16)
            atomic_write_json(run_dir / "metrics.json", metrics)
            print_results(metrics, module.meta)
            if (page := try_write_run_report(run_dir)) is not None:
                print(f"report: {page}")
        return metrics
    finally:
        finish_loggers(loggers)
        del trainer, module
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
