"""Loader throughput: images/s of the decode-once uint8 cache vs decoding the JPEGs on every epoch.

Writes ``--n`` dermoscopy-sized JPEGs (600 x 450, quality 90) into a temp folder laid out as ISIC 2018 Task 3,
then times full passes of a DataLoader over the training split:

* reference: a dataset that opens, decodes and resizes each JPEG in ``__getitem__`` (the usual ImageFolder way);
* trixai, first run: ``ISIC2018(...).load()`` building the cache (decode once, ``--decode-workers`` threads);
* trixai, cached: later epochs / runs reading the memory-mapped uint8 cache.

Run: ``python benchmarks/bench_loader.py --n 512 --size 224``
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from trixai.data.isic import ISIC2018
from trixai.data.labels import ISIC_CLASSES

PREFIX = "ISIC2018_Task3_"


def write_jpegs(root: Path, n: int, seed: int = 0) -> None:
    """An ISIC-2018-layout tree with ``n`` training JPEGs (smooth colour fields plus noise) and 1 val/test image."""
    rng = np.random.default_rng(seed)
    for part, count in (("Training", n), ("Validation", 1), ("Test", 1)):
        folder = root / f"{PREFIX}{part}_Input"
        folder.mkdir(parents=True)
        rows = []
        for i in range(count):
            coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((600, 450),
                                                                                             Image.Resampling.BICUBIC)
            noisy = np.clip(np.asarray(coarse, np.int16) + rng.integers(-12, 13, (450, 600, 3)), 0, 255)
            name = f"ISIC_{i:07d}"
            Image.fromarray(noisy.astype(np.uint8)).save(folder / f"{name}.jpg", quality=90)
            rows.append([name, *["1.0" if c == ISIC_CLASSES[i % 7] else "0.0" for c in ISIC_CLASSES]])
        with open(root / f"{PREFIX}{part}_GroundTruth.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", *ISIC_CLASSES])
            writer.writerows(rows)


class DecodeEveryTime(Dataset):
    """Reference: decode + resize the JPEG on every access."""

    def __init__(self, paths: list[Path], size: int) -> None:
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        with Image.open(self.paths[i]) as image:
            image = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
        return {"image": torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div_(255.0),
                "target": torch.tensor(0)}


def epoch_rate(dataset: Dataset, batch_size: int, workers: int) -> float:
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=True)
    start = time.perf_counter()
    count = sum(len(batch["image"]) for batch in loader)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="training JPEGs")
    parser.add_argument("--size", type=int, default=224, help="output image size")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--loader-workers", type=int, default=0, help="DataLoader workers for both paths")
    parser.add_argument("--decode-workers", type=int, default=2, help="threads building the cache")
    parser.add_argument("--epochs", type=int, default=3, help="timed passes per path (median reported)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "isic"
        write_jpegs(root, args.n)
        paths = sorted((root / f"{PREFIX}Training_Input").glob("*.jpg"))
        reference = [epoch_rate(DecodeEveryTime(paths, args.size), args.batch_size, args.loader_workers)
                     for _ in range(args.epochs)]
        source = ISIC2018(root=root, image_size=args.size, cache_dir=Path(tmp) / "cache",
                          decode_workers=args.decode_workers)
        start = time.perf_counter()
        bundle = source.load()
        build = (args.n + 2) / (time.perf_counter() - start)
        cached = [epoch_rate(bundle.train, args.batch_size, args.loader_workers) for _ in range(args.epochs)]
        start = time.perf_counter()
        ISIC2018(root=root, image_size=args.size, cache_dir=Path(tmp) / "cache").load()
        reopen = time.perf_counter() - start
    ref, fast = float(np.median(reference)), float(np.median(cached))
    print(f"# {args.n} JPEGs 600x450 -> {args.size}px, batch {args.batch_size}, loader workers "
          f"{args.loader_workers}, torch threads 1, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    print("| path | images/s | vs. decoding JPEGs |")
    print("|---|---:|---:|")
    print(f"| reference: decode + resize JPEG per sample (every epoch) | {ref:.0f} | 1.00x |")
    print(f"| trixai cache, first run: decode once and write ({args.decode_workers} threads) | {build:.0f} | "
          f"{build / ref:.2f}x |")
    print(f"| trixai cache, every later epoch / run (memory-mapped uint8) | {fast:.0f} | {fast / ref:.2f}x |")
    print(f"reopening the cache in a new run (key check of {args.n + 2} files + mmap): {reopen * 1000:.0f} ms")


if __name__ == "__main__":
    main()
