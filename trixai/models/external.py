"""Models trixai did not train: a timm architecture with a state-dict file, a TorchScript file, or a module in
memory, wrapped as a :class:`~trixai.models.factory.TrixModel` (normalisation inside, [0, 1] images in, logits out).

The file does not say what it was trained on, so the metadata comes from the caller: class names (output order),
input size, normalisation, task, input channels. Each value's source is recorded (``metadata_from``) beside the
file's SHA-256, for the reports. Checks that need data (:func:`check_batch`) say what is wrong with a model that
would see images of another channel count or has another class count than the data.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
import yaml
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.core.kinds import TASKS
from trixai.models.factory import TrixModel, create_model
from trixai.models.weights import apply_weights, read_state_dict

#: The metadata an external model needs, in the order reports show it.
FIELDS = ("class_names", "input_size", "mean", "std", "task", "in_chans")


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive: a zip with a ``code/`` folder (a ``torch.save`` state dict has none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


@dataclass
class ExternalSpec:
    """What the caller says about a model file: ``file`` (``.safetensors``/``.pth`` state dict with ``arch``, or a
    TorchScript file without), ``meta`` (a JSON/YAML file with any of :data:`FIELDS`; values given here win), and
    the fields themselves. ``key``: the config prefix named in error messages."""

    file: str
    arch: str | None = None
    meta: str | None = None
    class_names: Sequence[str] | str | None = None
    input_size: int | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    task: str | None = None
    in_chans: int | None = None
    key: str = "external"
    values: dict[str, Any] = field(default_factory=dict, init=False)
    sources: dict[str, str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.path = Path(str(self.file)).expanduser()
        if not self.path.is_file():
            raise TrixaiError(f"{self.key}.file={str(self.file)!r}: no such file")
        self.torchscript = self.arch is None
        if self.torchscript and not is_torchscript(self.path):
            raise TrixaiError(f"{self.key}.file={str(self.path)!r} is not a TorchScript file: a state dict "
                              f"(.safetensors, .pth) needs its architecture, {self.key}.arch=<timm name>")
        if self.arch is not None and not timm.is_model(self.arch):
            create_model(self.arch, 1)  # raises the factory's message with close names
        recorded = self._meta_file()
        given = {k: getattr(self, k) for k in FIELDS}
        for name in FIELDS:
            if given[name] is not None:
                self._set(name, given[name], "given")
            elif recorded.get(name) is not None:
                self._set(name, recorded[name], f"metadata file {self.meta}")
        if self.arch is None and recorded.get("arch"):
            raise TrixaiError(f"{self.meta} names arch={recorded['arch']!r}, but {self.path.name} is TorchScript")
        self._defaults()

    def _meta_file(self) -> dict:
        if self.meta is None:
            return {}
        path = Path(str(self.meta)).expanduser()
        if not path.is_file():
            raise TrixaiError(f"{self.key}.meta={str(self.meta)!r}: no such file")
        try:
            data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
        except (json.JSONDecodeError, yaml.YAMLError) as err:
            raise TrixaiError(f"{self.key}.meta={str(path)!r}: not readable JSON/YAML ({err})") from err
        if not isinstance(data, Mapping):
            raise TrixaiError(f"{self.key}.meta={str(path)!r}: expected a mapping with keys {list(FIELDS)}")
        return dict(data)

    def _set(self, name: str, value: Any, source: str) -> None:
        if name == "class_names":
            value = self._class_names(value)
        elif name in ("input_size", "in_chans"):
            value = int(value)
        elif name in ("mean", "std"):
            value = [float(v) for v in value]
        elif name == "task" and value not in TASKS:
            raise TrixaiError(f"{self.key}.task={value!r} is not one of {list(TASKS)}")
        self.values[name] = value
        self.sources[name] = source

    def _class_names(self, value: Sequence[str] | str) -> list[str]:
        if isinstance(value, str):
            path = Path(value).expanduser()
            if not path.is_file():
                raise TrixaiError(f"{self.key}.class_names={value!r}: give a list [a,b,...] or a .txt (one name a "
                                  "line) / .json (a list) file")
            text = path.read_text()
            value = json.loads(text) if path.suffix == ".json" else [line.strip() for line in text.splitlines()
                                                                      if line.strip()]
        names = [str(v) for v in value]
        if len(set(names)) != len(names) or not names:
            raise TrixaiError(f"{self.key}.class_names={names}: expected distinct names, one per model output")
        return names

    def _defaults(self) -> None:
        pretrained = timm.get_pretrained_cfg(self.arch) if self.arch else None
        if pretrained is not None:
            cfg = pretrained.to_dict()
            where = f"timm pretrained_cfg of {self.arch}"
            if "input_size" not in self.values:
                self._set("input_size", cfg["input_size"][-1], where)
            for name in ("mean", "std"):
                if name not in self.values:
                    self._set(name, cfg[name], where)
        if "task" not in self.values:
            self._set("task", "multiclass", "default")
        if "in_chans" not in self.values and "mean" in self.values:
            self._set("in_chans", len(self.values["mean"]), "length of mean")
        missing = [k for k in ("input_size", "mean", "std") if k not in self.values]
        if missing:
            raise TrixaiError(f"{self.key}: {', '.join(f'{self.key}.{k}' for k in missing)} needed for a TorchScript "
                              f"model (trixai feeds [0, 1] images and normalises them by mean/std; mean=[0,0,0] "
                              f"std=[1,1,1] when the model normalises itself)")
        if len(self.values["mean"]) != len(self.values["std"]) or len(self.values["mean"]) not in (
                1, self.values["in_chans"]):
            raise TrixaiError(f"{self.key}: mean {self.values['mean']} and std {self.values['std']} need one value "
                              f"per input channel (in_chans={self.values['in_chans']})")

    def provide_class_names(self, names: Sequence[str], source: str) -> None:
        """Take the class names from the data (``source`` says which) when the caller gave none."""
        if "class_names" not in self.values:
            self._set("class_names", list(names), source)

    def provenance(self) -> dict:
        """The model's origin for the reports: kind, file, SHA-256, architecture, metadata and its sources."""
        return {"source": "TorchScript file" if self.torchscript else "timm architecture + state-dict file",
                "file": str(self.path.resolve()), "sha256": file_sha256(self.path),
                "architecture": self.arch or f"TorchScript ({self.path.name})",
                "metadata": {"architecture": self.arch or f"TorchScript {self.path.name}", **self.values},
                "metadata_from": dict(self.sources)}


class ScriptedBackbone(nn.Module):
    """A loaded TorchScript module as a backbone (``forward`` only; TorchScript allows no forward hooks, so no
    Grad-CAM)."""

    def __init__(self, module: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x)


def load_external(spec: ExternalSpec, *, map_location: str | torch.device = "cpu") -> TrixModel:
    """Build the model ``spec`` describes, in eval mode; ``.meta`` holds its provenance."""
    values = spec.values
    if "class_names" not in values:
        raise TrixaiError(f"{spec.key}.class_names is needed (a list, or a .txt/.json file) when no dataset gives them")
    names, in_chans = values["class_names"], values.get("in_chans", len(values["mean"]))
    mean, std = list(values["mean"]), list(values["std"])
    if len(mean) == 1 and in_chans > 1:
        mean, std = mean * in_chans, std * in_chans
    if spec.torchscript:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
            try:
                module = torch.jit.load(str(spec.path), map_location="cpu")
            except RuntimeError as err:
                raise TrixaiError(f"{spec.key}.file={str(spec.path)!r}: torch.jit.load failed ({err})") from err
        model = TrixModel(ScriptedBackbone(module), name=f"torchscript:{spec.path.name}", class_names=names,
                          task=values["task"], input_size=values["input_size"], mean=mean, std=std)
    else:
        state = read_state_dict(spec.path, key=f"{spec.key}.file")
        model = create_model(spec.arch, len(names), class_names=names, task=values["task"], in_chans=in_chans,
                             resolution=values["input_size"], mean=mean, std=std)
        _check_head(spec, model, state)
        reinit = apply_weights(model.backbone, state, source=f"{spec.key}.file={str(spec.path)!r}",
                               arch_key=f"{spec.key}.arch")
        if reinit:  # _check_head caught a differing head; anything else re-initialised is a mismatch too
            raise TrixaiError(f"{spec.key}.file: the classifier {reinit} does not fit {len(names)} classes")
    model.meta = {"external": spec.provenance()}
    return model.to(map_location).eval()


def _check_head(spec: ExternalSpec, model: TrixModel, state: Mapping[str, Tensor]) -> None:
    """An audit must not re-initialise the classifier: a head of another class count is an error."""
    classifier = (model.backbone.pretrained_cfg or {}).get("classifier")
    weight = state.get(f"{classifier}.weight") if classifier else None
    if weight is not None and weight.ndim >= 1 and weight.shape[0] != len(spec.values["class_names"]):
        raise TrixaiError(
            f"{spec.key}.file={str(spec.path)!r}: its classifier ({classifier}) has {weight.shape[0]} outputs, but "
            f"{len(spec.values['class_names'])} class names came from {spec.sources['class_names']} "
            f"({spec.values['class_names'][:8]}): give the model's own class names in its output order")


def wrap_module(module: nn.Module, *, class_names: Sequence[str], task: str = "multiclass",
                input_size: int | None = None, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None, in_chans: int | None = None, name: str | None = None,
                cam_layer: str | None = None) -> TrixModel:
    """A module in memory (taking normalised images, returning logits) as a model of [0, 1] images.

    ``mean``/``std``: the normalisation the module expects (None: it takes [0, 1] images as they are);
    ``cam_layer``: a module path of ``module`` for Grad-CAM (default: timm's feature stages, when it has them).
    """
    in_chans = int(in_chans or (len(mean) if mean is not None else first_conv_channels(module) or 3))
    mean = list(mean) if mean is not None else [0.0] * in_chans
    std = list(std) if std is not None else [1.0] * in_chans
    model = TrixModel(module, name=name or getattr(module, "default_cfg", {}).get("architecture")
                      or type(module).__name__, class_names=class_names, task=task, input_size=int(input_size or 0),
                      mean=mean, std=std)
    if cam_layer is not None:
        if cam_layer not in dict(module.named_modules()):
            raise TrixaiError(f"cam_layer={cam_layer!r} is not a module of the model (see model.named_modules())")
        model.cam_layers = {k: f"backbone.{cam_layer}" for k in ("low", "mid", "high", "final")}
    return model


def first_conv_channels(module: nn.Module) -> int | None:
    """Input channels of the first 2-D convolution (None when there is none)."""
    conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return None if conv is None else int(conv.in_channels)


def check_batch(model: nn.Module, x: Tensor, *, num_classes: int, where: str) -> Tensor:
    """Fail with one clear message when ``model`` cannot take images like ``x`` (another channel count) or
    outputs another number of scores than ``num_classes`` (``where`` names the data); returns the outputs of the
    first (up to) 16 images."""
    expected = int(getattr(model, "in_chans", 0) or x.shape[1])
    if x.ndim != 4 or x.shape[1] != expected:
        raise TrixaiError(f"{where} yields images of shape {tuple(x.shape[1:])} (channels first), the model takes "
                          f"{expected} channels: convert the images (folder/csv datasets: dataset.channels="
                          f"{expected}) or give the model's in_chans")
    device = next(model.parameters()).device
    with torch.no_grad():
        try:
            out = model(x[:16].to(device))
        except RuntimeError as err:
            raise TrixaiError(f"the model fails on {where}'s images {tuple(x.shape[1:])}: {str(err).splitlines()[0]}"
                              ) from err
    if not isinstance(out, Tensor) or out.ndim != 2:
        raise TrixaiError(f"the model returns {type(out).__name__} {tuple(getattr(out, 'shape', ()))} per batch; "
                          "expected logits of shape (batch, classes)")
    if out.shape[1] != num_classes:
        raise TrixaiError(f"the model outputs {out.shape[1]} scores per image, {where} has {num_classes} classes")
    return out
