"""Crop policy: padding, clamping, degenerate boxes, and the full-image fallback."""

import pytest
from PIL import Image

from vlclip.ground.crops import box_iou, choose_box, crop, full_box, pad_and_clamp


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


def test_iou_of_identical_disjoint_and_half_overlapping_boxes():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 0, 10), (0, 0, 0, 10)) == 0.0


def test_confident_box_is_padded_and_weak_or_missing_box_falls_back():
    assert choose_box((10, 10, 30, 30), 0.9, 0.3, 0.1, 100, 80) == ((8, 8, 32, 32), False)
    assert choose_box((10, 10, 30, 30), 0.2, 0.3, 0.1, 100, 80) == ((0, 0, 100, 80), True)
    assert choose_box(None, 1.0, 0.3, 0.1, 100, 80) == ((0, 0, 100, 80), True)


def test_score_exactly_at_the_threshold_keeps_the_box():
    assert choose_box((10, 10, 30, 30), 0.3, 0.3, 0.0, 100, 80) == ((10, 10, 30, 30), False)


def test_degenerate_or_outside_box_falls_back_even_when_confident():
    assert choose_box((50, 50, 50, 70), 0.99, 0.3, 0.05, 100, 80)[1] is True
    assert choose_box((200, 200, 300, 300), 0.99, 0.3, 0.05, 100, 80)[1] is True
