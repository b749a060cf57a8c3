"""The result table printed at the end of a run: clean vs attacked test metrics, plus suite rows."""

from __future__ import annotations

from fnmatch import fnmatch

from rich.console import Console
from rich.table import Table

METRIC_ORDER = ("acc", "top2", "bal_acc", "f1", "auroc", "auprc", "cam_ssim")
# Suite metrics shown in the table (all of them are in metrics.json and the suites' own reports).
EXTRA_ROWS = ("robust/*/accuracy", "robust/masking_checks_*", "xai/pointing_game", "xai/energy_pointing_game",
              "xai/mask_area_fraction", "xai/topk_iou", "xai/deletion_auc_blur", "xai/insertion_auc_blur",
              "xai/stability_ssim", "xai/stability_spearman", "xai/sanity_passed", "xai/tcav*")
PROFILE_ROWS = ("params", "macs", "latency_ms_b1", "throughput_b32")


def attack_label(settings: dict | None) -> str:
    if not settings:
        return "robust"
    eps = settings.get("eps")
    steps = f"-{settings['steps']}" if settings.get("attack") == "pgd" else ""
    return f"{settings.get('attack', 'attack')}{steps} eps={eps * 255:.3g}/255" if eps is not None else settings["attack"]


def results_table(metrics: dict, meta: dict) -> Table:
    """Rows: test metrics; columns: clean and, when the run had an evaluation attack, under it; then suite and
    profile rows."""
    config = meta.get("config", {})
    title = (f"test results: {meta.get('timm_name')} on {config.get('dataset', {}).get('_target_', '?').rsplit('.', 1)[-1]}"
             f", objective {config.get('objective', {}).get('_target_', '?').rsplit('.', 1)[-1]}")
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("clean", justify="right")
    test = metrics.get("test", {})
    attacked = any(k.startswith("test/rob_") for k in test)
    if attacked:
        table.add_column(attack_label(metrics.get("eval_attack")), justify="right")
    for name in METRIC_ORDER:
        if f"test/{name}" in test:
            robust = test.get(f"test/rob_{name}")
            cells = [f"{test[f'test/{name}']:.4f}", *(["—" if robust is None else f"{robust:.4f}"] if attacked else [])]
            table.add_row(name, *cells)
    rows = [(k, v) for k, v in metrics.get("extra", {}).items() if any(fnmatch(k, p) for p in EXTRA_ROWS)]
    rows += [(f"profile/{k}", metrics["profile"][k]) for k in PROFILE_ROWS if k in metrics.get("profile", {})]
    for name, value in rows:
        table.add_row(name, _format(value), *([""] if attacked else []))
    return table


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def print_results(metrics: dict, meta: dict, console: Console | None = None) -> None:
    (console or Console(width=110)).print(results_table(metrics, meta))
