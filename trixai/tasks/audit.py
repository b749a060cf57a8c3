"""Auditing a model in memory that trixai did not train: :func:`audit`, the Python API (models in files enter through
the ``external`` keys of ``trixai-eval``/``trixai-explain``, :mod:`trixai.tasks.context`). The same suites run as
for a trixai run; the reports record the model's origin (``provenance.json``) and ``report.html`` shows them."""

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
from omegaconf import OmegaConf
from torch import nn

from trixai.core.errors import TrixaiError
from trixai.models.external import wrap_module
from trixai.models.factory import TrixModel
from trixai.render.html import write_run_report
from trixai.suites.base import PointBatch
from trixai.suites.robustness import RobustnessSuite, model_fingerprint
from trixai.suites.runner import SuiteRun, run_suites
from trixai.tasks.context import check_first_batch
from trixai.tasks.provenance import write_provenance
from trixai.xai.explainers import MapExplainer

log = logging.getLogger(__name__)


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
        first = next(iterator)
    except StopIteration as err:
        raise TrixaiError("audit: the loader yields no batches") from err
    if not isinstance(model, TrixModel):
        image = PointBatch.of(first).image
        model = wrap_module(model, class_names=class_names, task=task, input_size=input_size or image.shape[-1],
                            mean=mean, std=std, in_chans=in_chans or image.shape[1], name=name, cam_layer=cam_layer)
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
    flat = run_suites(run, batches, out_dir, progress=progress, source={"model": model.name, "api": "trixai.audit"}).flat()
    config = {"class_names": list(class_names), "task": task, "mean": mean, "std": std, "cam_layer": cam_layer,
              "robustness": robustness if isinstance(robustness, (str, Mapping, type(None))) else suite.settings(),
              "attack": attack if isinstance(attack, (str, type(None))) else attack.settings(),
              "explainer": map_explainer.settings() if map_explainer is not None else None,
              "explanation": settings, "seed": seed, "device": str(device)}
    write_provenance(out_dir, "audit", config=config, model=origin, command=f"trixai.audit() called by: {' '.join(sys.argv) or 'python'}")
    path = write_run_report(out_dir)
    log.info("audit report: %s", path)
    return flat
