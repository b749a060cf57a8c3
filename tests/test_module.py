"""TrixModule: which class weights each training phase gets, the channels_last memory format, per-step schedules."""

from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch
from helpers import tiny_timm
from lightning.pytorch.callbacks import Callback

from trixai.core.errors import TrixaiError
from trixai.training.module import TrixModule
from trixai.training.objectives import Standard
from trixai.training.optim import cyclic

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


def test_cyclic_rate_rises_to_the_peak_and_falls_to_zero_hand_computed():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2)
    schedule = cyclic(optimizer, total_steps=10)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16, 0.2, 0.16, 0.12, 0.08, 0.04])
    with pytest.raises(TrixaiError, match=r"scheduler.peak=1.0"):
        cyclic(optimizer, total_steps=10, peak=1.0)


class RateLog(Callback):
    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_the_trainer_steps_a_per_step_schedule_every_batch_over_all_epochs():
    """Lightning steps ``scheduler=cyclic`` per batch, over every step of the run (3 epochs x 2 batches)."""
    module = TrixModule(tiny_timm(num_classes=3), Standard(), optimizer=partial(torch.optim.SGD, lr=0.3),
                        scheduler=partial(cyclic, peak=0.5))
    batches = torch.utils.data.DataLoader([BATCH, BATCH], batch_size=None)
    log = RateLog()
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[log],
                        limit_val_batches=0)
    trainer.fit(module, train_dataloaders=batches)
    assert log.rates == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.2, 0.1])


def test_a_per_step_schedule_refuses_a_run_without_an_end():
    module = TrixModule(tiny_timm(num_classes=3), Standard(), optimizer=partial(torch.optim.SGD, lr=0.3),
                        scheduler=partial(cyclic, peak=0.5))
    trainer = L.Trainer(max_epochs=-1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    with pytest.raises(TrixaiError, match="scheduler=cyclic is stepped every batch over the whole run: set "
                                          "trainer.max_epochs or trainer.max_steps"):
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader([BATCH, BATCH], batch_size=None))
