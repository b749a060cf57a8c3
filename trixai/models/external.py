"""Models trixai did not train: a timm architecture with a state-dict file, a TorchScript file, a torch.export
``.pt2`` file (ExportedProgram), or a module in memory, wrapped as a :class:`~trixai.models.factory.TrixModel`
(normalisation inside, [0, 1] images in, logits out).

The file does not say what it was trained on, so the metadata comes from the caller: class names (output order),
input size, normalisation, task, input channels. :class:`ExternalSpec` holds what the caller said; its
:meth:`~ExternalSpec.resolve` gives the one record the rest reads, :class:`ExternalModelInfo`: the file's format,
the architecture and every metadata value with its source (``metadata_from`` in the reports, beside the file's
SHA-256). Checks that need data (:func:`check_batch`) say what is wrong with a model that would see images of
another channel count or has another class count than the data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import timm
import torch
import yaml
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.core.kinds import TASKS
from trixai.models.factory import TrixModel, create_model
from trixai.models.weights import PROGRAM_NAMES, apply_weights, program_format, read_state_dict

log = logging.getLogger(__name__)

#: The metadata an external model needs, in the order reports show it.
FIELDS = ("class_names", "input_size", "mean", "std", "task", "in_chans")
#: A model file's format (:attr:`ExternalModelInfo.format`) -> its origin as the reports name it.
ORIGINS = {"state dict": "timm architecture + state-dict file", "TorchScript": "TorchScript file",
           "ExportedProgram": "ExportedProgram file (torch.export)"}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ExternalModelInfo:
    """A resolved external model: its file, format (a key of :data:`ORIGINS`), timm architecture (state dicts
    only), the metadata values and, per value, where it came from (``sources``: ``given``, ``metadata file <path>``,
    ``timm pretrained_cfg of <arch>``, ``length of mean``, ``default``, or the dataset). ``class_names`` is None
    until the caller or the data gives them; ``key``: the config prefix named in error messages."""

    path: Path
    format: str
    arch: str | None
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    task: str
    in_chans: int
    sources: Mapping[str, str]
    class_names: tuple[str, ...] | None = None
    key: str = "external"

    def with_class_names(self, names: Sequence[str], source: str) -> ExternalModelInfo:
        """This model with the class names of the data (``source`` says which) when it has none yet; else itself."""
        if self.class_names is not None:
            return self
        return dataclasses.replace(self, class_names=_class_names(names, self.key),
                                   sources=MappingProxyType({**self.sources, "class_names": source}))

    @property
    def metadata(self) -> dict[str, Any]:
        """The known metadata values (JSON types), in :data:`FIELDS` order."""
        values = {name: getattr(self, name) for name in FIELDS if getattr(self, name) is not None}
        return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}

    def provenance(self) -> dict:
        """The model's origin for the reports: kind, file, SHA-256, architecture, metadata and its sources."""
        architecture = self.arch or f"{self.format} ({self.path.name})"
        return {"source": ORIGINS[self.format], "file": str(self.path.resolve()), "sha256": file_sha256(self.path),
                "architecture": architecture, "metadata": {"architecture": architecture, **self.metadata},
                "metadata_from": dict(self.sources)}


@dataclass(frozen=True)
class ExternalSpec:
    """What the caller says about a model file: ``file`` (a ``.safetensors``/``.pth`` state dict with ``arch``, a
    timm name; or a TorchScript or torch.export ``.pt2`` file, which carries its architecture, without), ``meta``
    (a JSON/YAML file with any of :data:`FIELDS`; values given here win), and the fields themselves. ``key``: the
    config prefix named in error messages. :meth:`resolve` checks it all and fills in the defaults."""

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

    def resolve(self) -> ExternalModelInfo:
        """The model as :class:`ExternalModelInfo`: format detected from the file's content, each metadata value
        from the caller, else the ``meta`` file, else the architecture's timm ``pretrained_cfg`` or a default."""
        key, path = self.key, Path(str(self.file)).expanduser()
        if not path.is_file():
            raise TrixaiError(f"{key}.file={str(self.file)!r}: no such file")
        program = program_format(path)
        if program is not None and self.arch is not None:
            raise TrixaiError(f"{key}.file={str(path)!r} is {PROGRAM_NAMES[program]} file, which carries its own "
                              f"architecture: {key}.arch is for state dicts (.safetensors, .pth), drop "
                              f"{key}.arch={self.arch}")
        if program is None and self.arch is None:
            raise TrixaiError(f"{key}.file={str(path)!r} is not a TorchScript file: a state dict (.safetensors, .pth) "
                              f"needs its architecture, {key}.arch=<timm name> (TorchScript and torch.export .pt2 "
                              "files carry their own)")
        if self.arch is not None and not timm.is_model(self.arch):
            create_model(self.arch, 1)  # raises the factory's message with close names
        recorded = self._meta_file()
        if program is not None and recorded.get("arch"):
            raise TrixaiError(f"{key}.meta={self.meta} names arch={recorded['arch']!r}, but {path.name} is "
                              f"{PROGRAM_NAMES[program]} file, which carries its own")
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name in FIELDS:
            for value, source in ((getattr(self, name), "given"), (recorded.get(name), f"metadata file {self.meta}")):
                if value is not None:
                    values[name], sources[name] = _checked(name, value, key), source
                    break
        self._defaults(values, sources, program)
        return ExternalModelInfo(path=path, format=program or "state dict", arch=self.arch, key=key,
                                 sources=MappingProxyType(sources), **values)

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

    def _defaults(self, values: dict[str, Any], sources: dict[str, str], program: str | None) -> None:
        key = self.key
        pretrained = timm.get_pretrained_cfg(self.arch) if self.arch else None
        if pretrained is not None:
            cfg, where = pretrained.to_dict(), f"timm pretrained_cfg of {self.arch}"
            for name, value in (("input_size", cfg["input_size"][-1]), ("mean", cfg["mean"]), ("std", cfg["std"])):
                if name not in values:
                    values[name], sources[name] = _checked(name, value, key), where
        if "task" not in values:
            values["task"], sources["task"] = "multiclass", "default"
        if "in_chans" not in values and "mean" in values:
            values["in_chans"], sources["in_chans"] = len(values["mean"]), "length of mean"
        missing = [k for k in ("input_size", "mean", "std") if k not in values]
        if missing:
            what = PROGRAM_NAMES[program] if program else f"the {self.arch}"
            raise TrixaiError(f"{key}: {', '.join(f'{key}.{k}' for k in missing)} needed for {what} model (trixai "
                              "feeds [0, 1] images and normalises them by mean/std; mean=[0,0,0] std=[1,1,1] when the "
                              "model normalises itself)")
        if len(values["mean"]) != len(values["std"]) or len(values["mean"]) not in (1, values["in_chans"]):
            raise TrixaiError(f"{key}: mean {list(values['mean'])} and std {list(values['std'])} need one value per "
                              f"input channel (in_chans={values['in_chans']})")


def _checked(name: str, value: Any, key: str) -> Any:
    """A metadata value in its resolved type (names a tuple of distinct strings, sizes ints, statistics floats)."""
    if name == "class_names":
        return _class_names(value, key)
    if name in ("input_size", "in_chans"):
        return int(value)
    if name in ("mean", "std"):
        return tuple(float(v) for v in value)
    if name == "task" and value not in TASKS:
        raise TrixaiError(f"{key}.task={value!r} is not one of {list(TASKS)}")
    return value


def _class_names(value: Sequence[str] | str, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        path = Path(value).expanduser()
        if not path.is_file():
            raise TrixaiError(f"{key}.class_names={value!r}: give a list [a,b,...] or a .txt (one name a line) / .json "
                              "(a list) file")
        text = path.read_text()
        value = json.loads(text) if path.suffix == ".json" else [line.strip() for line in text.splitlines()
                                                                  if line.strip()]
    names = tuple(str(v) for v in value)
    if len(set(names)) != len(names) or not names:
        raise TrixaiError(f"{key}.class_names={list(names)}: expected distinct names, one per model output")
    return names


class ProgramBackbone(nn.Module):
    """A model file that carries its own architecture, run as one program (``forward`` only). Its layers are no
    modules a forward hook sees, so it cannot be explained (Grad-CAM, SE attention and TCAV hook layers):
    ``no_hooks`` says why, ``format`` names the file format."""

    format: ClassVar[str]
    no_hooks: ClassVar[str]

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x)


class ScriptedBackbone(ProgramBackbone):
    """A loaded TorchScript module."""

    format = "TorchScript"
    no_hooks = "torch.jit modules allow no forward hooks"

    @classmethod
    def load(cls, info: ExternalModelInfo) -> ScriptedBackbone:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
            try:
                return cls(torch.jit.load(str(info.path), map_location="cpu"))
            except RuntimeError as err:
                raise TrixaiError(f"{info.key}.file={str(info.path)!r}: torch.jit.load failed ({err})") from err


class ExportedBackbone(ProgramBackbone):
    """A loaded ExportedProgram (``torch.export.load(path).module()``). Its graph keeps the train/eval behaviour it
    was exported in (``train()`` only sets the flag; a graph exported in training mode is refused), and it runs on
    inputs of its exported shape: ``shape`` holds each dimension's size, None where it was exported dynamic
    (``torch.export.Dim``). ``torch.export.load`` unpickles parts of the file: load only files you trust."""

    format = "ExportedProgram"
    no_hooks = "an ExportedProgram's module runs one flat graph, in which hooks on its layers never fire"

    def __init__(self, module: nn.Module, shape: tuple[int | None, ...], where: str) -> None:
        super().__init__(module)
        self.shape, self.where = shape, where

    @classmethod
    def load(cls, info: ExternalModelInfo) -> ExportedBackbone:
        """The file's program, checked: eval mode, one input, of ``info``'s channels and size."""
        where = f"{info.key}.file={str(info.path)!r}"
        log.warning("%s: torch.export.load unpickles parts of the file (torch: never load data from an untrusted "
                    "source)", where)
        try:
            program = torch.export.load(str(info.path))
        except Exception as err:  # a damaged or foreign .pt2 archive fails in many ways
            raise TrixaiError(f"{where}: torch.export.load failed ({type(err).__name__}: {err})") from err
        training = [str(n.target) for n in program.graph.nodes if _in_training_mode(n)]
        if training:
            raise TrixaiError(f"{where} was exported in training mode: {len(training)} operations ({training[0]}, "
                              "...) use batch statistics or dropout, so an image's logits depend on its batch; export "
                              "the model in eval mode, torch.export.export(model.eval(), ...)")
        inputs = program.graph_signature.user_inputs
        if len(inputs) != 1:
            raise TrixaiError(f"{where}: the exported program takes {len(inputs)} inputs; trixai feeds one, a batch "
                              "of images")
        node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == inputs[0])
        shape = tuple(int(d) if isinstance(d, int) else None for d in node.meta["val"].shape)
        _check_exported_shape(info, shape, where)
        return cls(program.module(), shape, where)

    def train(self, mode: bool = True) -> ExportedBackbone:
        self.training = mode  # the exported module refuses train()/eval(): its graph fixed the mode
        return self

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != len(self.shape) or any(d not in (None, n) for d, n in zip(self.shape, x.shape)):
            raise TrixaiError(self._mismatch(tuple(x.shape)))
        return self.module(x)

    def _mismatch(self, got: tuple[int, ...]) -> str:
        if len(got) == len(self.shape) and all(d in (None, n) for d, n in zip(self.shape[1:], got[1:])):
            return (f"{self.where} was exported with a static batch of {self.shape[0]}, this batch has {got[0]} "
                    "images (batches vary: the last one, attacks on the points still robust): export it with a "
                    "dynamic batch, torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim('batch')},))")
        wanted = tuple("any" if d is None else d for d in self.shape)
        return f"{self.where} takes inputs of shape {wanted}, got {got}: give it images of its exported size"


def _in_training_mode(node: torch.fx.Node) -> bool:
    """An operation of the graph called with ``training=True``/``train=True`` (batch norm, dropout)."""
    schema = getattr(node.target, "_schema", None)
    if node.op != "call_function" or schema is None:
        return False
    for index, argument in enumerate(schema.arguments):
        if argument.name in ("training", "train"):
            return (node.args[index] if index < len(node.args) else node.kwargs.get(argument.name)) is True
    return False


def load_external(info: ExternalModelInfo, *, map_location: str | torch.device = "cpu") -> TrixModel:
    """Build the model ``info`` describes, in eval mode; ``.meta['external']`` holds its provenance."""
    key = info.key
    if info.class_names is None:
        raise TrixaiError(f"{key}.class_names is needed (a list, or a .txt/.json file) when no dataset gives them")
    names, in_chans = list(info.class_names), info.in_chans
    mean, std = list(info.mean), list(info.std)
    if len(mean) == 1 and in_chans > 1:
        mean, std = mean * in_chans, std * in_chans
    if info.format == "state dict":
        state = read_state_dict(info.path, key=f"{key}.file")
        model = create_model(info.arch, len(names), class_names=names, task=info.task, in_chans=in_chans,
                             resolution=info.input_size, mean=mean, std=std)
        _check_head(info, model, state)
        reinit = apply_weights(model.backbone, state, source=f"{key}.file={str(info.path)!r}", arch_key=f"{key}.arch")
        if reinit:  # _check_head caught a differing head; anything else re-initialised is a mismatch too
            raise TrixaiError(f"{key}.file: the classifier {reinit} does not fit {len(names)} classes")
    else:
        backbone = {"TorchScript": ScriptedBackbone, "ExportedProgram": ExportedBackbone}[info.format].load(info)
        model = TrixModel(backbone, name=f"{info.format.lower()}:{info.path.name}", class_names=names, task=info.task,
                          input_size=info.input_size, mean=mean, std=std)
    model.meta = {"external": info.provenance()}
    return model.to(map_location).eval()


def _check_exported_shape(info: ExternalModelInfo, shape: tuple[int | None, ...], where: str) -> None:
    """The exported input shape fits images of ``info``'s channels and size."""
    key = info.key
    if len(shape) != 4:
        raise TrixaiError(f"{where} was exported for inputs of {len(shape)} dimensions; trixai feeds image batches "
                          "(batch, channels, height, width)")
    if shape[1] not in (None, info.in_chans):
        raise TrixaiError(f"{where} was exported for {shape[1]}-channel images, {key}.in_chans is {info.in_chans} "
                          f"({info.sources['in_chans']}): set {key}.in_chans={shape[1]}")
    size = [d for d in shape[2:] if d is not None]
    if any(d != info.input_size for d in size):
        raise TrixaiError(f"{where} was exported for {shape[2]}x{shape[3]} images, {key}.input_size is "
                          f"{info.input_size} ({info.sources['input_size']}): set {key}.input_size={size[0]}")


def _check_head(info: ExternalModelInfo, model: TrixModel, state: Mapping[str, Tensor]) -> None:
    """An audit must not re-initialise the classifier: a head of another class count is an error."""
    classifier = (model.backbone.pretrained_cfg or {}).get("classifier")
    weight = state.get(f"{classifier}.weight") if classifier else None
    names = list(info.class_names or ())  # load_external checked that there are some
    if weight is not None and weight.ndim >= 1 and weight.shape[0] != len(names):
        raise TrixaiError(
            f"{info.key}.file={str(info.path)!r}: its classifier ({classifier}) has {weight.shape[0]} outputs, but "
            f"{len(names)} class names came from {info.sources['class_names']} ({names[:8]}): give the model's own "
            "class names in its output order")


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
