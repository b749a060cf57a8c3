"""One pass over a loader serves every suite: each batch goes through the robustness suite once, and the
explanation suite explains the first samples, reusing the evaluation attack's adversarial images.

The same :class:`SuiteRun` is driven by Lightning's test loop (the test phase of ``trixai-train``) and by
:func:`run_suites` (``trixai-eval``, ``trixai-explain``), so every number has one implementation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.suites import corruption_report
from trixai.suites.corruption import CorruptionSuite
from trixai.suites.corruption import flat_metrics as corruption_metrics
from trixai.suites.explanation import SampleCollector, explanation_suite
from trixai.suites.robustness import BatchResult, RobustnessSuite, flat_intervals, flat_metrics
from trixai.suites.robustness_report import write_reports
from trixai.xai.explainers import TCAV, MapExplainer

log = logging.getLogger(__name__)


def as_sample_batch(batch: object) -> dict:
    """A loader batch as a sample dict (``image``, ``target``, optional ``label_mask``/``mask``/``name``)."""
    if isinstance(batch, Mapping):
        return dict(batch)
    if isinstance(batch, (list, tuple)) and len(batch) >= 2 and isinstance(batch[0], Tensor):
        return {"image": batch[0], "target": batch[1]}
    raise TrixaiError(f"loader batches must be dicts with 'image'/'target' or (x, y) pairs, got {type(batch).__name__}")


def samples_needed(explainer: MapExplainer | TCAV, explanation: Mapping) -> int:
    """How many samples the explanation suite explains: TCAV's own ``max_samples``, else the ``explanation``
    group's."""
    return int(getattr(explainer, "max_samples", 0) or explanation.get("max_samples", 64))


class SuiteRun:
    """The robustness suite over every batch it is given, and the explanation suite over the first samples.

    ``robustness``: the suite whose evaluation attack gives ``BatchResult.eval_*``; ``report_robustness``:
    write robustness.json/.md (False: the pass serves only the test metrics or the explanations).
    ``explainer`` + ``explanation`` (the ``explanation`` group): explain the first ``max_samples`` samples.
    ``partial_dir``: resumable per-batch robustness results (``trixai-eval``).
    ``corruptions``: the corruption suite on every batch (corruptions.json/.md); the explanation suite then also
    compares CAMs of the explained samples clean and corrupted.
    """

    def __init__(self, model: nn.Module, *, robustness: RobustnessSuite, report_robustness: bool = True,
                 explainer: MapExplainer | TCAV | None = None, explanation: Mapping | None = None,
                 device: torch.device | str | None = None, partial_dir: str | Path | None = None,
                 channels_last: bool = False, corruptions: CorruptionSuite | None = None) -> None:
        self.model, self.robustness, self.report_robustness = model, robustness, report_robustness
        self.explainer, self.explanation = explainer, dict(explanation or {})
        samples = 0
        if explainer is not None:
            samples = samples_needed(explainer, self.explanation)
            if partial_dir is not None:
                raise TrixaiError("partial results serve robustness-only runs; explanations need fresh adversarial "
                                  "images")
        self.collector = SampleCollector(samples) if explainer is not None else None
        self.intervals: dict[str, list[float]] = {}  # ``<metric>_ci95`` of the flat metrics, after finish()
        self.robust = robustness.start(model, device=device, partial_dir=partial_dir, channels_last=channels_last,
                                       keep_images=samples, checks=report_robustness)
        self.corruptions = corruptions
        self.corrupt = corruptions.start(model, device=device) if corruptions is not None else None

    @property
    def done(self) -> bool:
        """Nothing more is needed from the loader."""
        samples_done = self.collector is None or self.collector.done
        corrupt_done = self.corrupt is None or self.corrupt.done
        return samples_done and corrupt_done and (self.robust.done or not self.report_robustness)

    def update(self, batch: object) -> BatchResult | None:
        """Run the suites' share of this batch; None once the robustness suite has all its points."""
        batch = as_sample_batch(batch)
        if self.collector is not None:
            self.collector.add(batch)
        if self.corrupt is not None:
            self.corrupt.update(batch["image"], batch["target"], batch.get("label_mask"))
        return self.robust.update(batch["image"], batch["target"], batch.get("label_mask"))

    def finish(self, out_dir: str | Path, *, source: Mapping | None = None, wandb_run=None,
               logger=None) -> dict[str, float]:
        """Write the reports into ``out_dir``; return flat metrics (``robust/...``, ``xai/...``); their
        bootstrap intervals are then in :attr:`intervals`."""
        out_dir = Path(out_dir)
        flat: dict[str, float] = {}
        if self.report_robustness:
            evaluation = self.robust.finish()
            evaluation["source"] = dict(source or {})
            flat |= flat_metrics(evaluation)
            self.intervals |= flat_intervals(evaluation)
            write_reports(evaluation, out_dir, wandb_run=wandb_run, flat=flat)
            log.info("robustness report: %s", out_dir / "robustness.md")
        if self.corrupt is not None:
            evaluation = self.corrupt.finish()
            evaluation["source"] = dict(source or {})
            corrupt_flat = corruption_metrics(evaluation)
            flat |= corrupt_flat
            corruption_report.write_reports(evaluation, out_dir, gallery=self.corrupt.gallery(), wandb_run=wandb_run,
                                            flat=corrupt_flat)
            log.info("corruption report: %s", out_dir / "corruptions.md")
        if self.explainer is not None:
            primary = self.robustness.primary
            device = next(self.model.parameters()).device
            samples = self.collector.samples(device)
            severity = None if self.corruptions is None else self.corruptions.explanation_severity
            flat |= explanation_suite(
                self.model, samples, explainer=self.explainer, settings=self.explanation,
                out_dir=out_dir, adversarial=self.robust.adversarial_images(),
                attack=None if primary is None else primary.attack.settings(), logger=logger,
                corrupted=None if severity is None else self.corruptions.corrupt(samples.images, severity),
                corruption=None if severity is None else {"set": self.corruptions.set, "severity": severity})
            self.intervals |= _explanation_intervals(out_dir / "explanations.json")
        return flat


def _explanation_intervals(path: Path) -> dict[str, list[float]]:
    """``xai/<metric>_ci95``: the bootstrap intervals of the means in the explanation report just written."""
    metrics = json.loads(path.read_text()).get("metrics", {}) if path.exists() else {}
    return {f"xai/{key}_ci95": value["mean_ci95"] for key, value in metrics.items()
            if isinstance(value, dict) and value.get("mean_ci95")}


def run_suites(run: SuiteRun, loader: Iterable, out_dir: str | Path, *, progress: bool = True,
               source: Mapping | None = None, wandb_run=None, logger=None) -> dict[str, float]:
    """Drive ``run`` over ``loader`` (stopping once it needs no more batches) and write its reports."""
    total = len(loader) if hasattr(loader, "__len__") else None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("suites (batches)", total=total)
        for batch in loader:
            if run.done:
                break
            run.update(batch)
            bar.advance(task)
    return run.finish(out_dir, source=source, wandb_run=wandb_run, logger=logger)
