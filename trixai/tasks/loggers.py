"""Weights & Biases logger that never prompts or hangs: offline without an API key or a reachable server."""

from __future__ import annotations

import logging
import netrc
import os
import socket
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger

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
    return WandbLogger(project=project, name=name, save_dir=save_dir, mode=resolved, group=group,
                       tags=list(tags or []), **kwargs)
