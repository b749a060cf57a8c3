"""Decode-once cache: reuse across runs, keys, atomic layout, bad items; group-wise splits."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from data_fixtures import write_image

from trixai.core.errors import TrixaiError
from trixai.data.cache import cached_images, file_fingerprints
from trixai.data.images import BadImageError
from trixai.data.source import Rows, rasterise_boxes
from trixai.data.splits import check_disjoint, check_fractions, group_split


def _producer(calls: list[int], bad: int | None = None):
    def produce(i: int):
        calls.append(i)
        if i == bad:
            raise BadImageError(f"item {i} is broken")
        return np.full((4, 4, 1), i, np.uint8), (10 + i, 20)
    return produce


def test_cache_is_built_once_and_reused(tmp_path):
    calls: list[int] = []
    first = cached_images(name="t", key={"a": 1}, n=5, shape=(4, 4, 1), produce=_producer(calls), cache_dir=tmp_path,
                          num_workers=2)
    assert sorted(calls) == [0, 1, 2, 3, 4]
    assert isinstance(first.images, np.memmap) and first.images[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]
    assert first.sizes.tolist() == [[10, 20], [11, 20], [12, 20], [13, 20], [14, 20]]
    again = cached_images(name="t", key={"a": 1}, n=5, shape=(4, 4, 1), produce=_producer(calls), cache_dir=tmp_path)
    assert len(calls) == 5 and again.path == first.path
    cached_images(name="t", key={"a": 2}, n=5, shape=(4, 4, 1), produce=_producer(calls), cache_dir=tmp_path)
    assert len(calls) == 10  # another key: another cache
    entries = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert len(entries) == 2 and not any(name.startswith(".") for name in entries)  # no temp dirs left
    assert sorted(p.name for p in first.path.iterdir()) == ["images.npy", "meta.json", "sizes.npy"]


def test_concurrent_builders_decode_once(tmp_path):
    calls: list[int] = []
    slow = _producer(calls)

    def produce(i: int):
        time.sleep(0.01)
        return slow(i)

    def build(_):
        return cached_images(name="t", key={}, n=6, shape=(4, 4, 1), produce=produce, cache_dir=tmp_path,
                             num_workers=0).path

    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(build, range(2)))
    assert paths[0] == paths[1] and sorted(calls) == [0, 1, 2, 3, 4, 5]  # the second job waited, then reused


def test_bad_items_stop_or_are_recorded(tmp_path):
    with pytest.raises(BadImageError, match="item 2 is broken"):
        cached_images(name="t", key={}, n=4, shape=(4, 4, 1), produce=_producer([], bad=2), cache_dir=tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # nothing half-written
    result = cached_images(name="t", key={}, n=4, shape=(4, 4, 1), produce=_producer([], bad=2), cache_dir=tmp_path,
                           stop_on_error=False)
    assert result.errors == {2: "item 2 is broken"} and result.images[2].max() == 0
    assert cached_images(name="t", key={}, n=4, shape=(4, 4, 1), produce=_producer([]), cache_dir=tmp_path).errors == \
        {2: "item 2 is broken"}  # the record is cached with the images


def test_in_memory_without_cache_dir():
    result = cached_images(name="t", key={}, n=3, shape=(4, 4, 1), produce=_producer([]), cache_dir=None,
                           num_workers=0)
    assert result.path is None and result.images[:, 0, 0, 0].tolist() == [0, 1, 2]


def test_fingerprints_change_with_the_file(tmp_path):
    path = write_image(tmp_path / "a.png", 10)
    before = file_fingerprints([path, tmp_path / "missing.png"])
    assert before[1] == [str(tmp_path / "missing.png"), -1, -1]
    os.utime(path, ns=(1, 1))
    assert file_fingerprints([path])[0] != before[0]


def test_rows_view_and_box_raster():
    base = np.arange(10)[:, None]
    rows = Rows(base, np.array([7, 2]))
    assert len(rows) == 2 and rows[0].tolist() == [7] and rows[1].tolist() == [2]
    mask = rasterise_boxes([(1, (0.5, 1.0, 2.2, 3.0)), (0, (3.0, 3.0, 3.1, 3.1))], num_labels=2, size=4)
    assert mask[1].tolist() == [[0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]]
    assert mask[0].sum() == 1 and mask[0, 3, 3] == 1  # a sub-pixel box still marks its pixel


def test_group_split_keeps_groups_together():
    groups = [f"p{i // 3}" for i in range(60)]  # 20 patients, 3 images each
    parts = group_split(groups, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=3)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(60))
    patients = {name: {groups[i] for i in index} for name, index in parts.items()}
    assert [len(patients[s]) for s in ("train", "val", "test")] == [14, 3, 3]
    check_disjoint(patients, "patient")
    assert {k: v.tolist() for k, v in group_split(groups, {"train": 0.7, "val": 0.15, "test": 0.15}, 3).items()} == \
        {k: v.tolist() for k, v in parts.items()}  # deterministic per seed
    shuffled = group_split(list(reversed(groups)), {"train": 0.7, "val": 0.15, "test": 0.15}, 3)
    assert {groups[59 - i] for i in shuffled["val"]} == patients["val"]  # independent of row order


def test_group_split_gives_every_split_a_group_and_checks_inputs():
    parts = group_split(["a", "b", "c"], {"train": 0.9, "val": 0.05, "test": 0.05}, seed=0)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [1, 1, 1]
    with pytest.raises(TrixaiError, match=r"patient 'x' appears in both the train and test splits"):
        check_disjoint({"train": ["x", "y"], "test": ["x"]}, "patient")
    with pytest.raises(TrixaiError, match=r"dataset.fractions=\{'train': 0.5, 'val': 0.2\} must be non-negative and "
                                          "sum to 1"):
        check_fractions({"train": 0.5, "val": 0.2}, "dataset.fractions")
    with pytest.raises(TrixaiError, match=r"needs exactly the keys \['train', 'val', 'test'\]"):
        check_fractions({"train": 0.5, "valid": 0.5}, "dataset.fractions", names=("train", "val", "test"))
