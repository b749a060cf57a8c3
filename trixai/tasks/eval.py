"""``trixai-eval``: the robustness and corruption suites on a trained model and its recorded (or a chosen) split."""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from trixai.core.errors import TrixaiError
from trixai.core.settings import check_groups
from trixai.render.html import try_write_run_report, write_run_report
from trixai.suites.certification import CertificationSuite
from trixai.suites.robustness import RobustnessSuite
from trixai.suites.runner import SuiteRun
from trixai.tasks.context import SPLITS, open_task
from trixai.tasks.loggers import finish_loggers, log_reports
from trixai.tasks.provenance import config_record, write_provenance
from trixai.tasks.quiet import quiet_third_party
from trixai.tasks.sharding import check_shared_folder, close_distributed, distributed, run_task_suites, shard_of

log = logging.getLogger(__name__)
#: The config groups whose settings a shard's fingerprint holds.
GROUPS = ("robustness", "corruptions", "certify")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Load the model and data, run the suites, write the reports; returns the flat metrics."""
    quiet_third_party()
    check_groups(cfg)
    if cfg.split not in SPLITS:
        raise TrixaiError(f"split={cfg.split!r} is not one of {list(SPLITS)}")
    if cfg.robustness is None and cfg.get("corruptions") is None and cfg.get("certify") is None:
        raise TrixaiError("robustness=none, no corruptions and no certification: trixai-eval needs a suite "
                          "(robustness=cpu|full, corruptions=auto|dermoscopy|chest_xray|generic, certify=smoothing)")
    shard = shard_of(cfg)  # first: a bad shard config fails before the model loads
    sharded = distributed()
    try:
        context = open_task(cfg, "eval")
        check_shared_folder(cfg, shard, context.run_dir)
        robust = cfg.robustness is not None
        suite = RobustnessSuite.from_config(OmegaConf.to_container(cfg.robustness, resolve=True) if robust else None,
                                            seed=int(cfg.seed))
        out_dir = context.out_dir
        source = {"model": context.origin.get("file") or str(cfg.get("ckpt")),
                  "timm_name": context.meta.get("timm_name"), "dataset": (context.data_cfg or {}).get("_target_"),
                  "split": cfg.split, "git": (context.meta.get("git") or {}).get("commit")}
        try:
            run = SuiteRun(context.model, robustness=suite, report_robustness=robust, device=context.device,
                           partial_dir=out_dir / "partial" if robust else None,
                           channels_last=bool(cfg.channels_last), corruptions=context.corruption_suite(cfg),
                           certification=CertificationSuite.from_config(
                               OmegaConf.to_container(cfg.certify, resolve=True) if cfg.get("certify") is not None
                               else None, seed=int(cfg.seed)),
                           block=int(cfg.block_size), data={"dataset": context.data_cfg, "split": str(cfg.split)})
            reports = run_task_suites(run, context, cfg, program="trixai-eval", groups=GROUPS, split=str(cfg.split),
                                      batch_size=int(cfg.batch_size), out_dir=out_dir, source=source,
                                      progress=bool(cfg.progress))
            if reports is not None:
                log_reports(context.loggers, reports, out_dir)
        finally:
            finish_loggers(context.loggers)
    finally:
        if sharded:
            close_distributed()
    if reports is None:  # a shard whose merge is another process's
        return {}
    write_provenance(out_dir, "eval", config=config_record(cfg, context.data_cfg), model=context.origin,
                     dataset=(context.data_cfg or {}).get("_target_"))
    print(f"reports in {out_dir}; all results: {write_run_report(out_dir)}")
    if context.run_dir is not None:
        try_write_run_report(context.run_dir)  # the run's page links this evaluation
    return reports.flat()
