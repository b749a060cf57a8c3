"""Auditing a model trixai did not train: the ``external`` keys of ``trixai-eval``/``trixai-explain`` (a timm name
+ a state-dict file, or a TorchScript file, with its metadata) and :func:`audit`, the Python API for a model in
memory. The same suites run as for a trixai run; the reports record the model's origin (``provenance.json``) and
``report.html`` shows them."""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from trixai.core.errors import TrixaiError
from trixai.models.external import ExternalSpec, ScriptedBackbone, check_batch, load_external, wrap_module
from trixai.models.factory import TrixModel
from trixai.robust.model_checks import probabilities
from trixai.suites.robustness import RobustnessSuite, model_fingerprint
from trixai.suites.runner import SuiteRun, as_sample_batch, run_suites
from trixai.tasks.html_report import write_run_report
from trixai.tasks.provenance import write_provenance
from trixai.xai.explainers import MapExplainer

log = logging.getLogger(__name__)
SPEC_KEYS = ("file", "arch", "meta", "class_names", "input_size", "mean", "std", "task", "in_chans")


def external_spec(cfg: DictConfig) -> ExternalSpec | None:
    """The ``external`` block of an eval/explain config as a spec; None when no ``external.file`` is given.
    ``ckpt`` and ``external.file`` exclude each other, and one of them is needed."""
    block = cfg.get("external") or {}
    given = block.get("file")
    if given and cfg.get("ckpt"):
        raise TrixaiError(f"ckpt={cfg.ckpt} and external.file={given} both given: audit one model at a time")
    if not given:
        if not cfg.get("ckpt"):
            raise TrixaiError("no model: ckpt=<trixai run dir, .ckpt or model.safetensors>, or a model trixai did "
                              "not train: external.file=<weights.safetensors|.pth> external.arch=<timm name> (or "
                              "external.file=<TorchScript .pt>) with external.class_names=[...] (docs/audit.md)")
        return None
    plain = OmegaConf.to_container(block, resolve=True)
    return ExternalSpec(**{k: plain.get(k) for k in SPEC_KEYS})


def dataset_bundle(cfg: DictConfig, spec: ExternalSpec):
    """The chosen dataset, its images sized to the model's input, loaded; its class names fill in the spec's
    when the caller gave none."""
    chosen = cfg.get("dataset")
    if chosen is None or not chosen.get("_target_"):
        raise TrixaiError("an external model records no dataset: choose one with dataset=<name> (e.g. dataset=folder "
                          "dataset.root=/path/to/images)")
    resolved = OmegaConf.create({"model": {"resolution": spec.values["input_size"]}, "paths": cfg.paths,
                                 "dataset": OmegaConf.to_container(chosen, resolve=False)})
    data_cfg = OmegaConf.to_container(resolved.dataset, resolve=True)
    bundle = instantiate(data_cfg, _convert_="all").load()
    spec.provide_class_names(bundle.info.class_names, f"dataset {data_cfg['_target_'].rsplit('.', 1)[-1]} "
                             "(assumed to be the model's output order)")
    return bundle, data_cfg


def check_dataset(spec: ExternalSpec, bundle) -> None:
    """The dataset's classes (in order), task and channels are the model's."""
    names = list(spec.values["class_names"])
    if names != list(bundle.info.class_names) and sorted(names) == sorted(bundle.info.class_names):
        raise TrixaiError(f"the model's classes {names} ({spec.sources['class_names']}) are the dataset's in another "
                          f"order {list(bundle.info.class_names)}: give the dataset the model's order, "
                          f"dataset.class_names=[{','.join(names)}] (folder/csv datasets)")
    if names != list(bundle.info.class_names):
        raise TrixaiError(f"the model's {len(names)} classes {names[:10]} ({spec.sources['class_names']}) differ from "
                          f"the dataset's {len(bundle.info.class_names)} {list(bundle.info.class_names)[:10]} (order "
                          "matters): name the model's classes in its output order, or pick the matching dataset")
    if bundle.info.task != spec.values["task"]:
        raise TrixaiError(f"the dataset is {bundle.info.task}, the model {spec.values['task']} "
                          f"({spec.sources['task']}): set external.task={bundle.info.task} if that is the model's")
    if bundle.info.in_chans != spec.values.get("in_chans", bundle.info.in_chans):
        raise TrixaiError(f"the dataset yields {bundle.info.in_chans}-channel images, the model takes "
                          f"{spec.values['in_chans']} ({spec.sources['in_chans']}): set dataset.channels="
                          f"{spec.values['in_chans']} (folder/csv datasets) or give the model's external.in_chans")


def open_external(cfg: DictConfig, spec: ExternalSpec, device: str | torch.device, *, with_dataset: bool = True):
    """The external model and (``with_dataset``) its dataset bundle and resolved config."""
    bundle, data_cfg = dataset_bundle(cfg, spec) if with_dataset else (None, None)
    model = load_external(spec, map_location=device)  # first: the weights' own class count is the surest fact
    if bundle is not None:
        check_dataset(spec, bundle)
    return model, bundle, data_cfg


def check_first_batch(model: nn.Module, batch: object, where: str) -> None:
    """Channels and class count (:func:`~trixai.models.external.check_batch`) on a first batch, then that the
    outputs are logits (:func:`~trixai.robust.model_checks.probabilities`): attacks and Grad-CAM need them."""
    out = check_batch(model, as_sample_batch(batch)["image"], num_classes=len(model.class_names), where=where)
    verdict = probabilities(out.float(), getattr(model, "task", "multiclass") == "multilabel")
    if not verdict["passed"]:
        raise TrixaiError(f"the model outputs probabilities, not logits, on the first images of {where} "
                          f"({verdict['detail']}). Attacks and Grad-CAM need logits (pre-softmax/sigmoid scores): "
                          "through a saturated softmax the gradients vanish and the model looks robust. Export or wrap "
                          "the model without its final softmax/sigmoid")


def refuse_torchscript_maps(model: nn.Module) -> None:
    """Explanations hook layers, which TorchScript does not allow."""
    if isinstance(getattr(model, "backbone", None), ScriptedBackbone):
        raise TrixaiError("a TorchScript model cannot be explained: torch.jit modules allow no forward hooks, which "
                          "Grad-CAM, SE attention and TCAV need. Give its architecture and weights instead "
                          "(external.arch=<timm name> external.file=<weights .safetensors/.pth>); trixai-eval audits "
                          "TorchScript models")


def split_loader(bundle, split: str, batch_size: int) -> DataLoader:
    if split not in ("train", "val", "test"):
        raise TrixaiError(f"split={split!r} is not one of ['train', 'val', 'test']")
    return DataLoader(bundle.split(split), batch_size=batch_size, shuffle=False, num_workers=0)


# ---------------------------------------------------------------------------------------------------------------
# the Python API

def group_config(group: str, option: str) -> dict:
    """A trixai config group option (``robustness/full``) composed by Hydra, as a plain dict."""
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app: trixai's search-path plugin serves the groups
        cfg = compose(config_name=f"{group}/{option}")
    else:
        with initialize_config_module(config_module="trixai.conf", version_base="1.3"):
            cfg = compose(config_name=f"{group}/{option}")
    return OmegaConf.to_container(cfg[group], resolve=True)


def _suite(robustness: str | Mapping | RobustnessSuite | None, attack, seed: int) -> RobustnessSuite:
    eval_attack = instantiate(group_config("attack", attack)) if isinstance(attack, str) else attack
    if isinstance(robustness, RobustnessSuite):
        return robustness
    settings = group_config("robustness", robustness) if isinstance(robustness, str) else robustness
    return RobustnessSuite.from_config(settings, eval_attack=eval_attack, seed=seed)


def audit(model: nn.Module, loader: Iterable, *, class_names: Sequence[str], task: str = "multiclass",
          out_dir: str | Path = "audit", mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
          input_size: int | None = None, in_chans: int | None = None, cam_layer: str | None = None,
          robustness: str | Mapping | RobustnessSuite | None = "cpu", attack: str | Any | None = "pgd10",
          explainer: str | MapExplainer | None = "gradcam", explanation: Mapping | None = None,
          device: str | torch.device | None = None, seed: int = 0, progress: bool = False,
          name: str | None = None) -> dict[str, float]:
    """Robustness and explanation audit of a model in memory; writes robustness.json/.md, explanations.json/.md,
    figures/, provenance.json and report.html into ``out_dir`` and returns the flat metrics.

    ``model`` maps images to logits; ``loader`` yields ``(images, targets)`` or dicts with ``image``/``target``,
    images in [0, 1]. ``mean``/``std``: the normalisation the model expects (applied inside; None: none).
    ``robustness``: a ``robustness`` group option (``cpu``, ``full``), a dict of its keys or a suite (None: no
    robustness report); ``attack``: the ``attack`` group option whose adversarial images the stability metrics use
    (it joins the suite at its ε; None: no stability metrics); ``explainer``: an ``explainer`` group option or a
    map explainer (None: no explanations); ``explanation``: keys over ``explanation/default``; ``cam_layer``: the
    module path Grad-CAM uses (default: timm's last feature stage).
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out_dir = Path(out_dir)
    iterator = iter(loader)
    try:
        first = as_sample_batch(next(iterator))
    except StopIteration as err:
        raise TrixaiError("audit: the loader yields no batches") from err
    if not isinstance(model, TrixModel):
        model = wrap_module(model, class_names=class_names, task=task, input_size=input_size or first["image"].shape[-1],
                            mean=mean, std=std, in_chans=in_chans or first["image"].shape[1], name=name,
                            cam_layer=cam_layer)
    model = model.to(device).eval()
    check_first_batch(model, first, "the loader")
    batches = itertools.chain([first], iterator)
    suite = _suite(robustness, attack, seed) if robustness is not None or attack is not None else None
    if suite is None:
        suite = RobustnessSuite.from_config(None, seed=seed)
    map_explainer = instantiate(group_config("explainer", explainer)) if isinstance(explainer, str) else explainer
    settings = {**group_config("explanation", "default"), **dict(explanation or {})}
    run = SuiteRun(model, robustness=suite, report_robustness=robustness is not None, explainer=map_explainer,
                   explanation=settings, device=device)
    origin = {"source": "module in memory (trixai.audit)", "architecture": model.name,
              "sha256": model_fingerprint(model), "sha256_of": "the state dict (names, shapes, values)",
              "metadata": {"architecture": model.name, "class_names": list(class_names), "task": task,
                           "input_size": model.input_size, "in_chans": model.in_chans,
                           "mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist()},
              "metadata_from": {"all fields": "arguments of trixai.audit"
                                + ("" if mean is not None else "; no normalisation given: the model takes [0, 1] images")}}
    flat = run_suites(run, batches, out_dir, progress=progress, source={"model": model.name, "api": "trixai.audit"})
    config = {"class_names": list(class_names), "task": task, "mean": mean, "std": std, "cam_layer": cam_layer,
              "robustness": robustness if isinstance(robustness, (str, Mapping, type(None))) else suite.settings(),
              "attack": attack if isinstance(attack, (str, type(None))) else attack.settings(),
              "explainer": map_explainer.settings() if map_explainer is not None else None,
              "explanation": settings, "seed": seed, "device": str(device)}
    write_provenance(out_dir, "audit", config=config, model=origin, command=f"trixai.audit() called by: {' '.join(sys.argv) or 'python'}")
    path = write_run_report(out_dir)
    log.info("audit report: %s", path)
    return flat
