"""TrixModule: which class weights each training phase gets, and the channels_last memory format."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from helpers import tiny_timm

from trixai.training.module import TrixModule
from trixai.training.objectives import Standard

WEIGHTS = torch.tensor([1.0, 2.0, 3.0])


class RecordingStandard(Standard):
    """The standard objective, remembering the class weights of each call."""

    def __init__(self) -> None:
        self.weights: list[torch.Tensor | None] = []

    def __call__(self, model, x, y, *, attack=None, weight=None, label_mask=None):
        self.weights.append(weight)
        return super().__call__(model, x, y, attack=attack, weight=weight, label_mask=label_mask)


def _module(**kwargs) -> TrixModule:
    module = TrixModule(tiny_timm(num_classes=3), RecordingStandard(), optimizer=partial(torch.optim.SGD, lr=0.1),
                        class_weights=WEIGHTS, **kwargs)
    module.warmup_objective = RecordingStandard()
    return module


BATCH = {"image": torch.rand(4, 3, 32, 32), "target": torch.tensor([0, 1, 2, 1])}


@pytest.mark.parametrize("warmup_class_weights", [True, False])
def test_warmup_phase_class_weights_follow_the_switch(warmup_class_weights):
    module = _module(clean_warmup_epochs=1, warmup_class_weights=warmup_class_weights)  # epoch 0: warm-up
    module.training_step(BATCH, 0)
    assert module.objective.weights == []
    (used,) = module.warmup_objective.weights
    assert (used is not None and torch.equal(used, WEIGHTS)) == warmup_class_weights


def test_objective_phase_always_gets_the_class_weights():
    module = _module(clean_warmup_epochs=0, warmup_class_weights=False)
    module.training_step(BATCH, 0)
    assert module.warmup_objective.weights == [] and torch.equal(module.objective.weights[0], WEIGHTS)


def test_channels_last_converts_model_and_batches_without_changing_outputs():
    module = _module(channels_last=True)
    expected = module.model.eval()(BATCH["image"])
    module.setup("fit")
    conv = module.model.backbone.conv_stem.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    images = module._images(BATCH)
    assert images.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(module.model(images), expected, atol=1e-5, rtol=1e-4)
    plain = _module(channels_last=False)
    plain.setup("fit")
    assert plain.model.backbone.conv_stem.weight.is_contiguous()
