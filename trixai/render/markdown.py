"""Markdown reports (robustness.md, corruptions.md, explanations.md) rendered from the views of
:mod:`trixai.render.views`, the same views report.html renders."""

from __future__ import annotations

import math

from trixai.core.formatting import MISSING, num, value, verdict, with_interval
from trixai.core.reports import CertificationReport, CorruptionReport, ExplanationReport, RobustnessReport, TcavReport
from trixai.render.views import certification_view, corruption_view, explanation_view, robustness_view, tcav_view


def _ci(c: dict | None) -> str:
    return MISSING if c is None else with_interval(c["value"], c["ci"])


def _table(header: list[str], rows: list[list[str]], align: str = "---") -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([align] * len(header)) + "|"]
    return lines + ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in rows]


def robustness_markdown(report: RobustnessReport) -> str:
    v = robustness_view(report)
    lines = ["# Robustness report", ""]
    lines += [f"- {key}: `{val}`" for key, val in v["source"].items()]
    lines += [f"- task: {v['task']}, {v['n_outputs']} outputs, {v['n_points']} points",
              f"- device: {v['device']}; early stop on fooled points: {v['early_stop']}; batches reused from partial "
              f"results: {v['resumed_batches']}",
              *([f"- execution: {v['execution']}"] if v["execution"] else []),
              f"- 95 % confidence intervals in brackets: {v['bootstrap']}", "", "## Accuracy per attack and eps", ""]
    lines += _table(["attack", *v["labels"]],
                    [[f"**{r['name']}**" if r["strong"] else r["name"],
                      *[f"**{_ci(c)}**" if r["strong"] else _ci(c) for c in r["cells"]]] for r in v["accuracy"]])
    lines += ["", "## Details per attack and eps", ""]
    header = ["attack", "eps", "accuracy", *v["detail_names"], "success rate", "mean ‖δ‖∞·255", "max ‖δ‖∞·255",
              "‖δ‖∞ ≤ ε", "images/s"]
    rows = []
    for d in v["details"]:
        linf = ["—", "—", "—"] if d["linf"] is None else [num(d["linf"][0], 3), num(d["linf"][1], 3),
                                                          "yes" if d["linf"][2] else "NO"]
        rows.append([d["attack"], d["eps"], *(_ci(c) for c in d["cells"]), _ci(d["success"]) if d["success"] else "—",
                     *linf, num(d["images_per_s"])])
    lines += _table(header, rows)
    if v["sources"]:
        lines += ["", "## Which attack run produced each metric", ""]
        lines += _table(["attack", "eps", "metrics", "run"], [[s["attack"], s["eps"], s["metrics"], s["run"]]
                                                             for s in v["sources"]])
    reference = f" at eps = {v['reference']}" if v["reference"] else ""
    lines += ["", f"## Per-{v['kind']} accuracy{reference}", ""]
    lines += _table([v["kind"], *v["per_output_columns"]],
                    [[r["name"], *(value(c) for c in r["cells"])] for r in v["per_class_accuracy"]])
    if v["per_class_auroc"]:
        lines += ["", f"## Per-{v['kind']} AUROC{reference}", ""]
        lines += _table([v["kind"], *v["per_output_columns"]],
                        [[r["name"], *(value(c) for c in r["cells"])] for r in v["per_class_auroc"]])
    if v["auroc_undefined"]:
        lines += ["", "Undefined AUROC (no positives or no negatives among the points; left out of every macro mean): "
                      f"{', '.join(v['auroc_undefined'])}."]
    if v["broken_by"]:
        lines += ["", "## Which attack broke each point (worst case)", ""]
        lines += _table(["eps", *v["broken_by_columns"]], [[b["eps"], *b["counts"]] for b in v["broken_by"]])
    for c in v["components"]:
        parts = ", ".join(f"{k}: {n}" for k, n in c["parts"].items())
        lines.append(f"\nAutoAttack at {c['eps']}, points broken per component (each runs on the points still "
                     f"robust): {parts}.")
    lines += ["", "## Gradient-masking checks", "",
              "Checks of Athalye et al. (2018) and AutoAttack's own (Croce & Hein 2020, `autoattack/checks.py`); a FAIL "
              "means the robust accuracies above may overstate robustness (docs/robustness.md).", ""]
    lines += _table(["check", "result", "detail"], [[c["check"], verdict(c["passed"]), c["detail"]] for c in v["checks"]])
    if v["probe"]:
        lines.append(f"\nLarge-eps probe settings: `{v['probe']}`")
    lines += ["", "## Attack settings", "", "Every setting of every attack run (eps in [0, 1] pixel units):", ""]
    lines += [f"- **{s['name']}**: `{s['json']}`" for s in v["settings"]]
    lines += ["", "## Definitions", "", *(f"- {d}" for d in v["definitions"])]
    lines += ["", *(f"![{f.rsplit('/', 1)[-1]}]({f})" for f in v["figures"])]
    return "\n".join(lines) + "\n"


def corruption_markdown(report: CorruptionReport) -> str:
    v = corruption_view(report)
    clean, baseline = v["clean"], v["baseline"]
    size = v["image_size"]
    means = "; ".join(f"{k} {value(val, 3)}" for k, val in v["means"].items())
    lines = [
        f"# Corruptions: {v['set']} set", "",
        f"- points: {v['n_points']}" + (f", image size {size[0]}×{size[1]}" if size else "")
        + f" (pixel parameters scaled from {v['reference_size']} px), seed {v['seed']}",
        f"- clean: accuracy {_ci(clean['accuracy'])}, balanced accuracy {_ci(clean['balanced_accuracy'])}, "
        f"macro AUROC {_ci(clean['auroc'])}, ECE {_ci(clean['ece'])}",
        f"- 95 % confidence intervals in brackets: {v['bootstrap']}",
        f"- {means}; worst corruption {v['worst'].get('name')} (mean accuracy "
        f"{value(v['worst'].get('mean_accuracy'), 3)})",
        (f"- baseline {baseline['path']}" if baseline else
         "- no baseline model: CE/mCE/BE/rBE need `corruptions.baseline=<its corruptions.json>`"),
        "", "## Accuracy per corruption and severity", ""]
    lines += _table(["corruption", *(f"s{s}" for s in v["severities"]), *v["extra_names"]],
                    [[r["name"], *(_ci(c) for c in r["cells"]), *(value(x, 3) for x in r["extra"])] for r in v["rows"]])
    lines += ["", "## Balanced accuracy, macro AUROC and calibration (ECE) per severity", ""]
    lines += _table(["corruption", *(f"bal. acc s{s}" for s in v["severities"]), *(f"AUROC s{s}" for s in v["severities"]),
                     *(f"ECE s{s}" for s in v["severities"])],
                    [[r["name"], *(value(x, 3) for x in (*r["balanced"], *r["auroc"], *r["ece"]))] for r in v["rows"]])
    lines += ["", "## Definitions", "", *(f"- {d}" for d in v["definitions"]), "", "## Corruptions", ""]
    lines += [f"- {c['name']} ({c['scaling']}): {c['parameters']} — {c['source']}" + (f"; {c['note']}" if c["note"] else "")
              for c in v["corruptions"]]
    lines += ["", *(f"![{f.rsplit('/', 1)[-1]}]({f})" for f in v["figures"])]
    return "\n".join(lines) + "\n"


def explanation_markdown(report: ExplanationReport | TcavReport) -> str:
    return tcav_markdown(report) if isinstance(report, TcavReport) else _map_markdown(report)


def _map_markdown(report: ExplanationReport) -> str:
    v = explanation_view(report)
    lines = [f"# Explanations: {v['explainer']} on {v['model']}", "",
             f"{v['n_samples']} images; target: {v['target']}; attack: {v['attack'] or 'none'}.", ""]
    lines += [f"**Uninformative:** {flag}" for flag in v["flags"]] + ([""] if v["flags"] else [])
    rows = []
    for r in v["rows"]:
        hint = " (lower is better)" if r["better"] == "lower" else ""
        std = "" if r["std"] is None or not math.isfinite(r["std"]) else f" ± {r['std']:.4f}"
        mean = "undefined" if r["mean"] is None else f"{r['mean']:.4f}"
        ci = f"[{r['ci'][0]:.4f}, {r['ci'][1]:.4f}]" if r["ci"] else "—"
        rows.append([f"{r['name']}{hint}", f"{mean}{std}", ci, r["n"]])
    lines += _table(["metric", "mean ± std", "95 % CI of the mean (bootstrap)", "n"], rows)
    if v["variants"]:
        lines += ["", "Variants:", "", *(f"- {line}" for line in v["variants"])]
    if v["chance_note"]:
        lines += ["", "Chance levels: pointing_game_chance (the grown mask's area) for the pointing game, "
                      "mask_area_fraction for the energy pointing game."]
    sanity = v["sanity"]
    if sanity:
        lines += ["", f"## Parameter randomisation ({'passed' if sanity['passed'] else 'FAILED'}: final Spearman "
                      f"{sanity['final_spearman']:.3f} < {sanity['max_spearman']})", ""]
        lines += _table(["randomised down to", "SSIM vs trained", "Spearman vs trained"],
                        [[s["stage"], f"{s['ssim']:.4f}", f"{s['spearman']:.4f}"] for s in sanity["stages"]])
    if v["se"]:
        lines += ["", "## SE gates per module", ""]
        lines += _table(["module", "channels", "mean", "std", "min", "max"],
                        [[n, s["channels"], f"{s['mean']:.4f}", f"{s['std']:.4f}", f"{s['min']:.4f}", f"{s['max']:.4f}"]
                         for n, s in v["se"].items()])
    lines += ["", *(f"![{f.rsplit('/', 1)[-1].removesuffix('.png')}]({f})" for f in v["figures"]), ""]
    return "\n".join(lines)


def tcav_markdown(report: TcavReport) -> str:
    t = tcav_view(report)["tcav"]
    lines = [f"# TCAV: concept {t['concept']!r} at {t['layer']} of {report.model}", "",
             f"{t['n_concept']} concept images; {t['n_runs']} runs, each with its own random set, and {t['n_runs']} "
             f"random-vs-random CAVs from further random sets ({t['n_random_sets']} independent random sets). CAV: "
             f"{t['fit']}. Score = fraction of the class's images with a positive directional derivative; p: two-sided "
             f"{t['test']} t-test of the concept's scores against the random-vs-random scores (Kim et al. 2018); "
             f"Bonferroni: p × m, m = {t['bonferroni']} hypotheses (one per class tested).", ""]

    def p_text(value) -> str:
        return f"{value:.2g}" if value is not None and math.isfinite(value) else "nan"

    rows = [[r["class_name"], f"{r['score_mean']:.3f} ± {r['score_std']:.3f}",
             f"{r['random_score_mean']:.3f} ± {r['random_score_std']:.3f}", p_text(r.get("p_value")),
             "yes" if r["significant"] else "no", p_text(r.get("p_value_bonferroni")),
             "yes" if r.get("significant_bonferroni") else "no", f"{r['cav_accuracy_mean']:.3f}", r["n_runs"],
             r["n_inputs"]] for r in t["results"]]
    lines += _table(["class", "TCAV score (mean ± std)", "random CAVs (mean ± std)", "p", "significant",
                     "p (Bonferroni)", "significant (Bonferroni)", "CAV accuracy", "runs", "n"], rows)
    return "\n".join(lines) + "\n"


def certification_markdown(report: CertificationReport) -> str:
    v = certification_view(report)
    lines = ["# Certified robustness: randomized smoothing", "",
             f"- {v['n_points']} points; Gaussian noise sigma = {v['sigma']:g} in [0, 1] pixel units; n0 = {v['n0']} "
             f"selection and n = {v['n']} estimation samples per point; alpha = {v['alpha']:g} (Cohen, Rosenfeld & "
             "Kolter 2019)",
             f"- certified accuracy at radius 0 (certified and right): {_ci(v['certified'])}; abstained: "
             f"{v['abstain_rate']:.4f}; mean certified radius (0 where not certified and right): {v['mean_radius']:.4f}",
             (f"- smoothed classifier (PREDICT): accuracy {_ci(v['smoothed'])}, abstained {v['smoothed_abstain']:.4f}"
              if v["smoothed"] else "- PREDICT not run (certify.predict=false)"),
             f"- the base model on the same points: accuracy {v['base_accuracy']:.4f}",
             f"- {num(v['seconds_per_image'])} s per image", "", "## Certified accuracy per L2 radius", ""]
    lines += _table(["L2 radius", "L-inf equivalent (r/sqrt(d), x255)", "certified accuracy"],
                    [[f"{r['radius']:g}", f"{r['linf']:.3f}", _ci(r["cell"])] for r in v["rows"]])
    lines += ["", f"d = {v['dimension']} input values. A radius r certifies every L2 perturbation of norm < r; the L-inf "
                  "ball of radius r/sqrt(d) lies inside it, so r/sqrt(d) is the L-inf budget this guarantee covers. "
                  "The guarantee is for the smoothed classifier (the majority vote under noise), not for the model "
                  "the attacks above evaluate, and holds with probability 1 - alpha per point.", ""]
    lines += [f"![{f.rsplit('/', 1)[-1]}]({f})" for f in v["figures"]]
    return "\n".join(lines) + "\n"
