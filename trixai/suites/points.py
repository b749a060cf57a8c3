"""``points.csv``: one row per evaluated point of a robustness pass, so a user can find which images fall.

Columns: the point's ``index`` in the split and its file ``name`` (the index where the dataset has no files),
the target(s), the clean prediction and its confidence; per attack and eps (``<attack>@<eps>``) whether the point
stayed right (``robust``: 1/0, the verdict behind the report's accuracy), the prediction and confidence behind that
verdict and, for AutoAttack, the component that broke it; per eps the worst case over the attacks (``worst@<eps>``)
and its source; with a certification, the certified class (or ``abstain``) and L2 radius. Multi-label targets and predictions are the positive labels joined by ``+`` (an ignored label of the
target, CheXpert's uncertain ones under U-Ignore, as ``?<label>``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch
from torch import Tensor

from trixai.core.files import atomic_write_text
from trixai.core.records import Records
from trixai.core.reports import RobustnessReport
from trixai.robust.attacks.autoattack import CLEAN_WRONG, ROBUST
from trixai.robust.attacks.margins import is_fooled
from trixai.robust.smoothing import ABSTAIN
from trixai.suites.robustness import attack_field
from trixai.suites.scoring import worst_case_logits

FILE = "points.csv"


def _labels(values: Tensor, class_names: list[str], multilabel: bool) -> list[str]:
    """Class names; multi-label: the positive labels joined by ``+``, ignored labels (-1) as ``?<label>``."""
    if not multilabel:
        return [class_names[int(v)] for v in values]
    return ["+".join([class_names[i] for i in (row > 0.5).nonzero().flatten().tolist()]
                     + [f"?{class_names[i]}" for i in (row < 0).nonzero().flatten().tolist()]) or "none"
            for row in values]


def _predictions(logits: Tensor, class_names: list[str], multilabel: bool) -> tuple[list[str], list[str]]:
    """Predicted label(s) and confidence (multiclass: top softmax probability; multi-label: mean over labels of
    the probability of the predicted side)."""
    logits = logits.float()
    if multilabel:
        p = torch.sigmoid(logits)
        confidence = torch.maximum(p, 1 - p).mean(1)
        return _labels((logits > 0).float(), class_names, True), [f"{float(c):.4f}" for c in confidence]
    p = logits.softmax(1)
    return [class_names[int(i)] for i in p.argmax(1)], [f"{float(c):.4f}" for c in p.amax(1)]


def points_rows(records: Records, report: RobustnessReport, certification: Records | None = None
                ) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of points.csv (with ``certification``'s records: each point's certified class and
    L2 radius, blank for points the certification did not reach)."""
    multilabel = report.task == "multilabel"
    names = report.class_names
    targets = records["targets"]
    clean = records["clean/logits"]
    point_names = records.meta.get("names") or [str(int(i)) for i in records.index]
    columns: dict[str, list[str]] = {
        "index": [str(int(i)) for i in records.index], "name": list(point_names),
        "target": _labels(targets, names, multilabel)}
    columns["clean_prediction"], columns["clean_confidence"] = _predictions(clean, names, multilabel)
    columns["clean_right"] = [str(int(v)) for v in ~is_fooled(clean.float(), targets)]
    per_eps: dict[str, list[tuple[str, Tensor]]] = {}
    for name, per in report.results.items():
        for label, entry in per.items():
            prefix = attack_field(name, entry.eps)
            logits = records[f"{prefix}/accuracy_logits"].float()
            per_eps.setdefault(label, []).append((name, logits))
            key = f"{name}@{label}"
            columns[f"{key}_robust"] = [str(int(v)) for v in ~is_fooled(logits, targets)]
            columns[f"{key}_prediction"], columns[f"{key}_confidence"] = _predictions(logits, names, multilabel)
            if entry.broken_by is not None and f"{prefix}/broken_by" in records:
                components = list(entry.broken_by)
                columns[f"{key}_broken_by"] = [
                    "" if int(c) == ROBUST else "clean-wrong" if int(c) == CLEAN_WRONG else components[int(c)]
                    for c in records[f"{prefix}/broken_by"]]
    for label, runs in per_eps.items():
        worst, chosen = worst_case_logits([clean.float(), *(logits for _, logits in runs)], targets)
        fooled = is_fooled(worst, targets)
        sources = ["clean", *(name for name, _ in runs)]
        columns[f"worst@{label}_robust"] = [str(int(v)) for v in ~fooled]
        columns[f"worst@{label}_broken_by"] = [sources[int(c)] if bool(f) else "" for c, f in zip(chosen, fooled)]
    if certification is not None:
        position = {int(i): k for k, i in enumerate(certification.index)}
        rows = [position.get(int(i)) for i in records.index]
        classes, radii = certification["certify/prediction"].tolist(), certification["certify/radius"].tolist()
        columns["certified_class"] = ["" if k is None else "abstain" if classes[k] == ABSTAIN else names[classes[k]]
                                      for k in rows]
        columns["certified_radius"] = ["" if k is None else f"{radii[k]:.4f}" for k in rows]
    header = list(columns)
    return header, [list(row) for row in zip(*columns.values())]


def write_points_csv(out_dir: str | Path, records: Records, report: RobustnessReport,
                     certification: Records | None = None) -> Path:
    """Write ``points.csv`` into ``out_dir``."""
    header, rows = points_rows(records, report, certification)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    path = Path(out_dir) / FILE
    atomic_write_text(path, buffer.getvalue())
    return path
