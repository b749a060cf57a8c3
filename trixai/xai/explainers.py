"""The ``explainer`` config group's targets: map explainers give one (N, H, W) map per image for a target class.

:class:`GradCAM` (``layer``), :class:`MultiScaleGradCAM` (``weights`` per layer) and :class:`SEAttention`
(``layer``) are called as ``explainer(model, x, target)``; :class:`TCAV` holds the settings of a concept test
and gives scores instead of maps (see :mod:`trixai.xai.tcav`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from torch import Tensor, nn

from trixai.xai.gradcam import grad_cam
from trixai.xai.multiscale import DEFAULT_WEIGHTS, multiscale_grad_cam
from trixai.xai.se_attention import se_attention


@dataclass
class Explanation:
    """Maps (N, H, W) in [0, 1] at the input size, logits, explained class per sample, method extras."""

    maps: Tensor
    logits: Tensor
    targets: Tensor
    extras: dict


class MapExplainer(ABC):
    """Base of the map explainers: ``explainer(model, x, target)`` (``target`` None = predicted class)."""

    name = "map"

    @abstractmethod
    def __call__(self, model: nn.Module, x: Tensor, target: Tensor | int | None) -> Explanation:
        """Maps of ``x`` for ``target`` (model frozen, state restored)."""

    def settings(self) -> dict:
        """Name and every setting, for reports."""
        return {"name": self.name, **asdict(self)}


@dataclass
class GradCAM(MapExplainer):
    """Grad-CAM (Selvaraju et al. 2017) at one layer: a preset of ``model.cam_layers`` or a module path."""

    layer: str = "final"
    name = "gradcam"

    def __call__(self, model: nn.Module, x: Tensor, target: Tensor | int | None) -> Explanation:
        result = grad_cam(model, x, target, [self.layer])
        return Explanation(result.maps[self.layer], result.logits, result.targets, {})


@dataclass
class MultiScaleGradCAM(MapExplainer):
    """Grad-CAM at several layers from one backward pass, fused by the weighted mean of ``weights``."""

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    name = "multiscale_gradcam"

    def __call__(self, model: nn.Module, x: Tensor, target: Tensor | int | None) -> Explanation:
        result = multiscale_grad_cam(model, x, target, dict(self.weights))
        return Explanation(result.maps["fused"], result.logits, result.targets,
                           {"stage_maps": {k: v for k, v in result.maps.items() if k != "fused"}})


@dataclass
class SEAttention(MapExplainer):
    """Squeeze-and-excitation gates (EfficientNet) and the gate-weighted map of the SE module ``layer``."""

    layer: str = "last"
    name = "se_attention"

    def __call__(self, model: nn.Module, x: Tensor, target: Tensor | int | None) -> Explanation:
        result = se_attention(model, x, target, self.layer)
        (cam,) = result.maps.values()
        return Explanation(cam, result.logits, result.targets, {"gates": result.gates})


@dataclass
class TCAV:
    """Settings of TCAV (Kim et al. 2018) for the explanation suite: ``concept`` (``ruler`` or a folder) at
    ``layer``, ``n_runs`` runs (3 random sets of ``n_concept`` images each), over ``max_points`` inputs;
    ``cav_classifier`` (``hinge``: captum's and tensorflow-tcav's linear SVM | ``logistic``), ``cav_fit`` (``raw`` |
    ``standardised``) and ``t_test`` (``student`` | ``welch``) pick the variant; p-values are also reported
    Bonferroni-corrected over the classes tested."""

    layer: str = "high"
    concept: str = "ruler"
    random_dir: str | None = None
    classes: list | str | int | None = None
    n_concept: int = 40
    n_runs: int = 10
    cav_classifier: str = "hinge"
    cav_fit: str = "raw"
    t_test: str = "student"
    alpha: float = 0.05
    max_points: int = 140
    batch_size: int = 32
    seed: int = 0
    name = "tcav"

    def settings(self) -> dict:
        return {"name": self.name, **asdict(self)}
