"""The result tables printed at the end of a run: test metrics clean and under the evaluation attack, the suites'
headline metrics (robust/*, xai/*), and the efficiency profile. A metric ``k`` with ``k_ci95: [low, high]`` beside
it (95 % interval) is printed as ``value [low, high]``; labels and order come from the metric catalogue."""

from __future__ import annotations

from fnmatch import fnmatch

from rich.console import Console
from rich.table import Table

from trixai.core import catalogue
from trixai.core.bootstrap import SUFFIX
from trixai.core.formatting import eps_key, value, with_interval
from trixai.render.views import test_view

#: Suite metrics shown (all of them are in metrics.json's ``extra`` and the suites' own reports).
SUITE_ROWS = ("robust/*/accuracy", "robust/masking_checks_*", "xai/pointing_game", "xai/energy_pointing_game",
              "xai/mask_area_fraction", "xai/topk_iou", "xai/deletion_auc_*", "xai/insertion_auc_*",
              "xai/stability_ssim", "xai/stability_spearman", "xai/sanity_passed", "xai/tcav*")
PROFILE_ROWS = ("params", "macs", "latency_ms_b1", "throughput_b32")


def results_tables(metrics: dict, meta: dict) -> list[Table]:
    """The test table (rows: metrics; columns: clean and, when the run had an evaluation attack, under it), then a
    table of the suite metrics and one of the profile when the run has them."""
    extra, profile = metrics.get("extra") or {}, metrics.get("profile") or {}
    shown = _evaluation_attack_row(metrics.get("eval_attack"))  # already the test table's attacked column
    sections = {
        "robustness and explanation suites": [(k, with_interval(v, extra.get(f"{k}{SUFFIX}")))
                                              for k, v in extra.items()
                                              if k != shown and any(fnmatch(k, p) for p in SUITE_ROWS)
                                              and not k.endswith(SUFFIX)],
        "efficiency profile": [(f"profile/{k}", value(profile[k])) for k in PROFILE_ROWS if k in profile],
    }
    return [_test_table(metrics, meta), *(_value_table(title, rows) for title, rows in sections.items() if rows)]


def _evaluation_attack_row(attack: dict | None) -> str | None:
    """The suite key of the evaluation attack's robust accuracy (``robust/pgd10/2_255/accuracy``)."""
    if not attack or attack.get("eps") is None:
        return None
    return f"robust/{attack['name']}/{eps_key(attack['eps'])}/accuracy"


def _value_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, text in rows:
        table.add_row(name, text)
    return table


def _test_table(metrics: dict, meta: dict) -> Table:
    config = meta.get("config", {})
    title = (f"test results: {meta.get('timm_name')} on {config.get('dataset', {}).get('_target_', '?').rsplit('.', 1)[-1]}"
             f", objective {config.get('objective', {}).get('_target_', '?').rsplit('.', 1)[-1]}")
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("clean", justify="right")
    view = test_view(metrics, [])  # the rows report.html shows; here only the catalogued metrics
    if view is None:
        return table
    if view["attacked"]:
        table.add_column(view["attack_header"], justify="right")
    for row in view["rows"]:
        if catalogue.metric(row["key"]) is None:
            continue
        columns = ("clean", "attacked") if view["attacked"] else ("clean",)
        table.add_row(row["key"], *(with_interval(row[c]["value"], row[c]["ci"]) for c in columns))
    return table


def print_results(metrics: dict, meta: dict, console: Console | None = None) -> None:
    """Print :func:`results_tables`."""
    console = console or Console(width=110)
    for table in results_tables(metrics, meta):
        console.print(table)
