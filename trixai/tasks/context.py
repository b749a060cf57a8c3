"""One task context for ``trixai-eval``, ``trixai-explain``, ``trixai.audit`` and the test phase of
``trixai-train``: the device, the model (a trixai run, or a model trixai did not train), the dataset split checked
against the model's classes, the suites of the config groups, the loggers and the output folder.

An evaluation or explanation of a trixai run writes into its own folder under the run (``<run>/evals/<name>``,
``name`` defaults to ``<task>-<time>``), so the run's own reports are never replaced; a folder that already holds a
finished report is refused unless ``overwrite=true`` (a folder holding only partial results resumes).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from trixai.core.errors import TrixaiError
from trixai.models.export import load_model
from trixai.models.external import ExternalModelInfo, ExternalSpec, ProgramBackbone, check_batch, load_external
from trixai.render.html import EVALUATIONS
from trixai.robust.model_checks import probabilities
from trixai.suites.base import PointBatch
from trixai.suites.corruption import CorruptionSuite
from trixai.tasks.provenance import run_model_origin

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
SPEC_KEYS = ("file", "arch", "meta", "class_names", "input_size", "mean", "std", "task", "in_chans")
#: Files of a finished evaluation or explanation: an output folder holding one is not written over silently.
REPORTS = {"eval": ("robustness.json", "corruptions.json"),
           "explain": ("explanations.json", "predictions.json", "corruptions.json")}


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), or any torch device name."""
    if name == "auto":  # under torchrun: each process its own GPU
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise TrixaiError(f"device={name!r} is not a torch device (auto, cpu, cuda, cuda:0, ...)") from err


def dataset_name(data_cfg: dict | None) -> str | None:
    """The name that picks a dataset's corruption set (``corruptions=auto``): a MedMNIST flag, else the source's
    ``name``."""
    if not data_cfg or not data_cfg.get("_target_"):
        return None
    return data_cfg.get("flag") or getattr(get_class(data_cfg["_target_"]), "name", None)


def run_dir_of(ckpt: Path) -> Path:
    """The run directory of a run dir, a ``checkpoints/*.ckpt`` or a ``model.safetensors``."""
    if ckpt.is_dir():
        return ckpt
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def dataset_config(cfg: DictConfig, meta: dict, input_size: int) -> dict:
    """The dataset recorded in the model's metadata; a chosen config (``dataset=synthetic_cxr``) replaces it,
    keys without a ``_target_`` (``+dataset.n_test=32``) update it. Images are sized for the model's input."""
    recorded = dict(meta.get("config", {}).get("dataset") or {})
    chosen = cfg.get("dataset")
    chosen = OmegaConf.to_container(chosen, resolve=False) if chosen is not None else {}
    if chosen.get("_target_"):
        resolved = OmegaConf.create({"model": {"resolution": input_size}, "paths": cfg.paths, "dataset": chosen})
        return OmegaConf.to_container(resolved.dataset, resolve=True)
    if not recorded:
        raise TrixaiError(f"ckpt={cfg.ckpt}: the model's metadata records no dataset; choose one with dataset=<name> "
                          "(e.g. dataset=synthetic_lesions)")
    return {**recorded, **chosen}


def external_spec(cfg: DictConfig) -> ExternalModelInfo | None:
    """The ``external`` block of an eval/explain config, resolved; None when no ``external.file`` is given.
    ``ckpt`` and ``external.file`` exclude each other, and one of them is needed."""
    block = cfg.get("external") or {}
    given = block.get("file")
    if given and cfg.get("ckpt"):
        raise TrixaiError(f"ckpt={cfg.ckpt} and external.file={given} both given: audit one model at a time")
    if not given:
        if not cfg.get("ckpt"):
            raise TrixaiError("no model: ckpt=<trixai run dir, .ckpt or model.safetensors>, or a model trixai did "
                              "not train: external.file=<weights.safetensors|.pth> external.arch=<timm name> (or "
                              "external.file=<TorchScript .pt or torch.export .pt2>) with external.class_names=[...] "
                              "(docs/audit.md)")
        return None
    plain = OmegaConf.to_container(block, resolve=True)
    return ExternalSpec(**{k: plain.get(k) for k in SPEC_KEYS}).resolve()


def dataset_bundle(cfg: DictConfig, spec: ExternalModelInfo):
    """The chosen dataset, its images sized to the model's input, loaded, its resolved config, and ``spec`` with
    the dataset's class names when the caller gave none."""
    chosen = cfg.get("dataset")
    if chosen is None or not chosen.get("_target_"):
        raise TrixaiError("an external model records no dataset: choose one with dataset=<name> (e.g. dataset=folder "
                          "dataset.root=/path/to/images)")
    resolved = OmegaConf.create({"model": {"resolution": spec.input_size}, "paths": cfg.paths,
                                 "dataset": OmegaConf.to_container(chosen, resolve=False)})
    data_cfg = OmegaConf.to_container(resolved.dataset, resolve=True)
    bundle = instantiate(data_cfg, _convert_="all").load()
    spec = spec.with_class_names(bundle.info.class_names, f"dataset {data_cfg['_target_'].rsplit('.', 1)[-1]} "
                                 "(assumed to be the model's output order)")
    return bundle, data_cfg, spec


def check_dataset(spec: ExternalModelInfo, bundle) -> None:
    """The dataset's classes (in order), task and channels are the model's."""
    names = list(spec.class_names)
    if names != list(bundle.info.class_names) and sorted(names) == sorted(bundle.info.class_names):
        raise TrixaiError(f"the model's classes {names} ({spec.sources['class_names']}) are the dataset's in another "
                          f"order {list(bundle.info.class_names)}: give the dataset the model's order, "
                          f"dataset.class_names=[{','.join(names)}] (folder/csv datasets)")
    if names != list(bundle.info.class_names):
        raise TrixaiError(f"the model's {len(names)} classes {names[:10]} ({spec.sources['class_names']}) differ from "
                          f"the dataset's {len(bundle.info.class_names)} {list(bundle.info.class_names)[:10]} (order "
                          "matters): name the model's classes in its output order, or pick the matching dataset")
    if bundle.info.task != spec.task:
        raise TrixaiError(f"the dataset is {bundle.info.task}, the model {spec.task} "
                          f"({spec.sources['task']}): set external.task={bundle.info.task} if that is the model's")
    if bundle.info.in_chans != spec.in_chans:
        raise TrixaiError(f"the dataset yields {bundle.info.in_chans}-channel images, the model takes "
                          f"{spec.in_chans} ({spec.sources['in_chans']}): set dataset.channels="
                          f"{spec.in_chans} (folder/csv datasets) or give the model's external.in_chans")


def open_external(cfg: DictConfig, spec: ExternalModelInfo, device: str | torch.device, *,
                  with_dataset: bool = True):
    """The external model (its provenance in ``model.meta['external']``) and (``with_dataset``) its dataset bundle
    and resolved config."""
    bundle, data_cfg, spec = dataset_bundle(cfg, spec) if with_dataset else (None, None, spec)
    model = load_external(spec, map_location=device)  # first: the weights' own class count is the surest fact
    if bundle is not None:
        check_dataset(spec, bundle)
    return model, bundle, data_cfg


def check_first_batch(model: nn.Module, batch: object, where: str) -> None:
    """Channels and class count (:func:`~trixai.models.external.check_batch`) on a first batch, then that the
    outputs are logits (:func:`~trixai.robust.model_checks.probabilities`): attacks and Grad-CAM need them."""
    out = check_batch(model, PointBatch.of(batch).image, num_classes=len(model.class_names), where=where)
    verdict = probabilities(out.float(), getattr(model, "task", "multiclass") == "multilabel")
    if not verdict["passed"]:
        raise TrixaiError(f"the model outputs probabilities, not logits, on the first images of {where} "
                          f"({verdict['detail']}). Attacks and Grad-CAM need logits (pre-softmax/sigmoid scores): "
                          "through a saturated softmax the gradients vanish and the model looks robust. Export or wrap "
                          "the model without its final softmax/sigmoid")


def refuse_program_maps(model: nn.Module) -> None:
    """Explanations hook layers, which a TorchScript or ExportedProgram model does not allow."""
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, ProgramBackbone):
        raise TrixaiError(f"this {backbone.format} model cannot be explained: {backbone.no_hooks}, and Grad-CAM, SE "
                          "attention and TCAV need forward hooks. Give its architecture and weights instead "
                          "(external.arch=<timm name> external.file=<weights .safetensors/.pth>); trixai-eval audits "
                          f"{backbone.format} models")


def split_targets(dataset) -> torch.Tensor | None:
    """The targets of every point of a split, in order, when the dataset holds them (None otherwise)."""
    targets = getattr(dataset, "targets", None)
    return None if targets is None else torch.as_tensor(np.array(targets))


@dataclass
class TaskContext:
    """What an evaluation command works on."""

    model: nn.Module
    device: torch.device
    origin: dict
    meta: dict
    out_dir: Path
    run_dir: Path | None = None
    data_cfg: dict | None = None
    bundle: object | None = None
    loggers: list[Logger] = field(default_factory=list)

    @property
    def dataset(self) -> str | None:
        """The dataset's name for ``corruptions=auto``."""
        return dataset_name(self.data_cfg)

    def loader(self, split: str, batch_size: int) -> DataLoader:
        """The split in order (no shuffling), its first batch checked against the model."""
        if split not in SPLITS:
            raise TrixaiError(f"split={split!r} is not one of {list(SPLITS)}")
        if self.bundle is None:
            raise TrixaiError("no dataset: choose one with dataset=<name>")
        loader = DataLoader(self.bundle.split(split), batch_size=batch_size, shuffle=False, num_workers=0)
        name = (self.data_cfg or {}).get("_target_", "?").rsplit(".", 1)[-1]
        check_first_batch(self.model, next(iter(loader)), f"the {split} split of {name}")
        return loader

    def corruption_suite(self, cfg: DictConfig, *, max_points: int | None = None) -> CorruptionSuite | None:
        """The ``corruptions`` group's suite (None when off); ``max_points``: the split's first points only."""
        if cfg.get("corruptions") is None:
            return None
        settings = OmegaConf.to_container(cfg.corruptions, resolve=True)
        if max_points is not None:
            settings["max_points"] = max_points
        return CorruptionSuite.from_config(settings, dataset=self.dataset, seed=int(cfg.seed))


def open_task(cfg: DictConfig, task: str, *, with_dataset: bool = True) -> TaskContext:
    """The model of ``ckpt`` (or of the ``external`` keys), its dataset (``with_dataset``), the loggers and the
    output folder of ``task`` (``eval`` | ``explain``)."""
    device = resolve_device(str(cfg.device))
    spec = external_spec(cfg)
    if spec is None:
        ckpt = Path(str(cfg.ckpt)).expanduser()
        model = load_model(ckpt, map_location=device)
        meta = dict(getattr(model, "meta", {}) or {})
        context = TaskContext(model, device, run_model_origin(ckpt, meta), meta, Path(), run_dir=run_dir_of(ckpt))
        if with_dataset:
            context.data_cfg = dataset_config(cfg, meta, model.input_size)
            context.bundle = instantiate(context.data_cfg, _convert_="all").load()
            if list(context.bundle.info.class_names) != list(model.class_names):
                raise TrixaiError(f"dataset classes {list(context.bundle.info.class_names)} differ from the model's "
                                  f"{list(model.class_names)} (ckpt={cfg.ckpt}; order matters)")
    else:  # a model trixai did not train
        model, bundle, data_cfg = open_external(cfg, spec, device, with_dataset=with_dataset)
        context = TaskContext(model, device, model.meta["external"], {"timm_name": model.name}, Path(),
                              bundle=bundle, data_cfg=data_cfg)
    context.out_dir = output_dir(cfg, task, context.run_dir)
    context.loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    return context


def output_dir(cfg: DictConfig, task: str, run_dir: Path | None) -> Path:
    """``out_dir`` when given; else ``<run>/evals/<name>`` for a trixai run, the command's Hydra folder otherwise.
    A folder holding a finished report is refused unless ``overwrite=true``."""
    if cfg.get("out_dir"):
        out = Path(str(cfg.out_dir)).expanduser()
    elif run_dir is not None:
        out = run_dir / EVALUATIONS / str(cfg.get("name") or task)
    else:
        out = Path(cfg.paths.output_dir)
    if dist.is_initialized():  # torchrun: every process writes where the first does (its name holds its start time)
        shared = [str(out)]
        dist.broadcast_object_list(shared, src=0)
        out = Path(shared[0])
    finished = [name for name in REPORTS[task] if (out / name).exists()]
    if finished and not cfg.get("overwrite", False):
        key = "out_dir" if cfg.get("out_dir") else "name"
        raise TrixaiError(f"{out} already holds {', '.join(finished)} of an earlier {task}: choose another "
                          f"{key}=..., or overwrite=true to replace them")
    out.mkdir(parents=True, exist_ok=True)
    return out
