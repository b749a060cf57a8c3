"""Weights & Biases logging that never prompts or hangs (offline without an API key or a reachable server): the
training runs' Lightning logger and the report's runs."""

from __future__ import annotations

import logging
import netrc
import os
import socket
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, WandbLogger

from trixai.core.reports import RobustnessReport
from trixai.render import FILES

log = logging.getLogger(__name__)
MODES = ("auto", "online", "offline", "disabled")


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def _reachable(host: str, port: int = 443, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_mode(mode: str) -> str:
    """``auto``: the WANDB_MODE variable if set, else online with an API key and a reachable server, else offline."""
    if mode not in MODES:
        raise ValueError(f"logger.wandb.mode={mode!r} is not one of {list(MODES)}")
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1].split("/")[0].split(":")[0]
    if _has_api_key() and _reachable(host):
        return "online"
    return "offline"


def wandb_logger(*, project: str, name: str, save_dir: str, mode: str = "auto", group: str | None = None,
                 tags: list[str] | None = None, **kwargs) -> WandbLogger:
    """A Lightning ``WandbLogger`` whose files live in ``save_dir/wandb``; offline mode decided by :func:`resolve_mode`."""
    resolved = resolve_mode(mode)
    if resolved == "offline":
        log.info("W&B offline (no API key or server unreachable): sync later with `wandb sync %s/wandb`", save_dir)
    os.environ.setdefault("WANDB_SILENT", "true")
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    logger = WandbLogger(project=project, name=name, save_dir=save_dir, mode=resolved, group=group,
                         tags=list(tags or []), **kwargs)
    # Lightning always passes `anonymous` (None here) to wandb.init, which warns that the setting has no effect
    logger._wandb_init.pop("anonymous", None)
    return logger


def log_reports(loggers: Sequence[Logger], reports, out_dir: Path) -> None:
    """The suites' flat metrics to every logger; to W&B also each report's figures, the robust accuracy table and
    the JSON reports as run files (``reports``: a :class:`~trixai.suites.runner.SuiteReports`)."""
    flat = {k: v for k, v in reports.flat().items() if v is not None}
    for logger in loggers:
        logger.log_metrics(flat)
        if not isinstance(logger, WandbLogger):
            continue
        for report in reports.reports:
            for figure in getattr(report, "figures", []):
                logger.log_image(key=f"figures/{Path(figure).stem}", images=[str(out_dir / figure)])
            if isinstance(report, RobustnessReport):
                rows = [[r.name, r.label, r.get("accuracy")] for r in report.entries()]
                logger.log_table(key="robustness/table", columns=["attack", "eps", "accuracy"], data=rows)
            logger.experiment.save(str(out_dir / FILES[type(report)]), base_path=str(out_dir), policy="now")


def finish_loggers(loggers: Sequence[Logger]) -> None:
    """End the W&B runs (one per command; a multirun's next job starts its own)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()


def log_report(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], figures: Mapping[str, Path], *,
               project: str, mode: str, out_dir: Path) -> None:
    """``trixai-report``'s table (``columns`` of ``rows``) and figures: one W&B run per sweep group (the training
    runs' group when recorded, else the sweep), its files in ``out_dir/wandb``; nothing when ``mode`` is disabled."""
    if mode == "disabled":
        return
    import wandb  # noqa: PLC0415 - heavy import, only when logging

    resolved = resolve_mode(mode)
    os.environ.setdefault("WANDB_SILENT", "true")
    by_group: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_group[row["wandb_group"] or row["sweep"]].append(row)
    images = {name.removesuffix(".png"): str(path) for name, path in figures.items()}
    for group, members in by_group.items():
        run = wandb.init(project=project, group=group, job_type="report", name=f"report-{group}", dir=str(out_dir),
                         mode=resolved, reinit="finish_previous")
        try:
            table = wandb.Table(columns=list(columns), data=[[m.get(c) for c in columns] for m in members])
            run.log({"report": table, **{name: wandb.Image(path) for name, path in images.items()}})
        finally:
            run.finish()
