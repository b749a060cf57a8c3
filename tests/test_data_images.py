"""Image decoding, channel and resize policies, box mapping and DICOM conversion."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import write_dicom, write_image
from PIL import Image

from trixai.core.errors import TrixaiError
from trixai.data.dicom import linear_window, read_dicom
from trixai.data.images import BadImageError, box_to_output, read_image


def test_channel_policy_gray_and_rgb(tmp_path):
    gray = write_image(tmp_path / "g.png", 77, mode="L")
    rgb = tmp_path / "c.png"
    Image.new("RGB", (10, 10), (255, 0, 0)).save(rgb)
    image, original = read_image(gray, size=8, channels=3)
    assert image.shape == (8, 8, 3) and (image == 77).all() and original == (30, 40)
    image, _ = read_image(gray, size=8, channels=1)
    assert image.shape == (8, 8, 1) and (image == 77).all()
    image, _ = read_image(rgb, size=4, channels=1)
    assert (image == 76).all()  # ITU-R 601-2 luma of pure red: 0.299 * 255 = 76.2


def test_resize_crop_keeps_the_centre(tmp_path):
    array = np.zeros((20, 40), np.uint8)
    array[:, 10:30] = 200  # centre square bright, sides dark
    Image.fromarray(array).save(tmp_path / "wide.png")
    cropped, _ = read_image(tmp_path / "wide.png", size=20, channels=1, resize="crop")
    squashed, _ = read_image(tmp_path / "wide.png", size=20, channels=1, resize="squash")
    assert (cropped == 200).all()
    assert squashed[:, 0, 0].max() == 0 and squashed[:, 10, 0].min() == 200


def test_box_to_output():
    assert box_to_output((256, 512, 256, 128), (1024, 1024), 32, "squash") == (8.0, 16.0, 16.0, 20.0)
    # crop: 40 x 20 -> scale 1, dx = 10: x 12..16 maps to 2..6
    assert box_to_output((12, 5, 4, 10), (20, 40), 20, "crop") == (2.0, 5.0, 6.0, 15.0)


def test_sixteen_bit_png_is_min_max_scaled(tmp_path):
    array = np.array([[1000, 3000], [5000, 5000]], np.uint16)
    Image.fromarray(array).save(tmp_path / "deep.png")
    image, _ = read_image(tmp_path / "deep.png", size=2, channels=1)
    assert image[..., 0].tolist() == [[0, 128], [255, 255]]


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(BadImageError, match=r"image file .*nothere\.png does not exist"):
        read_image(tmp_path / "nothere.png", size=8, channels=3)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(BadImageError, match=r"cannot decode image .*broken\.jpg .*expected a PNG, JPEG"):
        read_image(tmp_path / "broken.jpg", size=8, channels=3)
    with pytest.raises(TrixaiError, match=r"dataset.channels=2 is not one of \[1, 3\]"):
        read_image(tmp_path / "broken.jpg", size=8, channels=2)


def test_linear_window_matches_the_dicom_formula():
    values = np.array([-1.0, 0.0, 39.5, 40.0, 79.5, 80.0, 200.0])
    # center 40, width 81: ((x - 39.5) / 80 + 0.5) clipped to [0, 1]
    np.testing.assert_allclose(linear_window(values, 40, 81), [0.0, 0.00625, 0.5, 0.50625, 1.0, 1.0, 1.0])


def test_dicom_rescale_window_and_monochrome1(tmp_path):
    stored = np.array([[0, 50], [100, 200]], np.uint16)
    # modality: 2 * stored - 100 -> [[-100, 0], [100, 300]]; window center 100 width 201 -> 0..200 -> 0..1
    path = write_dicom(tmp_path / "a.dcm", stored, slope=2.0, intercept=-100.0, window=(100.0, 201.0))
    # (0 - 99.5) / 200 + 0.5 = 0.0025 -> 1; (100 - 99.5) / 200 + 0.5 = 0.5025 -> 128
    assert read_dicom(path).tolist() == [[0, 1], [128, 255]]
    inverted = write_dicom(tmp_path / "b.dcm", stored, photometric="MONOCHROME1", slope=2.0, intercept=-100.0,
                           window=(100.0, 201.0))
    assert read_dicom(inverted).tolist() == [[255, 254], [127, 0]]
    no_window = write_dicom(tmp_path / "c.dcm", stored)
    assert read_dicom(no_window).tolist() == [[0, 64], [128, 255]]  # min..max
    assert read_dicom(path, window=(0.0, 2.0)).tolist() == [[0, 255], [255, 255]]


def test_dicom_through_read_image(tmp_path):
    path = write_dicom(tmp_path / "scan.dcm", np.full((6, 6), 300, np.uint16), window=(200.0, 100.0))
    image, original = read_image(path, size=4, channels=3)
    assert image.shape == (4, 4, 3) and (image == 255).all() and original == (6, 6)
    (tmp_path / "bad.dcm").write_bytes(b"not a dicom")
    with pytest.raises(BadImageError, match=r"cannot read DICOM .*bad\.dcm"):
        read_image(tmp_path / "bad.dcm", size=4, channels=1)
