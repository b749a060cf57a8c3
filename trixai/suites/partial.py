"""Resumable evaluation: per-batch results saved atomically, reused by a rerun with the same fingerprint."""

from __future__ import annotations

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
    """A folder of ``<key>.pt`` files plus a manifest holding the fingerprint of the evaluation.

    A different fingerprint (other model weights, data or settings) discards the folder's old results.
    ``directory=None`` keeps nothing (every lookup misses).
    """

    def __init__(self, directory: str | Path | None, fingerprint: dict) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.reused = 0
        if self.directory is None:
            return
        manifest = self.directory / MANIFEST
        if manifest.exists() and json.loads(manifest.read_text()) != fingerprint:
            log.warning("%s: partial results from another evaluation (fingerprint differs); starting over",
                        self.directory)
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(manifest, fingerprint)

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.pt"

    def load(self, key: str) -> dict | None:
        if self.directory is None or not self._path(key).exists():
            return None
        self.reused += 1
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
