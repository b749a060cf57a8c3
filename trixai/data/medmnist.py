"""Any MedMNIST (v2/v3) ``.npz`` by path: keys ``{train,val,test}_{images,labels}``.

Images are uint8 (N, H, W) (grayscale) or (N, H, W, 3) (RGB) at 28/64/128/224 px; labels are (N, 1) class
indices (multiclass, squeezed) or (N, L>1) 0/1 columns (multi-label, e.g. ChestMNIST's 14 findings). The task
and the channel count are read from the arrays; ``channels`` converts (gray replicated to RGB, RGB to
luminance) and ``image_size`` resizes through the decode-once cache when it differs from the stored size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from trixai.core.errors import TrixaiError
from trixai.data.base import ArrayDataset, DataInfo, DatasetBundle, class_counts, describe_counts
from trixai.data.cache import cached_images, file_fingerprints
from trixai.data.images import CHANNELS, DECODER_VERSION, to_channels
from trixai.data.labels import CHESTMNIST_LABELS
from trixai.data.source import Rows

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class MedMNIST:
    """One MedMNIST ``.npz``: ``root`` is the file, or a folder holding ``{flag}.npz``/``{flag}_{size}.npz``."""

    name = "medmnist"

    def __init__(self, *, root: str, flag: str | None = None, image_size: int | None = None,
                 channels: int | None = None, class_names: Sequence[str] | None = None,
                 cache_dir: str | None = None, decode_workers: int = 4) -> None:
        self.path = self._resolve(Path(root).expanduser().resolve(), flag)
        if channels is not None and int(channels) not in CHANNELS:
            raise TrixaiError(f"dataset.channels={channels} is not one of {list(CHANNELS)} or null (as stored)")
        self.image_size = None if image_size is None else int(image_size)
        self.channels = None if channels is None else int(channels)
        self.class_names = None if class_names is None else tuple(class_names)
        self.cache_dir, self.decode_workers = cache_dir, int(decode_workers)

    @staticmethod
    def _resolve(root: Path, flag: str | None) -> Path:
        if root.is_file():
            return root
        if not root.is_dir():
            raise TrixaiError(f"dataset.root={root} does not exist (expected a MedMNIST .npz or its folder)")
        if flag is None:
            found = sorted(p.name for p in root.glob("*.npz"))
            raise TrixaiError(f"dataset.root={root} is a folder: set dataset.flag to pick one of {found} "
                              "(or point dataset.root at the .npz)")
        candidates = [root / f"{flag}.npz", *sorted(root.glob(f"{flag}_*.npz"))]
        for path in candidates:
            if path.is_file():
                return path
        raise TrixaiError(f"no {flag}.npz or {flag}_<size>.npz in {root}")

    def _arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        try:
            archive = np.load(self.path)
        except (OSError, ValueError) as error:
            raise TrixaiError(f"cannot read {self.path} as a .npz archive ({error})") from error
        arrays = {}
        with archive:
            for split in SPLITS:
                for part in ("images", "labels"):
                    if f"{split}_{part}" not in archive.files:
                        raise TrixaiError(f"{self.path} has no key '{split}_{part}' (found: {sorted(archive.files)}; "
                                          "MedMNIST files have {train,val,test}_{images,labels})")
                images, labels = archive[f"{split}_images"], archive[f"{split}_labels"]
                rgb_ok = images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)
                if images.dtype != np.uint8 or not rgb_ok:
                    raise TrixaiError(f"{self.path}: {split}_images has dtype {images.dtype} and shape {images.shape}; "
                                      "expected uint8 (N, H, W) or (N, H, W, 3)")
                if labels.ndim != 2 or len(labels) != len(images):
                    raise TrixaiError(f"{self.path}: {split}_labels has shape {labels.shape}; expected "
                                      f"({len(images)}, 1) or ({len(images)}, L)")
                if len(images) == 0:
                    raise TrixaiError(f"{self.path}: the {split} split is empty")
                arrays[split] = (images, labels)
        return arrays

    def _info(self, arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> DataInfo:
        images, labels = arrays["train"]
        width = labels.shape[1]
        if any(arrays[s][1].shape[1] != width for s in SPLITS):
            shapes = [arrays[s][1].shape for s in SPLITS]
            raise TrixaiError(f"{self.path}: the label arrays have different widths {shapes}")
        task = "multiclass" if width == 1 else "multilabel"
        if task == "multiclass":
            all_labels = np.concatenate([arrays[s][1][:, 0] for s in SPLITS])
            if all_labels.min() < 0:
                raise TrixaiError(f"{self.path}: negative class index {all_labels.min()} in the labels")
            num_classes = int(all_labels.max()) + 1
        else:
            values = np.unique(np.concatenate([arrays[s][1].ravel() for s in SPLITS]))
            if not set(values.tolist()) <= {0, 1}:
                raise TrixaiError(f"{self.path}: multi-label values {values.tolist()}; expected 0 or 1")
            num_classes = width
        names = self.class_names
        if names is None:
            names = CHESTMNIST_LABELS if self.path.stem.startswith("chestmnist") and width == 14 \
                else tuple(str(i) for i in range(num_classes))
        if len(names) < num_classes or (task == "multilabel" and len(names) != num_classes):
            raise TrixaiError(f"dataset.class_names has {len(names)} names; {self.path} needs "
                              f"{num_classes if task == 'multilabel' else f'at least {num_classes}'}")
        channels = self.channels or (3 if images.ndim == 4 else 1)
        return DataInfo(self.name, tuple(names), task, channels, self.image_size or images.shape[1])

    def _images(self, split: str, images: np.ndarray, info: DataInfo) -> np.ndarray | Rows:
        native_channels = 3 if images.ndim == 4 else 1
        if info.image_size == images.shape[1] and info.in_chans == native_channels:
            return images.reshape(*images.shape[:3], native_channels)
        size = info.image_size

        def produce(i: int):
            image = Image.fromarray(images[i])
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            return to_channels(image, info.in_chans), images.shape[1:3]

        key = {"files": file_fingerprints([self.path]), "split": split, "image_size": size,
               "channels": info.in_chans, "decoder": DECODER_VERSION}
        cached = cached_images(name=f"{self.name}-{self.path.stem}", key=key, n=len(images),
                               shape=(size, size, info.in_chans), produce=produce, cache_dir=self.cache_dir,
                               num_workers=self.decode_workers, desc=f"{self.path.stem} {split}: resizing")
        return Rows(cached.images, np.arange(len(images)))

    def load(self) -> DatasetBundle:
        arrays = self._arrays()
        info = self._info(arrays)
        datasets, counts = {}, {}
        for split in SPLITS:
            images, labels = arrays[split]
            targets = labels[:, 0].astype(np.int64) if info.task == "multiclass" else labels.astype(np.float32)
            datasets[split] = ArrayDataset(self._images(split, images, info), targets)
            counts[split] = class_counts(targets, info.num_classes).tolist()
            log.info("%s %s (%d images): %s", self.path.name, split, len(targets),
                     describe_counts(info.class_names, np.asarray(counts[split])))
        return DatasetBundle(info=info, **datasets, stats={"class_counts": counts,
                                                           "num_samples": {s: len(arrays[s][0]) for s in SPLITS}})
