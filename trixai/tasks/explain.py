"""``trixai-explain``: saliency maps and their metrics for a trained model, on a dataset split or image files."""

from __future__ import annotations

import glob
import logging
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from trixai.core.errors import TrixaiError
from trixai.core.files import atomic_write_json
from trixai.core.formatting import num
from trixai.core.frozen import frozen_eval
from trixai.core.settings import check_groups
from trixai.core.values import as_list
from trixai.data.images import IMAGE_SUFFIXES, read_image
from trixai.render.html import try_write_run_report, write_run_report
from trixai.suites.explanation import samples_needed
from trixai.suites.robustness import RobustnessSuite
from trixai.suites.runner import SuiteReports, SuiteRun, run_suites
from trixai.tasks.context import TaskContext, open_task, refuse_program_maps, split_targets
from trixai.tasks.loggers import finish_loggers, log_reports
from trixai.tasks.provenance import config_record, write_provenance
from trixai.tasks.quiet import quiet_third_party
from trixai.tasks.sharding import check_shared_folder, close_distributed, distributed, run_task_suites, shard_of
from trixai.xai import figures
from trixai.xai.explainers import MapExplainer

log = logging.getLogger(__name__)
#: The config groups whose settings a shard's fingerprint holds.
GROUPS = ("explainer", "explanation", "attack", "corruptions")


def expand_inputs(inputs) -> list[Path]:
    """Files, folders (their image files, sorted) and glob patterns -> image paths in the given order."""
    items = as_list(inputs)
    paths: list[Path] = []
    for item in items:
        path = Path(str(item)).expanduser()
        if path.is_dir():
            paths.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            paths.append(path)
        else:
            matches = sorted(Path(m) for m in glob.glob(str(path)) if Path(m).is_file())
            if not matches:
                raise TrixaiError(f"inputs: {item!r} is no file, folder or glob with images "
                                  f"({', '.join(IMAGE_SUFFIXES)})")
            paths.extend(matches)
    if not paths:
        raise TrixaiError(f"inputs={items} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def file_samples(paths: list[Path], model, *, resize: str, batch_size: int) -> list[dict]:
    """Decode the files at the model's input size and channels; the target is the model's prediction."""
    images = torch.stack([
        torch.from_numpy(read_image(p, size=model.input_size, channels=model.in_chans, resize=resize)[0].copy())
        .permute(2, 0, 1).float().div(255.0) for p in paths
    ])
    device = next(model.parameters()).device
    with frozen_eval(model), torch.no_grad():
        logits = torch.cat([model(images[i:i + batch_size].to(device)).cpu()
                            for i in range(0, len(images), batch_size)])
    targets = (torch.sigmoid(logits) > 0.5).float() if model.task == "multilabel" else logits.argmax(dim=1)
    return [{"image": images[i], "target": targets[i], "logits": logits[i], "name": paths[i].name}
            for i in range(len(paths))]


def predictions_report(model, samples: list[dict], explainer: MapExplainer, batch_size: int, out_dir: Path) -> list[dict]:
    """Prediction, confidence and a heatmap overlay PNG per input file; returns the rows of predictions.json."""
    (out_dir / "overlays").mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    rows = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        x = torch.stack([s["image"] for s in chunk]).to(device)
        result = explainer(model, x, None)
        for sample, cam, target in zip(chunk, result.maps.cpu(), result.targets.cpu(), strict=True):
            logits = sample["logits"]
            probs = torch.sigmoid(logits) if model.task == "multilabel" else torch.softmax(logits, dim=0)
            label = model.class_names[int(target)]
            row = {"file": sample["name"], "prediction": label, "confidence": float(probs[int(target)]),
                   "probabilities": {n: float(p) for n, p in zip(model.class_names, probs, strict=True)},
                   "overlay": f"overlays/{Path(sample['name']).stem}.png"}
            if model.task == "multilabel":
                row["positive_labels"] = [n for n, p in zip(model.class_names, probs, strict=True) if p > 0.5]
            figures.save_overlay(out_dir / row["overlay"], sample["image"], cam,
                                 f"{sample['name']}: {label} ({row['confidence']:.1%}), {explainer.name}")
            rows.append(row)
    atomic_write_json(out_dir / "predictions.json", rows)
    return rows


def run(cfg: DictConfig) -> dict:
    """Explain, score and report; returns the flat metrics written to the report."""
    quiet_third_party()
    check_groups(cfg)
    L.seed_everything(cfg.seed, workers=True)
    if cfg.explainer is None:
        raise TrixaiError("explainer=none: trixai-explain needs one of explainer=gradcam, multiscale_gradcam, "
                          "se_attention, tcav")
    explainer = instantiate(cfg.explainer)
    settings = OmegaConf.to_container(cfg.explanation, resolve=True)
    shard = shard_of(cfg)
    if cfg.inputs is not None and (shard.count > 1 or shard.merge == "true"):
        raise TrixaiError("inputs= explains a few files in one process: shard.count/shard.merge are for dataset splits")
    sharded = distributed()
    try:
        context = open_task(cfg, "explain", with_dataset=cfg.inputs is None)
        check_shared_folder(cfg, shard, context.run_dir)
        reports = _explain(cfg, context, explainer, settings)
    finally:
        if sharded:
            close_distributed()
    if reports is None:  # a shard whose merge is another process's
        return {}
    out_dir = context.out_dir
    metrics = reports.flat()
    for key, value in metrics.items():
        log.info("%s = %s", key, num(value))
    write_provenance(out_dir, "explain", config=config_record(cfg, context.data_cfg), model=context.origin,
                     dataset=(context.data_cfg or {}).get("_target_"))
    print(f"explanations written to {out_dir}; all results: {write_run_report(out_dir)}")
    if context.run_dir is not None:
        try_write_run_report(context.run_dir)  # the run's page links this explanation
    return metrics


def _explain(cfg: DictConfig, context: TaskContext, explainer, settings: dict) -> SuiteReports | None:
    """The explanation suite on the split (or this process's shard of it), or on the ``inputs`` files."""
    model, out_dir = context.model, context.out_dir
    refuse_program_maps(model)
    attack = instantiate(cfg.attack) if cfg.get("attack") else None
    points = samples_needed(explainer, settings)
    try:
        if cfg.inputs is not None:
            if not isinstance(explainer, MapExplainer):
                raise TrixaiError(f"inputs= needs a map explainer (gradcam, multiscale_gradcam, se_attention); "
                                  f"explainer={explainer.name} scores concepts over a dataset")
            samples = file_samples(expand_inputs(cfg.inputs), model, resize=cfg.resize,
                                   batch_size=int(settings["batch_size"]))
            rows = predictions_report(model, samples, explainer, int(settings["batch_size"]), out_dir)
            for row in rows:
                log.info("%s: %s (%.1f%%)", row["file"], row["prediction"], 100 * row["confidence"])
            loader = [{k: torch.stack([s[k] for s in samples]) if k != "name" else [s[k] for s in samples]
                       for k in ("image", "target", "name")}]
            settings["max_points"] = points = len(samples)
            suite = RobustnessSuite.from_config(None, eval_attack=attack, seed=int(cfg.seed), max_points=points)
            suites = SuiteRun(model, robustness=suite, report_robustness=False, explainer=explainer,
                              explanation=settings, device=context.device, block=int(cfg.block_size))
            reports = run_suites(suites, loader, out_dir, progress=False)
        else:
            # the stability attack runs on the explained points only (drawn stratified from the seed)
            suite = RobustnessSuite.from_config(None, eval_attack=attack, seed=int(cfg.seed))
            suites = SuiteRun(model, robustness=suite, report_robustness=False, explainer=explainer,
                              explanation=settings, device=context.device,
                              corruptions=context.corruption_suite(cfg, max_points=points),
                              split_targets=split_targets(context.bundle.split(str(cfg.split))), explain_only=True,
                              block=int(cfg.block_size))
            reports = run_task_suites(suites, context, cfg, program="trixai-explain", groups=GROUPS,
                                      split=str(cfg.split), batch_size=int(settings["batch_size"]), out_dir=out_dir,
                                      source={}, progress=False)
        if reports is not None:
            log_reports(context.loggers, reports, out_dir)
    finally:
        finish_loggers(context.loggers)
    return reports
