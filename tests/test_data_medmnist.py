"""MedMNIST .npz files: keys, (N, 1) vs (N, 14) labels, grayscale vs RGB, resizing through the cache."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import make_medmnist

from trixai.core.errors import TrixaiError
from trixai.data.labels import CHESTMNIST_LABELS
from trixai.data.medmnist import MedMNIST


def test_multiclass_gray_native_size(tmp_path):
    path = make_medmnist(tmp_path / "pneumoniamnist.npz", num_classes=2)
    bundle = MedMNIST(root=path, image_size=28).load()
    assert bundle.info.task == "multiclass" and bundle.info.class_names == ("0", "1") and bundle.info.in_chans == 1
    sample = bundle.train[3]
    assert sample["target"].dtype.is_floating_point is False and sample["target"].ndim == 0  # (N, 1) squeezed
    assert int(sample["target"]) == 1 and sample["image"].shape == (1, 28, 28)
    assert round(float(sample["image"][0, 0, 0]) * 255) == 30
    assert bundle.stats["class_counts"] == {"train": [6, 6], "val": [2, 2], "test": [2, 2]}


def test_chestmnist_multilabel_names(tmp_path):
    path = make_medmnist(tmp_path / "chestmnist.npz", multilabel=True)
    bundle = MedMNIST(root=tmp_path, flag="chestmnist", image_size=28).load()
    assert bundle.info.task == "multilabel" and bundle.info.class_names == CHESTMNIST_LABELS
    assert CHESTMNIST_LABELS[2] == "effusion" and CHESTMNIST_LABELS[12] == "pleural" and len(CHESTMNIST_LABELS) == 14
    labels = np.load(path)["val_labels"]
    assert bundle.val[1]["target"].tolist() == labels[1].astype(np.float32).tolist()


def test_rgb_resize_and_channel_conversion(tmp_path):
    path = make_medmnist(tmp_path / "pathmnist_64.npz", rgb=True, size=64)
    bundle = MedMNIST(root=tmp_path, flag="pathmnist", image_size=32, cache_dir=tmp_path / "cache").load()
    assert bundle.info.in_chans == 3 and bundle.train[2]["image"].shape == (3, 32, 32)
    assert round(float(bundle.train[2]["image"][1, 7, 7]) * 255) == 20
    gray = MedMNIST(root=path, image_size=64, channels=1).load()
    assert gray.info.in_chans == 1 and gray.test[3]["image"].shape == (1, 64, 64)
    gray_source = make_medmnist(tmp_path / "organamnist.npz")
    replicated = MedMNIST(root=gray_source, image_size=28, channels=3, class_names=["a", "b", "c"]).load()
    image = replicated.train[5]["image"]
    assert image.shape == (3, 28, 28) and (image[0] == image[2]).all()
    assert replicated.info.class_names == ("a", "b", "c")


def test_errors(tmp_path):
    path = tmp_path / "broken.npz"
    np.savez(path, train_images=np.zeros((2, 28, 28), np.uint8), train_labels=np.zeros((2, 1)))
    with pytest.raises(TrixaiError, match=r"broken.npz has no key 'val_images' \(found: \['train_images', "
                                          r"'train_labels'\]"):
        MedMNIST(root=path, image_size=28).load()
    with pytest.raises(TrixaiError, match=r"is a folder: set dataset.flag to pick one of \['broken.npz'\]"):
        MedMNIST(root=tmp_path, image_size=28)
    with pytest.raises(TrixaiError, match=r"no dermamnist.npz or dermamnist_<size>.npz in"):
        MedMNIST(root=tmp_path, flag="dermamnist", image_size=28)
    good = make_medmnist(tmp_path / "bloodmnist.npz")
    with pytest.raises(TrixaiError, match=r"dataset.class_names has 2 names; .*bloodmnist.npz needs at least 3"):
        MedMNIST(root=good, image_size=28, class_names=["a", "b"]).load()
