"""Crop policy: padding, clamping, degenerate boxes, and the full-image fallback."""

import pytest
from PIL import Image

from vlclip.grounding.crops import crop, full_box, pad_and_clamp


def test_margin_pads_each_side_by_a_share_of_the_box():
    assert pad_and_clamp((10, 20, 30, 60), 0.1, 100, 100) == pytest.approx((8, 16, 32, 64))


def test_box_at_the_border_is_clamped():
    assert pad_and_clamp((0, 90, 50, 100), 0.2, 100, 100) == pytest.approx((0, 88, 60, 100))


def test_huge_margin_becomes_the_whole_image():
    assert pad_and_clamp((40, 40, 60, 60), 50.0, 80, 100) == (0.0, 0.0, 80.0, 100.0)


def test_zero_area_and_outside_boxes_fall_back():
    assert pad_and_clamp((10, 10, 10, 40), 0.5, 100, 100) is None
    assert pad_and_clamp((120, 120, 150, 150), 0.0, 100, 100) is None


def test_swapped_corners_are_normalised():
    assert pad_and_clamp((30, 60, 10, 20), 0.0, 100, 100) == (10, 20, 30, 60)


def test_crop_rounds_outwards_and_limits_size():
    image = Image.new("RGB", (400, 200))
    assert crop(image, (10.4, 20.6, 30.2, 40.1), max_side=256).size == (21, 21)
    assert max(crop(image, full_box(400, 200), max_side=100).size) == 100
