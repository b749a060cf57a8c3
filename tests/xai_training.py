"""A tiny lesion classifier trained in-process (seconds to a minute on CPU) for explanation tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from trixai.data.base import DatasetBundle
from trixai.data.synthetic import SyntheticLesions
from trixai.models import create_model
from trixai.models.factory import TrixModel


def train_tiny_lesion_model(*, artifact_class: str | None, image_size: int = 32, n_train: int = 700,
                            epochs: int = 6, seed: int = 0) -> tuple[TrixModel, DatasetBundle]:
    """test_efficientnet on balanced embedded lesions (optionally with the ruler planted in one class)."""
    torch.manual_seed(seed)
    data = SyntheticLesions(image_size=image_size, n_train=n_train, n_val=7, n_test=280, seed=seed, balanced=True,
                            artifact_class=artifact_class, cache_dir=None).load()
    model = create_model("test_efficientnet", 7, class_names=data.info.class_names, resolution=image_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loader = DataLoader(data.train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed))
    model.train()
    for _ in range(epochs):
        for batch in loader:
            loss = F.cross_entropy(model(batch["image"]), batch["target"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval(), data
