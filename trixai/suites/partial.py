"""Resumable evaluation: per-block results saved atomically, reused by a rerun with the same fingerprint."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from trixai.core.files import atomic_write_json

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


class PartialResults:
    """A folder of ``<key>.pt`` files plus a manifest holding the fingerprint of the evaluation, in a subfolder of
    ``directory`` named after the fingerprint: processes of one evaluation (shards) share it, and results of
    another evaluation (other model weights, data or settings) are never read; their folders are removed.
    ``directory=None`` keeps nothing (every lookup misses).
    """

    def __init__(self, directory: str | Path | None, fingerprint: dict) -> None:
        self.reused = 0
        if directory is None:
            self.directory = None
            return
        blob = json.dumps(fingerprint, sort_keys=True, default=str).encode()
        self.directory = Path(directory) / hashlib.sha256(blob).hexdigest()[:16]
        stale = [p.parent for p in Path(directory).glob(f"*/{MANIFEST}") if p.parent != self.directory]
        if stale:
            log.warning("%s: partial results of another evaluation (fingerprint differs) removed", directory)
            for path in stale:
                shutil.rmtree(path, ignore_errors=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.directory / MANIFEST, fingerprint)

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.pt"

    def load(self, key: str, *, counted: bool = True) -> dict | None:
        """The saved payload of ``key`` (None when absent); ``counted``: a result reused (not an attachment)."""
        if self.directory is None or not self._path(key).exists():
            return None
        self.reused += int(counted)
        return torch.load(self._path(key), map_location="cpu", weights_only=True)

    def save(self, key: str, payload: dict) -> None:
        """Write through a temporary file and a rename: an interrupted run never leaves a torn file."""
        if self.directory is None:
            return
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{key}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(payload, handle)
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
