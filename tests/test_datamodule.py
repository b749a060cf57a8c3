"""The data module's sampling: uniform, class-balanced, or in between (square-root sampling)."""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import WeightedRandomSampler

from trixai.core.errors import TrixaiError
from trixai.data.datamodule import TrixDataModule
from trixai.data.synthetic import SyntheticLesions


def _module(balanced_sampler) -> TrixDataModule:
    source = SyntheticLesions(image_size=32, n_train=300, n_val=14, n_test=14, min_per_class=2, cache_dir=None)
    return TrixDataModule(source, batch_size=8, augment={}, balanced_sampler=balanced_sampler)


@pytest.mark.parametrize(("setting", "power"), [(True, 1.0), (0.5, 0.5), (1, 1.0)])
def test_class_shares_follow_count_to_the_one_minus_power(setting, power):
    module = _module(setting)
    sampler = module.train_dataloader().sampler
    assert isinstance(sampler, WeightedRandomSampler) and sampler.num_samples == len(module.bundle.train)
    counts = module.train_counts().astype(float)
    targets = module.train_targets()
    weights = sampler.weights.numpy()
    shares = np.array([weights[targets == c].sum() for c in range(len(counts))]) / weights.sum()
    expected = counts ** (1 - power) / (counts ** (1 - power)).sum()
    np.testing.assert_allclose(shares, expected, rtol=1e-12)


@pytest.mark.parametrize("setting", [False, 0, None])
def test_no_balanced_sampler_shuffles_uniformly(setting):
    assert not isinstance(_module(setting).train_dataloader().sampler, WeightedRandomSampler)


@pytest.mark.parametrize("setting", [1.5, -0.1, "yes"])
def test_a_bad_sampler_setting_names_the_key(setting):
    with pytest.raises(TrixaiError, match=r"data.balanced_sampler=.*power in \[0, 1\]"):
        _module(setting)
