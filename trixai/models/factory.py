"""Build timm classifiers that take images in [0, 1] and carry their class order and CAM layers."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence

import timm
import torch
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.core.kinds import TASKS
from trixai.models import scaling  # noqa: F401  (registers the timm model "efficientnet_phi")
from trixai.models.weights import apply_weights, read_state_dict

log = logging.getLogger(__name__)


class TrixModel(nn.Module):
    """A timm backbone with input normalisation inside: ``forward`` takes [0, 1] images, returns logits.

    Attributes ``class_names`` (training order), ``task``, ``family``, ``input_size`` and ``cam_layers``
    (preset name -> module path relative to this model) travel with the weights.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        name: str,
        class_names: Sequence[str],
        task: str,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise TrixaiError(f"task={task!r} is not one of {list(TASKS)}")
        self.backbone = backbone
        self.name = name
        self.class_names = tuple(class_names)
        self.task = task
        self.input_size = int(input_size)
        self.in_chans = len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.family = model_family(backbone)
        self.cam_layers = cam_layer_presets(backbone, self.family)

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(self.normalize(x))

    def embed(self, x: Tensor) -> Tensor:
        """Pooled pre-logit embedding (1280-D for EfficientNet-B0, 2048-D for ResNet-50)."""
        features = self.backbone.forward_features(self.normalize(x))
        return self.backbone.forward_head(features, pre_logits=True)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def model_family(backbone: nn.Module) -> str:
    if isinstance(backbone, timm.models.efficientnet.EfficientNet):
        return "efficientnet"
    if isinstance(backbone, timm.models.resnet.ResNet):
        return "resnet"
    return "generic"


def cam_layer_presets(backbone: nn.Module, family: str) -> dict[str, str]:
    """Stage layers for Grad-CAM: ``low``/``mid``/``high`` stages and the ``final`` feature map.

    EfficientNet: blocks[1], blocks[n//2], blocks[n-2] (blocks 1/3/5 for B0-B3) and ``bn2`` (head conv
    + BN + act). ResNet: layer2/layer3/layer4 and layer4. Others: timm's ``feature_info`` stages.
    """
    if family == "efficientnet":
        n = len(backbone.blocks)
        names = {"low": f"blocks.{1}", "mid": f"blocks.{n // 2}", "high": f"blocks.{n - 2}", "final": "bn2"}
    elif family == "resnet":
        names = {"low": "layer2", "mid": "layer3", "high": "layer4", "final": "layer4"}
    else:
        stages = [f["module"] for f in getattr(backbone, "feature_info", []) if f.get("module")]
        if not stages:
            return {}
        names = {"low": stages[max(len(stages) - 3, 0)], "mid": stages[max(len(stages) - 2, 0)],
                 "high": stages[-1], "final": stages[-1]}
    return {key: f"backbone.{value}" for key, value in names.items()}


def _check_timm_name(name: str) -> None:
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5)
    hint = f" Did you mean one of {close}?" if close else ""
    raise TrixaiError(
        f"model.name={name!r} is not a timm model.{hint} Configs shipped: efficientnet_b0..b3, resnet50; "
        "any name from timm.list_models() works through model.name=<name>."
    )


def _create_backbone(name: str, *, pretrained: bool, weights: str | None, **kwargs) -> nn.Module:
    if weights is not None:
        state = read_state_dict(weights)
        backbone = timm.create_model(name, pretrained=False, **kwargs)
        reinit = apply_weights(backbone, state, source=f"model.weights={weights!r}")
        log.info("model.weights: %d tensors from %s%s", len(state), weights,
                 f"; classifier re-initialised for {kwargs.get('num_classes')} classes ({', '.join(reinit)})"
                 if reinit else "")
        return backbone
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as err:  # hub/network errors come in many types
        raise TrixaiError(
            f"could not fetch pretrained weights for {name!r} from the timm/Hugging Face hub "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}). "
            "Offline? Either pass a local file with model.weights=/path/to/weights.safetensors "
            "(or .pth), or train from scratch with model.pretrained=false."
        ) from err


def create_model(
    name: str,
    num_classes: int,
    *,
    class_names: Sequence[str] | None = None,
    task: str = "multiclass",
    in_chans: int = 3,
    resolution: int = 224,
    pretrained: bool = False,
    weights: str | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **timm_kwargs,
) -> TrixModel:
    """Create a :class:`TrixModel` from a timm name.

    ``weights`` (a local ``.safetensors``/``.pth``) wins over ``pretrained`` (the hub). Normalisation
    defaults to the model's ``pretrained_cfg`` mean/std, averaged over RGB when ``in_chans=1``.
    """
    _check_timm_name(name)
    class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise TrixaiError(f"{len(class_names)} class names for num_classes={num_classes}")
    backbone = _create_backbone(
        name, pretrained=pretrained, weights=weights, num_classes=num_classes, in_chans=in_chans,
        drop_rate=drop_rate, drop_path_rate=drop_path_rate, **timm_kwargs,
    )
    cfg_mean = tuple(backbone.pretrained_cfg.get("mean", (0.5,) * 3))
    cfg_std = tuple(backbone.pretrained_cfg.get("std", (0.5,) * 3))
    if in_chans != len(cfg_mean):
        cfg_mean = (sum(cfg_mean) / len(cfg_mean),) * in_chans
        cfg_std = (sum(cfg_std) / len(cfg_std),) * in_chans
    mean, std = tuple(mean or cfg_mean), tuple(std or cfg_std)
    if len(mean) != in_chans or len(std) != in_chans:
        raise TrixaiError(f"model.mean/model.std need {in_chans} values (in_chans={in_chans}), got {mean} / {std}")
    return TrixModel(backbone, name=name, class_names=class_names, task=task, input_size=resolution,
                     mean=mean, std=std)
