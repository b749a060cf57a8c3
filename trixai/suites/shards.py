"""Shards of a split: whole blocks of points dealt round-robin to N workers, each shard's records saved in its own
folder, and the merge that turns every shard's records into the reports of one process.

Block ``b`` (the points ``b * block_size .. (b + 1) * block_size - 1`` of the split) goes to shard ``b mod N``. Every
random draw of the suites is keyed by (seed, suite, attack, eps, block), so a block gives the same numbers in any
shard, and the merged records equal a single process's. A shard writes ``shards/<i>-of-<N>/`` under the output
folder: ``shard.json`` when it starts (its fingerprint and the command that reruns it), the records of every suite
(``records/*.safetensors``) and last ``done.json`` (fingerprint, points, seconds). A merge reads the folders of all N
shards; a missing or unfinished shard, or one of another evaluation (other weights, data or settings), is refused
with the shard and the command or the difference named.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from trixai.core.errors import TrixaiError
from trixai.core.files import atomic_write_json
from trixai.core.records import Records

SHARDS = "shards"
STARTED, DONE = "shard.json", "done.json"
MERGES = ("auto", "true", "false")


@dataclass(frozen=True)
class Shard:
    """The ``shard`` config: ``count`` workers, this one's ``index``, and ``merge``: ``auto`` (the last shard to
    finish merges), ``true`` (merge the finished shards, evaluate nothing) or ``false`` (never merge)."""

    count: int = 1
    index: int = 0
    merge: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or self.count < 1:
            raise TrixaiError(f"shard.count={self.count!r}: expected a positive number of shards")
        if not isinstance(self.index, int) or not 0 <= self.index < self.count:
            raise TrixaiError(f"shard.index={self.index!r}: expected 0..{self.count - 1} (shard.count={self.count})")
        if str(self.merge).lower() not in MERGES:
            raise TrixaiError(f"shard.merge={self.merge!r}: allowed are {', '.join(MERGES)}")
        object.__setattr__(self, "merge", str(self.merge).lower())

    @classmethod
    def from_config(cls, cfg: Mapping | None) -> Shard:
        """The shard of a ``shard`` config; under torchrun (``WORLD_SIZE`` > 1) each rank is a shard."""
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - {"count", "index", "merge"})
        if unknown:
            raise TrixaiError(f"shard.{unknown[0]}: unknown key; allowed are shard.count, shard.index, shard.merge")
        merge = cfg.get("merge", "auto")
        merge = {True: "true", False: "false"}.get(merge, merge)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:
            count = int(cfg.get("count") or 1)
            if count not in (1, world):
                raise TrixaiError(f"shard.count={count} under torchrun with {world} processes: leave shard.count "
                                  "at 1 (each process is a shard) or set it to the number of processes")
            return cls(world, int(os.environ.get("RANK", "0")), merge)
        return cls(int(cfg.get("count", 1)), int(cfg.get("index", 0)), merge)

    @property
    def label(self) -> str:
        return f"{self.index}-of-{self.count}"

    def indices(self, points: int, block: int) -> Tensor:
        """The split indices of this shard among ``points``: the blocks ``index``, ``index + count``, ..."""
        every = torch.arange(int(points))
        return every[torch.div(every, int(block), rounding_mode="floor") % self.count == self.index]

    def folder(self, out_dir: str | Path, index: int | None = None) -> Path:
        return Path(out_dir) / SHARDS / f"{self.index if index is None else index}-of-{self.count}"


class ShardView(Dataset):
    """The points ``indices`` of a split dataset, each sample carrying its ``index`` in the split."""

    def __init__(self, dataset: Dataset, indices: Tensor) -> None:
        self.dataset, self.indices = dataset, [int(i) for i in indices]
        self.targets = None
        targets = getattr(dataset, "targets", None)
        if targets is not None:
            self.targets = [targets[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict:
        sample = self.dataset[self.indices[position]]
        if not isinstance(sample, Mapping):
            sample = {"image": sample[0], "target": sample[1]}
        return {**sample, "index": self.indices[position]}


def start_shard(folder: Path, fingerprint: Mapping, command: str) -> float:
    """Mark a shard as started (its fingerprint and the command that reruns it); an earlier ``done.json`` goes.
    Returns the start time."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DONE).unlink(missing_ok=True)
    started = time.time()
    atomic_write_json(folder / STARTED, {"fingerprint": dict(fingerprint), "command": command, "started": started})
    return started


def finish_shard(folder: Path, parts: Mapping[str, Records], fingerprint: Mapping, *, started: float,
                 points: int) -> dict:
    """Save a shard's records and, last, ``done.json`` (what makes it count as finished)."""
    for name, records in parts.items():
        records.save(folder / "records" / f"{name}.safetensors")
    done = {"fingerprint": dict(fingerprint), "points": int(points), "started": started, "finished": time.time(),
            "parts": sorted(parts)}
    done["seconds"] = done["finished"] - started
    atomic_write_json(folder / DONE, done)
    return done


def unfinished(out_dir: str | Path, count: int, fingerprint: Mapping | None = None) -> list[int]:
    """The shards of ``count`` without a ``done.json`` (with ``fingerprint``: or with one of another evaluation,
    e.g. left by an earlier run into the same folder)."""
    def finished(i: int) -> bool:
        done = Shard(count, i).folder(out_dir) / DONE
        if not done.is_file():
            return False
        return fingerprint is None or json.loads(done.read_text()).get("fingerprint") == json.loads(
            json.dumps(dict(fingerprint), default=str))

    return [i for i in range(count) if not finished(i)]


def claim_merge(out_dir: str | Path, count: int, fingerprint: Mapping) -> bool:
    """Claim the merge of the ``count`` shards once all are finished (with this ``fingerprint``): creating the
    claim file (named after the finished set: a rerun shard makes a new set) is atomic, so among shards that
    finish together exactly one merges, with no lock held."""
    if unfinished(out_dir, count, fingerprint):
        return False
    stamps = [str(json.loads((Shard(count, i).folder(out_dir) / DONE).read_text()).get("finished"))
              for i in range(count)]
    claim = Path(out_dir) / SHARDS / f"merge-{count}-{hashlib.sha256(' '.join(stamps).encode()).hexdigest()[:12]}.claim"
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def differences(a: object, b: object, prefix: str = "") -> list[str]:
    """The dotted keys where two fingerprints differ."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".") or "fingerprint"]


def load_shards(out_dir: str | Path, count: int, fingerprint: Mapping, rerun: Callable[[int], str]
                ) -> tuple[dict[str, list[Records]], list[dict]]:
    """Every finished shard's records by part, and their ``done.json``. A missing or unfinished shard is named
    with ``rerun(i)``, the command that (re)runs it; a shard of another evaluation with the differing keys."""
    missing = unfinished(out_dir, count)
    if missing:
        lines = [f"shard {i} of {count} ({Shard(count, i).folder(out_dir)}) "
                 f"{'did not finish' if (Shard(count, i).folder(out_dir) / STARTED).exists() else 'never started'}; "
                 f"rerun it: {rerun(i)}" for i in missing]
        raise TrixaiError("cannot merge the shards:\n  " + "\n  ".join(lines))
    parts: dict[str, list[Records]] = {}
    done = []
    for i in range(count):
        folder = Shard(count, i).folder(out_dir)
        info = json.loads((folder / DONE).read_text())
        changed = differences(info.get("fingerprint") or {}, dict(fingerprint))
        if changed:
            raise TrixaiError(f"shard {i} of {count} ({folder}) belongs to another evaluation: its "
                              f"{', '.join(changed[:6])} differ from this merge's. Rerun it with this command's "
                              f"settings: {rerun(i)}")
        for name in info.get("parts") or []:
            parts.setdefault(name, []).append(Records.load(folder / "records" / f"{name}.safetensors"))
        done.append(info)
    return parts, done


def execution(done: list[dict], block: int) -> dict:
    """How the work ran: workers, block size, each shard's points and seconds, the merged wall time (first start to
    last finish) and the sum of the shards' times."""
    shards = [{"points": d["points"], "seconds": round(float(d["seconds"]), 3)} for d in done]
    wall = max(d["finished"] for d in done) - min(d["started"] for d in done)
    return {"workers": len(done), "block_size": int(block), "shards": shards, "wall_seconds": round(wall, 3),
            "sum_of_shard_seconds": round(sum(float(d["seconds"]) for d in done), 3)}
