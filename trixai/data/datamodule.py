"""LightningDataModule over any dataset source: augmentation, class weights, balanced sampling, loaders."""

from __future__ import annotations

import logging

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from torchvision import tv_tensors
from torchvision.transforms import v2

from trixai.core.errors import TrixaiError
from trixai.data.base import DataInfo, DatasetBundle, class_counts, describe_counts

log = logging.getLogger(__name__)

CLASS_WEIGHTING = ("none", "inverse", "effective")


def build_augmentation(image_size: int, in_chans: int, *, random_resized_crop: dict | None = None,
                       hflip: float = 0.0, vflip: float = 0.0, rotation: float = 0.0,
                       color_jitter: dict | None = None) -> v2.Transform:
    """Geometric transforms act on image and mask together; colour jitter on the image only (identity if none)."""
    steps: list = []
    if random_resized_crop:
        steps.append(v2.RandomResizedCrop(image_size, antialias=True, **random_resized_crop))
    if hflip:
        steps.append(v2.RandomHorizontalFlip(hflip))
    if vflip:
        steps.append(v2.RandomVerticalFlip(vflip))
    if rotation:
        steps.append(v2.RandomRotation(rotation))
    if color_jitter:
        jitter = dict(color_jitter)
        if in_chans == 1:  # saturation and hue are undefined on one channel
            jitter.pop("saturation", None)
            jitter.pop("hue", None)
        steps.append(v2.ColorJitter(**jitter))
    return v2.Compose(steps) if steps else v2.Identity()


class Augmented(Dataset):
    """Applies a joint image/mask transform to every sample of ``base``."""

    def __init__(self, base: Dataset, transform: v2.Transform) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        sample = dict(self.base[index])
        if "mask" in sample:
            image, mask = self.transform(tv_tensors.Image(sample["image"]), tv_tensors.Mask(sample["mask"]))
            sample["mask"] = mask.as_subclass(torch.Tensor)
        else:
            image = self.transform(tv_tensors.Image(sample["image"]))
        sample["image"] = image.as_subclass(torch.Tensor).clamp(0.0, 1.0)
        return sample


def class_weights(counts: np.ndarray, task: str, labelled: np.ndarray | int, scheme: str,
                  beta: float = 0.999) -> torch.Tensor | None:
    """Per-class CE weights (normalised to mean 1) or, for multi-label, BCE positive weights.

    ``inverse``: n / (C * n_c); ``effective``: (1 - beta) / (1 - beta ** n_c) (Cui et al. 2019).
    Multi-label: pos_weight = negatives / positives per label under either scheme, where ``labelled`` is the
    number of samples whose label is not masked out (per label, or one count for all labels).
    """
    if scheme not in CLASS_WEIGHTING:
        raise TrixaiError(f"data.class_weighting={scheme!r} is not one of {list(CLASS_WEIGHTING)}")
    if scheme == "none":
        return None
    counts = counts.astype(np.float64)
    if (counts == 0).any():
        raise TrixaiError(f"data.class_weighting={scheme}: a class has no training samples (counts {counts.tolist()})")
    if task == "multilabel":
        return torch.tensor((np.asarray(labelled, dtype=np.float64) - counts) / counts, dtype=torch.float32)
    if scheme == "inverse":
        weights = counts.sum() / (len(counts) * counts)
    else:
        weights = (1.0 - beta) / (1.0 - np.power(beta, counts))
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


class TrixDataModule(L.LightningDataModule):
    """Loads a dataset source once and serves train (augmented), val and test loaders."""

    def __init__(self, dataset, *, batch_size: int = 64, eval_batch_size: int | None = None,
                 num_workers: int = 0, pin_memory: bool = False, augment: dict | None = None,
                 class_weighting: str = "none", balanced_sampler: bool | float = False) -> None:
        super().__init__()
        if class_weighting not in CLASS_WEIGHTING:
            raise TrixaiError(f"data.class_weighting={class_weighting!r} is not one of {list(CLASS_WEIGHTING)}")
        self.source = dataset
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size or batch_size)
        self.num_workers, self.pin_memory = int(num_workers), bool(pin_memory)
        self.augment = dict(augment or {})
        # corruption augmentation runs batched on the model's device, applied by the training module (trixai.training)
        self.corruption_augment: dict | None = self.augment.pop("corruptions", None)
        # true = 1.0: every class equally often; q in (0, 1): class shares proportional to count^(1 - q)
        if isinstance(balanced_sampler, str) or not 0.0 <= float(balanced_sampler or 0) <= 1.0:
            raise TrixaiError(f"data.balanced_sampler={balanced_sampler!r}: expected true, false or a power in [0, 1] "
                              "(1 = balanced, 0.5 = square-root sampling)")
        self.class_weighting, self.sampler_power = class_weighting, float(balanced_sampler or 0)
        self._bundle: DatasetBundle | None = None

    @property
    def bundle(self) -> DatasetBundle:
        if self._bundle is None:
            self._bundle = self.source.load()
            for split in ("train", "val", "test"):
                if len(self._bundle.split(split)) == 0:
                    raise TrixaiError(f"dataset {self._bundle.info.name}: the {split} split is empty")
            counts = self.train_counts()
            log.info("train class counts: %s", describe_counts(self._bundle.info.class_names, counts))
        return self._bundle

    @property
    def info(self) -> DataInfo:
        return self.bundle.info

    def train_targets(self) -> np.ndarray:
        train = self.bundle.train
        if hasattr(train, "targets"):
            return np.asarray(train.targets)
        return np.stack([np.asarray(train[i]["target"]) for i in range(len(train))])

    def train_counts(self) -> np.ndarray:
        return class_counts(self.train_targets(), self.bundle.info.num_classes)

    def class_weights(self) -> torch.Tensor | None:
        labelled = self.bundle.stats.get("labelled_counts", {}).get("train", len(self.bundle.train))
        return class_weights(self.train_counts(), self.info.task, labelled, self.class_weighting)

    def setup(self, stage: str | None = None) -> None:
        self.bundle  # noqa: B018 - load once, validate splits

    def _loader(self, dataset: Dataset, *, train: bool) -> DataLoader:
        sampler = None
        if train and self.sampler_power > 0:
            if self.info.task != "multiclass":
                raise TrixaiError("data.balanced_sampler needs a multiclass dataset")
            targets = self.train_targets().astype(np.int64)
            counts = np.bincount(targets, minlength=self.info.num_classes)[targets].astype(np.float64)
            per_sample = counts ** -self.sampler_power
            sampler = WeightedRandomSampler(torch.as_tensor(per_sample, dtype=torch.double), len(targets))
        return DataLoader(
            dataset, batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train and sampler is None, sampler=sampler, drop_last=False,
            num_workers=self.num_workers, pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        transform = build_augmentation(self.info.image_size, self.info.in_chans, **self.augment)
        return self._loader(Augmented(self.bundle.train, transform), train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.bundle.val, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.bundle.test, train=False)
