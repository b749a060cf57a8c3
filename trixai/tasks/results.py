"""The result tables printed at the end of a run: test metrics clean and under the evaluation attack, the suites'
headline metrics (robust/*, xai/*), and the efficiency profile. A metric ``k`` with ``k_ci95: [low, high]`` beside
it (bootstrap 95 % interval) is printed as ``value [low, high]``."""

from __future__ import annotations

from fnmatch import fnmatch

from rich.console import Console
from rich.table import Table

from trixai.core.bootstrap import SUFFIX
from trixai.suites.robustness import eps_label

METRIC_ORDER = ("acc", "top2", "bal_acc", "f1", "auroc", "auprc", "cam_ssim")
#: Suite metrics shown (all of them are in metrics.json's ``extra`` and the suites' own reports).
SUITE_ROWS = ("robust/*/accuracy", "robust/masking_checks_*", "xai/pointing_game", "xai/energy_pointing_game",
              "xai/mask_area_fraction", "xai/topk_iou", "xai/deletion_auc_*", "xai/insertion_auc_*",
              "xai/stability_ssim", "xai/stability_spearman", "xai/sanity_passed", "xai/tcav*")
PROFILE_ROWS = ("params", "macs", "latency_ms_b1", "throughput_b32")


def attack_label(settings: dict | None) -> str:
    """The attacked column's header: the registry name and eps, e.g. ``pgd10 eps=2/255``."""
    if not settings:
        return "robust"
    eps = settings.get("eps")
    return f"{settings.get('attack', 'attack')} eps={eps_label(eps)}" if eps is not None else settings["attack"]


def results_tables(metrics: dict, meta: dict) -> list[Table]:
    """The test table (rows: metrics; columns: clean and, when the run had an evaluation attack, under it), then a
    table of the suite metrics and one of the profile when the run has them."""
    extra, profile = metrics.get("extra") or {}, metrics.get("profile") or {}
    shown = _evaluation_attack_row(metrics.get("eval_attack"))  # already the test table's attacked column
    sections = {
        "robustness and explanation suites": [(k, _with_interval(v, extra.get(f"{k}{SUFFIX}")))
                                              for k, v in extra.items()
                                              if k != shown and any(fnmatch(k, p) for p in SUITE_ROWS)
                                              and not k.endswith(SUFFIX)],
        "efficiency profile": [(f"profile/{k}", profile[k]) for k in PROFILE_ROWS if k in profile],
    }
    return [_test_table(metrics, meta), *(_value_table(title, rows) for title, rows in sections.items() if rows)]


def _evaluation_attack_row(settings: dict | None) -> str | None:
    """The suite key of the evaluation attack's robust accuracy (``robust/pgd10/2_255/accuracy``)."""
    if not settings or settings.get("eps") is None:
        return None
    return f"robust/{settings['attack']}/{eps_label(settings['eps']).replace('/', '_')}/accuracy"


def _value_table(title: str, rows: list[tuple[str, object]]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, _format(value))
    return table


def _test_table(metrics: dict, meta: dict) -> Table:
    config = meta.get("config", {})
    title = (f"test results: {meta.get('timm_name')} on {config.get('dataset', {}).get('_target_', '?').rsplit('.', 1)[-1]}"
             f", objective {config.get('objective', {}).get('_target_', '?').rsplit('.', 1)[-1]}")
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("clean", justify="right")
    test = metrics.get("test", {})
    attacked = any(k.startswith("rob_") for k in test)
    if attacked:
        table.add_column(attack_label(metrics.get("eval_attack")), justify="right")
    for name in METRIC_ORDER:
        if name in test:
            robust = test.get(f"rob_{name}")
            attacked_cell = [_with_interval(robust, test.get(f"rob_{name}{SUFFIX}"))] if attacked else []
            table.add_row(name, _with_interval(test[name], test.get(f"{name}{SUFFIX}")), *attacked_cell)
    return table


def _with_interval(value: object, interval: list[float] | None) -> str:
    """``0.8123 [0.781, 0.842]``; the bare value without an interval; "—" without a value."""
    if value is None:
        return "—"
    text = _format(value)
    return f"{text} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else text


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def print_results(metrics: dict, meta: dict, console: Console | None = None) -> None:
    """Print :func:`results_tables`."""
    console = console or Console(width=110)
    for table in results_tables(metrics, meta):
        console.print(table)
