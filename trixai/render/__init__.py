"""Renderers of the typed reports: JSON + markdown + report figures (:func:`write_report`), report.html
(:mod:`trixai.render.html`) and the console tables (:mod:`trixai.render.console`), all from the views of
:mod:`trixai.render.views`."""

from __future__ import annotations

from pathlib import Path

from trixai.core.files import atomic_write_json, atomic_write_text, json_safe
from trixai.core.reports import (
    CertificationReport,
    CorruptionReport,
    ExplanationReport,
    Report,
    RobustnessReport,
    TcavReport,
)
from trixai.render.figures import (
    CALIBRATION,
    CERTIFIED_CURVE,
    CORRUPTION_CURVE,
    ROBUST_CURVE,
    plot_accuracy_vs_eps,
    plot_accuracy_vs_severity,
    plot_calibration,
    plot_certified_accuracy,
)
from trixai.render.markdown import (
    certification_markdown,
    corruption_markdown,
    explanation_markdown,
    robustness_markdown,
)

#: The JSON file of each report type (its markdown twin has the same stem).
FILES = {RobustnessReport: "robustness.json", CorruptionReport: "corruptions.json",
         ExplanationReport: "explanations.json", TcavReport: "explanations.json",
         CertificationReport: "certification.json"}


def write_report(report: Report, out_dir: str | Path) -> list[Path]:
    """Draw the report's figures (added to ``report.figures``), then write its JSON and markdown into
    ``out_dir``; returns the files written."""
    out_dir = Path(out_dir)
    written = []
    if isinstance(report, RobustnessReport):
        if len(report.eps) > 1 and ROBUST_CURVE not in report.figures:  # a curve needs two budgets
            written.append(plot_accuracy_vs_eps(report, out_dir / ROBUST_CURVE))
            report.figures.insert(0, ROBUST_CURVE)
        if report.clean.scores.curves and CALIBRATION not in report.figures:
            written.append(plot_calibration(report, out_dir / CALIBRATION))
            report.figures.append(CALIBRATION)
        markdown = robustness_markdown(report)
    elif isinstance(report, CorruptionReport):
        if CORRUPTION_CURVE not in report.figures:
            written.append(plot_accuracy_vs_severity(report, out_dir / CORRUPTION_CURVE))
            report.figures.insert(0, CORRUPTION_CURVE)
        markdown = corruption_markdown(report)
    elif isinstance(report, CertificationReport):
        if CERTIFIED_CURVE not in report.figures:
            written.append(plot_certified_accuracy(report, out_dir / CERTIFIED_CURVE))
            report.figures.append(CERTIFIED_CURVE)
        markdown = certification_markdown(report)
    else:
        markdown = explanation_markdown(report)
    path = out_dir / FILES[type(report)]
    atomic_write_json(path, json_safe(report.to_json()))
    atomic_write_text(path.with_suffix(".md"), markdown)
    return [path, path.with_suffix(".md"), *written]
