"""Run by an interpreter that has ``imagecorruptions`` (a test-only reference, kept out of the project's venv):
``python corruption_reference.py images.npy out.npz seeds`` applies ImageNet-C's corruptions to uint8 (N, H, W, 3)
images at every severity, ``seeds`` times each (not gaussian_blur: imagecorruptions 1.1.2 calls scikit-image's removed
``multichannel`` argument), and saves float arrays in [0, 1] keyed ``<name>_<severity>``."""

import sys

import numpy as np
from imagecorruptions import corrupt

NAMES = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "defocus_blur",
         "motion_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression")

if __name__ == "__main__":
    images = np.load(sys.argv[1])
    repeats = int(sys.argv[3])
    out = {}
    for name in NAMES:
        for severity in range(1, 6):
            results = []
            for seed in range(repeats):
                np.random.seed(seed)
                results.append(np.stack([np.asarray(corrupt(im, corruption_name=name, severity=severity),
                                                     dtype=np.float32) / 255.0 for im in images]))
            out[f"{name}_{severity}"] = np.stack(results)
    np.savez_compressed(sys.argv[2], **out)
