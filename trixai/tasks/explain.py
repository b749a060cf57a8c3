"""``trixai-explain``: saliency maps and their metrics for a trained model, on a dataset split or image files."""

from __future__ import annotations

import glob
import logging
from pathlib import Path

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader

from trixai.core.errors import TrixaiError
from trixai.core.files import atomic_write_json
from trixai.core.frozen import frozen_eval
from trixai.core.values import as_list
from trixai.data.images import IMAGE_SUFFIXES, read_image
from trixai.models.export import load_model
from trixai.suites.corruption import CorruptionSuite
from trixai.suites.robustness import RobustnessSuite
from trixai.suites.runner import SuiteRun, run_suites, samples_needed
from trixai.tasks.audit import check_first_batch, external_spec, open_external, refuse_torchscript_maps, split_loader
from trixai.tasks.html_report import write_run_report
from trixai.tasks.provenance import config_record, run_model_origin, write_provenance
from trixai.tasks.quiet import quiet_third_party
from trixai.xai import figures
from trixai.xai.explainers import MapExplainer

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise TrixaiError(f"device={name!r} is not a torch device (auto, cpu, cuda, cuda:0, ...)") from err


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


def dataset_loader(cfg: DictConfig, model) -> DataLoader:
    """The configured (or the model's training) dataset's split, checked against the model's classes."""
    with open_dict(cfg):
        cfg.model = {"resolution": model.input_size}  # datasets size their images by ${model.resolution}
    dataset_cfg = cfg.get("dataset")
    if dataset_cfg is None:
        recorded = (getattr(model, "meta", None) or {}).get("config", {}).get("dataset")
        if not recorded:
            raise TrixaiError(f"ckpt={cfg.ckpt} records no dataset: pass dataset=<name> or inputs=<files>")
        dataset_cfg = OmegaConf.create(recorded)
    bundle = instantiate(dataset_cfg).load()
    if tuple(bundle.info.class_names) != tuple(model.class_names):
        raise TrixaiError(f"dataset classes {list(bundle.info.class_names)} differ from the model's "
                          f"{list(model.class_names)} (ckpt={cfg.ckpt})")
    if cfg.split not in ("train", "val", "test"):
        raise TrixaiError(f"split={cfg.split!r} is not one of ['train', 'val', 'test']")
    return DataLoader(bundle.split(cfg.split), batch_size=int(cfg.explanation.batch_size), shuffle=False)


def _corruption_suite(cfg: DictConfig, model, points: int) -> CorruptionSuite | None:
    """The ``corruptions`` group on the explained samples only (stability under corruption, corruptions.json);
    ``auto`` picks the set of the dataset (its MedMNIST flag or its source's name)."""
    if cfg.get("corruptions") is None:
        return None
    settings = {**OmegaConf.to_container(cfg.corruptions, resolve=True), "max_points": points}
    dataset = None
    if cfg.inputs is None:
        data = cfg.get("dataset") or (getattr(model, "meta", None) or {}).get("config", {}).get("dataset") or {}
        if data.get("_target_"):
            dataset = data.get("flag") or getattr(get_class(data["_target_"]), "name", None)
    return CorruptionSuite.from_config(settings, dataset=dataset, seed=int(cfg.seed))


def run(cfg: DictConfig) -> dict:
    """Explain, score and report; returns the flat metrics written to the report."""
    quiet_third_party()
    L.seed_everything(cfg.seed, workers=True)
    if cfg.explainer is None:
        raise TrixaiError("explainer=none: trixai-explain needs one of explainer=gradcam, multiscale_gradcam, "
                          "se_attention, tcav")
    explainer = instantiate(cfg.explainer)
    settings = OmegaConf.to_container(cfg.explanation, resolve=True)
    out_dir = Path(cfg.paths.output_dir)
    spec = external_spec(cfg)
    bundle = data_cfg = None
    if spec is None:
        model = load_model(cfg.ckpt, map_location=resolve_device(cfg.device))
        origin = run_model_origin(cfg.ckpt, model.meta)
    else:  # a model trixai did not train (the external keys); inputs= needs no dataset
        model, bundle, data_cfg = open_external(cfg, spec, resolve_device(cfg.device), with_dataset=cfg.inputs is None)
        origin = spec.provenance()
    refuse_torchscript_maps(model)
    attack = instantiate(cfg.attack) if cfg.get("attack") else None
    loggers: list[Logger] = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
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
            settings["max_samples"] = len(samples)
        else:
            loader = (dataset_loader(cfg, model) if bundle is None else
                      split_loader(bundle, cfg.split, int(settings["batch_size"])))
            check_first_batch(model, next(iter(loader)), f"the {cfg.split} split")
        # the stability attack runs on the explained samples only, seeded per batch as in every suite
        suite = RobustnessSuite.from_config(None, eval_attack=attack, seed=int(cfg.seed), max_points=samples_needed(explainer, settings))
        suites = SuiteRun(model, robustness=suite, report_robustness=False, explainer=explainer, explanation=settings,
                          corruptions=_corruption_suite(cfg, model, samples_needed(explainer, settings)))
        wandb_logger = next((lg for lg in loggers if isinstance(lg, WandbLogger)), None)
        metrics = run_suites(suites, loader, out_dir, progress=False, logger=wandb_logger)
        for logger in loggers:
            logger.log_metrics(metrics)
        for key, value in metrics.items():
            log.info("%s = %.4f", key, value)
        if data_cfg is None and cfg.inputs is None:  # the dataset of a trixai run: chosen, or recorded in model.json
            data_cfg = (OmegaConf.to_container(cfg.dataset, resolve=True) if cfg.get("dataset") is not None
                        else (model.meta.get("config") or {}).get("dataset"))
        write_provenance(out_dir, "explain", config=config_record(cfg, data_cfg), model=origin,
                         dataset=(data_cfg or {}).get("_target_"))
        print(f"explanations written to {out_dir}; all results: {write_run_report(out_dir)}")
        return metrics
    finally:
        for logger in loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.finish()
