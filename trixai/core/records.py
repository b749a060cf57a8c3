"""Per-point records: what a suite pass computed for each evaluated point, keyed by the point's index in the split.

A :class:`Records` holds named tensors whose first dimension is the point (``targets``, ``clean/logits``,
``attack/pgd10/8_255/logits``, ``corruption/gaussian_noise/3/logits``, ``xai/pointing_game``, ...), the points'
``index`` in the split, and ``meta``: the JSON-ready facts of the pass that are not per point (settings, the model
checks, file names). Records of batches, resumed runs or shards concatenate and sort by index
(:meth:`Records.merge`); reports are computed from records only, so a report of N shards equals one process's.
They are saved as safetensors (tensors) with ``meta`` as JSON in the file's metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from trixai.core.errors import TrixaiError

FORMAT = "trixai-records/1"
INDEX = "index"


@dataclass
class Records:
    """Per-point tensors (first dimension = point), the points' split indices, and the pass's ``meta``."""

    index: Tensor
    fields: dict[str, Tensor] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = torch.as_tensor(self.index, dtype=torch.long).reshape(-1)
        for name, tensor in self.fields.items():
            if tensor.shape[:1] != self.index.shape:
                raise TrixaiError(f"record field {name!r} has {tuple(tensor.shape)[:1]} rows for {len(self.index)} points")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self.fields[name]
        except KeyError:
            raise TrixaiError(f"the records hold no field {name!r} (fields: {sorted(self.fields)[:12]})") from None

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def get(self, name: str) -> Tensor | None:
        return self.fields.get(name)

    def take(self, rows: Tensor) -> Records:
        """The records of ``rows`` (positions, not split indices)."""
        return Records(self.index[rows], {k: v[rows] for k, v in self.fields.items()}, dict(self.meta))

    @classmethod
    def merge(cls, parts: Sequence[Records], *, meta: Mapping | None = None) -> Records:
        """The parts' points in split order; each point once. Every part must hold the same fields."""
        parts = [p for p in parts if len(p) or p.fields]
        if not parts:
            return cls(torch.empty(0, dtype=torch.long), {}, dict(meta or {}))
        names = set(parts[0].fields)
        for part in parts[1:]:
            if set(part.fields) != names:
                raise TrixaiError(f"records to merge hold different fields: {sorted(names ^ set(part.fields))[:8]}")
        index = torch.cat([p.index for p in parts])
        order = index.argsort(stable=True)
        index = index[order]
        if len(index) > 1 and bool((index[1:] == index[:-1]).any()):
            dup = int(index[1:][index[1:] == index[:-1]][0])
            raise TrixaiError(f"point {dup} appears in more than one part of the records (overlapping shards?)")
        fields = {name: torch.cat([p.fields[name] for p in parts])[order] for name in parts[0].fields}
        if meta is None:
            meta = merged_meta([p.meta for p in parts])
            named = [len(p.meta.get("names") or []) == len(p) for p in parts]
            if any(named) and not all(named):
                raise TrixaiError("records to merge name their points in some parts only (a part's meta 'names' "
                                  "does not match its points)")
            if all(named):
                names = [n for p in parts for n in p.meta["names"]]
                meta["names"] = [names[i] for i in order.tolist()]
        return cls(index, fields, dict(meta))

    def save(self, path: str | Path) -> Path:
        """Write the records atomically as ``path`` (safetensors; ``meta`` in the metadata as JSON)."""
        from safetensors.torch import save_file

        from trixai.core.files import atomic_path

        path = Path(path)
        tensors = {INDEX: self.index.clone(), **{k: v.detach().cpu().clone().contiguous() for k, v in self.fields.items()}}
        metadata = {"format": FORMAT, "meta": json.dumps(self.meta, default=str)}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Records:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise TrixaiError(f"{path}: no records file there")
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise TrixaiError(f"{path}: not a {FORMAT} file (format {metadata.get('format')!r})")
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 - safe_open has no iterator
        index = tensors.pop(INDEX)
        return cls(index, tensors, json.loads(metadata.get("meta", "{}")))


#: Meta keys that count something per part (summed over the parts) or list blocks (their union).
SUMMED, UNITED = ("batches", "resumed_batches", "reused_blocks", "zero_gradient_blocks"), ("blocks",)


def merged_meta(metas: Sequence[Mapping]) -> dict:
    """The meta of merged parts: counts summed, block lists united, dicts merged key by key alike, anything else
    from the first part that has a non-empty value."""
    out: dict = {}
    for key in dict.fromkeys(k for m in metas for k in m):
        values = [m[key] for m in metas if key in m]
        if key in SUMMED:
            out[key] = sum(int(v or 0) for v in values)
        elif key in UNITED:
            out[key] = sorted({int(b) for v in values for b in (v or [])})
        elif all(isinstance(v, Mapping) for v in values):
            out[key] = merged_meta(values)
        else:
            out[key] = next((v for v in values if v not in (None, [], {}, "")), values[0])
    return out


class RecordBuilder:
    """Collects per-batch chunks of fields; :meth:`records` concatenates them."""

    def __init__(self) -> None:
        self.index: list[Tensor] = []
        self.chunks: dict[str, list[Tensor]] = {}

    def __len__(self) -> int:
        return sum(len(i) for i in self.index)

    def add(self, index: Tensor, fields: Mapping[str, Tensor]) -> None:
        """One batch: ``index`` (B,) and each field's (B, ...) rows. The first batch fixes the field names."""
        if self.index and set(fields) != set(self.chunks):
            raise TrixaiError(f"record fields changed between batches: {sorted(set(fields) ^ set(self.chunks))[:8]}")
        self.index.append(torch.as_tensor(index, dtype=torch.long).cpu())
        for name, tensor in fields.items():
            self.chunks.setdefault(name, []).append(tensor.detach().cpu())

    def records(self, meta: Mapping | None = None) -> Records:
        index = torch.cat(self.index) if self.index else torch.empty(0, dtype=torch.long)
        return Records(index, {k: torch.cat(v) for k, v in self.chunks.items()}, dict(meta or {}))

