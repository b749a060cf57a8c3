"""One pass over a loader serves every suite: :class:`SuiteRun` hands each batch to a list of suite passes
(robustness, corruptions, explanations) and finishes them into typed reports.

The same :class:`SuiteRun` is driven by Lightning's test loop (the test phase of ``trixai-train``) and by
:func:`run_suites` (``trixai-eval``, ``trixai-explain``, ``trixai.audit``), so every number has one implementation.
:meth:`SuiteRun.finish` writes every report (JSON, markdown, figures), the per-point records
(``records/<suite>.safetensors``) and, beside a robustness report, ``points.csv``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.core.frozen import frozen_eval
from trixai.core.records import Records
from trixai.core.reports import Report, RobustnessReport
from trixai.core.settings import ExplanationSettings, from_mapping
from trixai.render import write_report
from trixai.suites.base import PointBatch, SuitePass
from trixai.suites.certification import CertificationSuite
from trixai.suites.corruption import CorruptionSuite
from trixai.suites.explanation import ExplanationPass, gallery_points, samples_needed, stratified_points
from trixai.suites.points import write_points_csv
from trixai.suites.robustness import BatchResult, RobustnessSuite
from trixai.xai.explainers import TCAV, MapExplainer

log = logging.getLogger(__name__)
RECORDS = "records"
BLOCK = 16
"""Points per block: the suites compute and draw their random numbers block by block (config key ``block_size``)."""


@dataclass
class SuiteReports:
    """The reports of one run of the suites, with their flat metrics and intervals."""

    reports: list[Report] = field(default_factory=list)

    def flat(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for report in self.reports:
            out |= report.flat()
        return out

    def intervals(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for report in self.reports:
            out |= report.flat_intervals()
        return out

    def of(self, kind: type) -> Report | None:
        return next((r for r in self.reports if isinstance(r, kind)), None)


class SuiteRun:
    """The suites over every batch they are given.

    ``robustness``: the suite whose evaluation attack gives ``BatchResult.eval_*`` (it always runs; the test phase
    needs it); ``report_robustness``: report it (False: the pass serves only the test metrics or the
    explanations; with ``explain_only`` it attacks just the explained points). ``explainer`` + ``explanation``
    (the ``explanation`` group): explain points of the split, drawn stratified by class from the seed when
    ``split_targets`` (the targets of the whole split, in order) are given, else the first ones.
    ``partial_dir``: resumable robustness results per block (``trixai-eval``; ``data``, e.g. the dataset config
    and split, joins their fingerprint). ``corruptions``: the corruption
    suite on every block; the explanation suite then also compares maps of the explained points clean and corrupted.
    ``certification``: randomized smoothing's certified radii (``trixai-eval certify=smoothing``). ``block``: points
    per block, the unit of computation and of random draws (results depend on it, never on the loader's batch
    size nor on how the split is sharded).
    """

    def __init__(self, model: nn.Module, *, robustness: RobustnessSuite, report_robustness: bool = True,
                 explainer: MapExplainer | TCAV | None = None, explanation: Mapping | None = None,
                 device: torch.device | str | None = None, partial_dir: str | Path | None = None,
                 channels_last: bool = False, corruptions: CorruptionSuite | None = None,
                 certification: CertificationSuite | None = None, split_targets: Tensor | None = None,
                 block: int = BLOCK, explain_only: bool = False, data: Mapping | None = None) -> None:
        if int(block) < 1:
            raise TrixaiError(f"block_size={block}: expected a positive number of points")
        self.model, self.robustness, self.report_robustness = model, robustness, report_robustness
        self.block = int(block)
        self.pending: list[PointBatch] = []
        self.explain = None
        points = None
        if explainer is not None:
            primary = robustness.primary
            points = gallery = None
            if split_targets is not None:
                points = stratified_points(split_targets, samples_needed(explainer, explanation), robustness.seed)
                per_class = from_mapping(ExplanationSettings, explanation, key="explanation").gallery_per_class
                gallery = gallery_points(split_targets, points, per_class)
            self.explain = ExplanationPass(model, explainer, dict(explanation or {}), corruptions=corruptions,
                                           attack=None if primary is None else primary.attack.settings(),
                                           device=device, points=points, gallery=gallery, seed=robustness.seed)
        self.robust = robustness.start(model, device=device, partial_dir=partial_dir, channels_last=channels_last,
                                       checks=report_robustness, only=points if explain_only else None,
                                       block_size=self.block, data=data)
        corrupt = None if corruptions is None else corruptions.start(model, device=device, channels_last=channels_last)
        certify = None if certification is None else certification.start(model, device=device)
        self.passes: list[SuitePass] = [p for p in (corrupt, certify) if p is not None]
        self.reported: list[SuitePass] = [p for p in ((self.robust if report_robustness else None), corrupt,
                                                      self.explain, certify) if p is not None]
        self.seen = 0

    @property
    def done(self) -> bool:
        """Nothing more is needed from the loader."""
        return (self.explain is None and all(p.done for p in self.passes)
                and (self.robust.done or not self.report_robustness))

    def update(self, batch: object) -> list[BatchResult]:
        """Take a loader batch; run the suites on every block of points it completes (a point's block is its
        split index // ``block``: the unit of computation and of random draws, so the loader's batch size never
        changes a number). Returns the robustness pass's results of those blocks, in order."""
        points = PointBatch.of(batch, start=self.seen)
        self.seen += len(points)
        blocks = torch.div(points.index, self.block, rounding_mode="floor")
        results = []
        for number in blocks.unique_consecutive().tolist():
            part = points.take((blocks == number).nonzero().flatten())
            if self.pending and self.pending[0].block != number:
                results += self.flush()
            self.pending.append(replace(part, block=number))
            if sum(len(p) for p in self.pending) >= self.block:
                results += self.flush()
        return results

    def flush(self) -> list[BatchResult]:
        """Run the suites on the points held for an incomplete block (the split's or a shard's last one)."""
        if not self.pending:
            return []
        block, self.pending = PointBatch.cat(self.pending), []
        for suite in self.passes:
            suite.update(block)
        result = self.robust.update(block)
        if result is not None and len(result.index) == len(block):
            if self.explain is not None:
                self.explain.update(block, result)
            return [result]
        # points the robustness pass skipped: one clean forward of the block serves the explanation pass and the
        # result; the evaluation attack's rows stay where they are the block's first points (max_points)
        device = next(self.model.parameters()).device
        x = block.image.to(device)
        with frozen_eval(self.model), torch.no_grad():
            clean = self.model(x)
        if self.explain is not None:
            self.explain.update(block, result, clean_logits=clean)
        rows = 0
        if result is not None and result.eval_logits is not None and torch.equal(
                result.index[:result.rows].cpu(), block.index[:result.rows].cpu()):
            rows = result.rows
        return [BatchResult(clean, rows, block.target, x, block.index, block.label_mask,
                            result.eval_logits if rows else None, result.eval_images if rows else None)]

    def parts(self) -> dict[str, Records]:
        """Every reported pass's records and extra state, by file name: what a shard saves."""
        self.flush()
        return {name: records for suite in self.reported for name, records in suite.parts().items()}

    def restore(self, parts: Mapping[str, list[Records]]) -> None:
        """Take every shard's :meth:`parts`, merged in split order, instead of the batches (then :meth:`finish`)."""
        device = next(self.model.parameters()).device
        for suite in self.reported:
            names = list(suite.parts())
            absent = [name for name in names if name not in parts]
            if absent:
                raise TrixaiError(f"the shards hold no {absent[0]} records: were they run with the same suites?")
            suite.device = suite.device or device
            suite.restore({name: Records.merge(parts[name]) for name in names})

    def finish(self, out_dir: str | Path, *, source: Mapping | None = None,
               execution: Mapping | None = None) -> SuiteReports:
        """Finish every reported pass: the reports, their files, the records and points.csv in ``out_dir``
        (``execution``: how the work ran, e.g. the shards' times, for the robustness report)."""
        self.flush()
        out_dir = Path(out_dir)
        results = SuiteReports()
        records: dict[str, Records] = {}
        for suite in self.reported:
            report = suite.finish(out_dir)
            if hasattr(report, "source"):
                report.source = dict(source or {})
            if isinstance(report, RobustnessReport) and execution is not None:
                report.execution = dict(execution)
            write_report(report, out_dir)
            if suite.has_records:
                records[suite.name] = suite.records()
                for name, part in suite.parts().items():
                    part.save(out_dir / RECORDS / f"{name}.safetensors")
            log.info("%s report: %s", suite.name, out_dir)
            results.reports.append(report)
        robustness = results.of(RobustnessReport)
        if robustness is not None:
            write_points_csv(out_dir, records[self.robust.name], robustness, records.get("certification"))
        return results


def run_suites(run: SuiteRun, loader: Iterable, out_dir: str | Path | None, *, progress: bool = True,
               source: Mapping | None = None, label: str = "suites") -> SuiteReports | None:
    """Drive ``run`` over ``loader`` (stopping once it needs no more batches) and write its reports into
    ``out_dir`` (None: only drive it; a shard saves its :meth:`SuiteRun.parts` instead). ``progress``: a progress
    bar on a terminal, else (a batch job's log) a line per minute or per 10 % with points done, images/s and ETA."""
    points = len(loader.dataset) if hasattr(loader, "dataset") and hasattr(loader.dataset, "__len__") else None
    meter = ProgressLines(label, points, enabled=progress and not sys.stderr.isatty())
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, disable=not progress or not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"{label} (points)", total=points)
        for batch in loader:
            if run.done:
                break
            before = run.seen
            run.update(batch)
            size = run.seen - before
            bar.advance(task, size)
            meter.advance(size)
    meter.close()
    return None if out_dir is None else run.finish(out_dir, source=source)


class ProgressLines:
    """Progress as log lines for a batch job without a terminal (a SLURM log): points done of the total, images/s
    and the ETA, at most once per ``every`` seconds and at every 10 % of the points."""

    def __init__(self, label: str, total: int | None, *, enabled: bool = True, every: float = 60.0) -> None:
        self.label, self.total, self.enabled, self.every = label, total, enabled, float(every)
        self.start = self.last = time.monotonic()
        self.done, self.step, self.reported = 0, 0, 0

    def advance(self, points: int) -> None:
        self.done += int(points)
        now = time.monotonic()
        step = int(10 * self.done / self.total) if self.total else 0
        if self.enabled and (now - self.last >= self.every or step > self.step):
            self.last, self.step, self.reported = now, step, self.done
            log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        rate = self.done / max(now - self.start, 1e-9)
        if not self.total:
            return f"{self.label}: {self.done} points, {rate:.2f} images/s"
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        clock = "?" if not math.isfinite(eta) else time.strftime("%H:%M:%S", time.gmtime(eta))
        return (f"{self.label}: {self.done}/{self.total} points ({100 * self.done / self.total:.0f} %), "
                f"{rate:.2f} images/s, ETA {clock}")

    def close(self) -> None:
        """The last line, unless :meth:`advance` has just logged it."""
        if self.enabled and self.done != self.reported:
            log.info("%s (finished)", self.line(time.monotonic()))
