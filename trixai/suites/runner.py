"""One pass over a loader serves every suite: each batch goes through the robustness suite once, and the
explanation suite explains the first samples, reusing the evaluation attack's adversarial images.

The same :class:`SuiteRun` is driven by Lightning's test loop (the test phase of ``trixai-train``) and by
:func:`run_suites` (``trixai-eval``, ``trixai-explain``), so every number has one implementation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.suites.explanation import SampleCollector, explanation_suite
from trixai.suites.robustness import BatchResult, RobustnessSuite, flat_metrics
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
    """

    def __init__(self, model: nn.Module, *, robustness: RobustnessSuite, report_robustness: bool = True,
                 explainer: MapExplainer | TCAV | None = None, explanation: Mapping | None = None,
                 device: torch.device | str | None = None, partial_dir: str | Path | None = None,
                 channels_last: bool = False) -> None:
        self.model, self.robustness, self.report_robustness = model, robustness, report_robustness
        self.explainer, self.explanation = explainer, dict(explanation or {})
        samples = 0
        if explainer is not None:
            samples = samples_needed(explainer, self.explanation)
            if partial_dir is not None:
                raise TrixaiError("partial results serve robustness-only runs; explanations need fresh adversarial "
                                  "images")
        self.collector = SampleCollector(samples) if explainer is not None else None
        self.robust = robustness.start(model, device=device, partial_dir=partial_dir, channels_last=channels_last,
                                       keep_images=samples, checks=report_robustness)

    @property
    def done(self) -> bool:
        """Nothing more is needed from the loader."""
        samples_done = self.collector is None or self.collector.done
        return samples_done and (self.robust.done or not self.report_robustness)

    def update(self, batch: object) -> BatchResult | None:
        """Run the suites' share of this batch; None once the robustness suite has all its points."""
        batch = as_sample_batch(batch)
        if self.collector is not None:
            self.collector.add(batch)
        return self.robust.update(batch["image"], batch["target"], batch.get("label_mask"))

    def finish(self, out_dir: str | Path, *, source: Mapping | None = None, wandb_run=None,
               logger=None) -> dict[str, float]:
        """Write the reports into ``out_dir``; return flat metrics (``robust/...``, ``xai/...``)."""
        out_dir = Path(out_dir)
        flat: dict[str, float] = {}
        if self.report_robustness:
            evaluation = self.robust.finish()
            evaluation["source"] = dict(source or {})
            flat |= flat_metrics(evaluation)
            write_reports(evaluation, out_dir, wandb_run=wandb_run, flat=flat)
            log.info("robustness report: %s", out_dir / "robustness.md")
        if self.explainer is not None:
            primary = self.robustness.primary
            device = next(self.model.parameters()).device
            flat |= explanation_suite(
                self.model, self.collector.samples(device), explainer=self.explainer, settings=self.explanation,
                out_dir=out_dir, adversarial=self.robust.adversarial_images(),
                attack=None if primary is None else primary.attack.settings(), logger=logger)
        return flat


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
