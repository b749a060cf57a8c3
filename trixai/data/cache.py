"""Decode-once image cache: a memory-mapped (N, H, W, C) uint8 array keyed by its sources and preprocessing.

The key is a hash of everything the pixels depend on (each source file's path, size and modification time,
output size, channels, resize policy, decoder version), never of the split, so every run and every sweep job
over the same files and preprocessing reuses one cache. A build is written to a temporary directory and
renamed into place (readers never see a partial cache); a lock file makes concurrent jobs wait for the first
builder instead of decoding twice. Items that fail to decode are recorded in the cache with their message.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from trixai.data.images import BadImageError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
CHUNK = 256

Produce = Callable[[int], tuple[np.ndarray, tuple[int, int]]]


@dataclass
class CachedImages:
    """``images`` (N, H, W, C) uint8 (memory-mapped when cached on disk); ``sizes`` (N, 2) original (height,
    width), 0 for failed items; ``errors`` maps the index of each failed item to its message."""

    images: np.ndarray
    sizes: np.ndarray
    errors: dict[int, str]
    path: Path | None = None


def file_fingerprints(paths: Sequence[Path]) -> list[list]:
    """[path, size, mtime_ns] per file; a missing file gets [path, -1, -1] (it decodes as an error)."""
    prints = []
    for path in paths:
        try:
            stat = os.stat(path)
            prints.append([str(path), stat.st_size, stat.st_mtime_ns])
        except OSError:
            prints.append([str(path), -1, -1])
    return prints


def cache_key(parts: dict) -> str:
    payload = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:20]


@contextmanager
def _locked(lock_path: Path):
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read(path: Path) -> CachedImages:
    meta = json.loads((path / "meta.json").read_text())
    return CachedImages(images=np.load(path / "images.npy", mmap_mode="r"), sizes=np.load(path / "sizes.npy"),
                        errors={int(k): v for k, v in meta["errors"].items()}, path=path)


def _fill(images: np.ndarray, sizes: np.ndarray, produce: Produce, *, num_workers: int, stop_on_error: bool,
          desc: str) -> dict[int, str]:
    """Run ``produce`` for every index into ``images``/``sizes``; returns the failed indices' messages."""
    errors: dict[int, str] = {}

    def work(index: int) -> tuple[int, np.ndarray | None, tuple[int, int], str | None]:
        try:
            array, original = produce(index)
        except BadImageError as error:
            if stop_on_error:
                raise
            return index, None, (0, 0), str(error)
        return index, array, original, None

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    n = len(images)
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress, \
            ThreadPoolExecutor(max(1, num_workers)) as pool:
        task = progress.add_task(desc, total=n)
        for start in range(0, n, CHUNK):
            indices = range(start, min(n, start + CHUNK))
            results = pool.map(work, indices) if num_workers > 0 else map(work, indices)
            for index, array, original, error in results:
                if error is None:
                    images[index] = array
                    sizes[index] = original
                else:
                    images[index] = 0
                    errors[index] = error
            progress.advance(task, len(indices))
    return errors


def cached_images(*, name: str, key: dict, n: int, shape: tuple[int, int, int], produce: Produce,
                  cache_dir: str | Path | None, num_workers: int = 4, stop_on_error: bool = True,
                  desc: str = "decoding images") -> CachedImages:
    """The (n, *shape) uint8 images that ``produce(i) -> (array, original_hw)`` yields, decoded at most once.

    With ``cache_dir`` None the images are decoded into memory and nothing is written. With
    ``stop_on_error`` the first :class:`BadImageError` propagates (and no cache is written); otherwise
    failures are recorded in ``errors`` and cached with the images.
    """
    if cache_dir is None:
        images, sizes = np.zeros((n, *shape), np.uint8), np.zeros((n, 2), np.int32)
        errors = _fill(images, sizes, produce, num_workers=num_workers, stop_on_error=stop_on_error, desc=desc)
        return CachedImages(images, sizes, errors)
    root = Path(cache_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}-{cache_key({'name': name, 'n': n, 'shape': list(shape), **key})}"
    if (path / "meta.json").exists():
        log.info("%s: reusing decoded images %s", name, path)
        return _read(path)
    with _locked(root / f"{path.name}.lock"):
        if (path / "meta.json").exists():  # another job built it while we waited
            return _read(path)
        log.info("%s: decoding %d images once into %s", name, n, path)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{path.name}-"))
        try:
            images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(n, *shape))
            sizes = np.zeros((n, 2), np.int32)
            errors = _fill(images, sizes, produce, num_workers=num_workers, stop_on_error=stop_on_error, desc=desc)
            images.flush()
            del images
            np.save(tmp / "sizes.npy", sizes)
            settings = {k: v for k, v in key.items() if k != "files"}
            meta = {"name": name, "n": n, "shape": list(shape), "settings": settings, "errors": errors}
            (tmp / "meta.json").write_text(json.dumps(meta, default=str))  # written last: marks completeness
            try:
                os.replace(tmp, path)
            except OSError:  # another builder won the race (file systems without flock); keep its copy
                if not (path / "meta.json").exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return _read(path)
