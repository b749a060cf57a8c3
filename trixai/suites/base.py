"""The suite protocol: a pass takes batches of points (:meth:`SuitePass.update`) and returns a typed report
(:meth:`SuitePass.finish`); :class:`~trixai.suites.runner.SuiteRun` loops over a list of passes.

:class:`PointBatch` is a loader batch as the suites see it, with every point's index in the split (the key of the
per-point records). :class:`SuitePass` holds what every pass shares: ``max_points`` truncation, the device (the
model's by default, picked up at the first batch), the channels_last memory format, and the record builder.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.core.records import RecordBuilder, Records
from trixai.core.reports import Report


@dataclass(frozen=True)
class PointBatch:
    """Images in [0, 1] with their targets, optional label mask (multi-label U-Ignore), localisation masks, file
    names and pixel scales (model pixels per original pixel), and ``index``: each point's position in the split."""

    image: Tensor
    target: Tensor
    index: Tensor
    label_mask: Tensor | None = None
    mask: Tensor | None = None
    has_mask: Tensor | None = None
    name: tuple[str, ...] | None = None
    pixel_scale: Tensor | None = None
    block: int | None = None  #: the block of points this is (index // block size; set by SuiteRun)

    def __len__(self) -> int:
        return len(self.target)

    def head(self, rows: int) -> PointBatch:
        """The first ``rows`` points."""
        return self.take(torch.arange(min(rows, len(self))))

    def take(self, rows: Tensor) -> PointBatch:
        """The points at positions ``rows`` (in that order)."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        cut = (lambda t: None if t is None else t[rows.to(t.device)])
        return replace(self, image=cut(self.image), target=cut(self.target), index=cut(self.index),
                       label_mask=cut(self.label_mask), mask=cut(self.mask), has_mask=cut(self.has_mask),
                       name=None if self.name is None else tuple(self.name[int(r)] for r in rows),
                       pixel_scale=cut(self.pixel_scale))

    @classmethod
    def cat(cls, parts: list[PointBatch]) -> PointBatch:
        """The points of ``parts`` in order (one batch)."""
        if len(parts) == 1:
            return parts[0]

        def joined(name: str) -> Tensor | None:
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else torch.cat(values)

        names = [p.name for p in parts]
        return cls(joined("image"), joined("target"), joined("index"), joined("label_mask"), joined("mask"),
                   joined("has_mask"), None if any(n is None for n in names) else sum(names, ()),
                   joined("pixel_scale"), parts[0].block)

    @classmethod
    def of(cls, batch: object, start: int = 0) -> PointBatch:
        """A loader batch (a dict with ``image``/``target`` and optional ``index``, ``label_mask``, ``mask``,
        ``has_mask``, ``name``, ``pixel_scale``, or an ``(images, targets)`` pair) as a point batch; without an ``index`` the points
        are numbered from ``start`` (a loader over the split in order)."""
        if isinstance(batch, PointBatch):
            return batch
        if isinstance(batch, (list, tuple)) and len(batch) >= 2 and isinstance(batch[0], Tensor):
            batch = {"image": batch[0], "target": batch[1]}
        if not isinstance(batch, Mapping) or "image" not in batch or "target" not in batch:
            raise TrixaiError("loader batches must be dicts with 'image'/'target' or (images, targets) pairs, got "
                              f"{type(batch).__name__}")
        target = torch.as_tensor(batch["target"])
        index = batch.get("index")
        index = torch.arange(start, start + len(target)) if index is None else torch.as_tensor(index).long()
        has_mask = batch.get("has_mask")
        if "mask" in batch and has_mask is None:
            has_mask = torch.ones(len(target), dtype=torch.bool)
        name = batch.get("name")
        return cls(batch["image"], target, index.cpu(), batch.get("label_mask"), batch.get("mask"),
                   None if has_mask is None else torch.as_tensor(has_mask, dtype=torch.bool),
                   None if name is None else tuple(str(n) for n in name), batch.get("pixel_scale"))


class SuitePass(ABC):
    """One suite over batches of points: :meth:`update` per batch, :meth:`finish` once at the end.

    ``max_points``: only the first N points (None: all); ``device``: where the model runs (None: the model's own,
    read at the first batch); ``channels_last``: batches (and the model, during each batch) in that memory format.
    """

    name = "suite"
    has_records = True  #: the pass keeps per-point records (saved beside its report)

    def __init__(self, model: nn.Module, *, max_points: int | None = None, device: torch.device | str | None = None,
                 channels_last: bool = False) -> None:
        self.model, self.max_points = model, max_points
        self.device = torch.device(device) if device is not None else None
        self.channels_last = bool(channels_last)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.builder = RecordBuilder()
        self.batches = 0
        self.points = 0
        self.frontier = 0  #: one past the highest split index offered so far
        self.names: list[str] = []
        self.restored: dict[str, Records] | None = None

    @property
    def done(self) -> bool:
        """Every point the pass wants has gone by (``max_points``: the split's first points, by index)."""
        return self.max_points is not None and self.frontier >= self.max_points

    def take(self, batch: PointBatch) -> PointBatch | None:
        """The batch's points this pass wants (those with a split index below ``max_points``; None when none);
        fixes the device at the first batch. By index, not by count, so a shard of the split keeps the same points."""
        if self.max_points is not None:
            if len(batch):
                self.frontier = max(self.frontier, int(batch.index.max()) + 1)
            batch = batch.take((batch.index < self.max_points).nonzero().flatten())
        if not len(batch):
            return None
        self.device = self.device or next(self.model.parameters()).device
        return batch

    def to_device(self, batch: PointBatch) -> Tensor:
        """The batch's images on the pass's device, in its memory format."""
        return batch.image.to(self.device, memory_format=self.memory_format)

    def count(self, batch: PointBatch) -> None:
        """Book a processed batch (its names keep the split order of the records)."""
        self.batches += 1
        self.points += len(batch)
        self.names.extend(batch.name if batch.name is not None else (str(int(i)) for i in batch.index))

    def block_of(self, batch: PointBatch) -> int:
        """The batch's block number (SuiteRun's blocks of points; a pass driven batch by batch: the batch count):
        the key of its random draws and of its saved partial results."""
        return self.batches if batch.block is None else int(batch.block)

    def update(self, batch: PointBatch) -> object:
        """Run the pass on the points of ``batch`` it still wants."""
        taken = self.take(batch)
        return None if taken is None else self.process(taken)

    @abstractmethod
    def process(self, batch: PointBatch) -> object:
        """The pass's work on one (already truncated) batch."""

    def records(self) -> Records:
        """The per-point records of the points seen so far (or restored from shards)."""
        if self.restored is not None:
            return self.restored[self.name]
        if not self.batches:
            raise TrixaiError(f"the {self.name} suite saw no batches (empty split?)")
        return self.builder.records(self.meta())

    def parts(self) -> dict[str, Records]:
        """What a shard of the split saves of this pass, by file name: its records (possibly empty: a shard may
        hold none of the points the pass wants) and any extra state :meth:`finish` needs."""
        if self.restored is not None:
            return dict(self.restored)
        return {self.name: self.builder.records(self.meta())}

    def restore(self, parts: Mapping[str, Records]) -> None:
        """Take the merged :meth:`parts` of every shard instead of the points seen (``finish`` then reports them)."""
        self.restored = dict(parts)

    def meta(self) -> dict:
        """The pass's facts that are not per point (saved with the records)."""
        return {"names": list(self.names), "device": str(self.device), "channels_last": self.channels_last}

    @abstractmethod
    def finish(self, out_dir: Path) -> Report:
        """The typed report (files that need tensors, such as image galleries, go into ``out_dir``)."""


def class_names_of(model: nn.Module, outputs: int) -> list[str]:
    """The model's class names, or the output indices as names."""
    return list(getattr(model, "class_names", None) or []) or [str(i) for i in range(outputs)]
