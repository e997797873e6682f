"""Crop policy from the paper: best box, padded by a margin, clamped; else the full image."""

from __future__ import annotations

from PIL import Image

Box = tuple[float, float, float, float]


def full_box(width: int, height: int) -> Box:
    return (0.0, 0.0, float(width), float(height))


def pad_and_clamp(box: Box, margin: float, width: int, height: int) -> Box | None:
    """Grow ``box`` by ``margin`` of its size on each side and clamp it to the image.

    Returns None for a box with no area inside the image, so the caller falls back.
    """
    x0, y0, x1, y1 = box
    if x1 < x0:
        x0, x1 = x1, x0
    if y1 < y0:
        y0, y1 = y1, y0
    pad_x, pad_y = (x1 - x0) * margin, (y1 - y0) * margin
    x0, y0 = max(0.0, x0 - pad_x), max(0.0, y0 - pad_y)
    x1, y1 = min(float(width), x1 + pad_x), min(float(height), y1 + pad_y)
    if x1 - x0 < 1.0 or y1 - y0 < 1.0:
        return None
    return (x0, y0, x1, y1)


def crop(image: Image.Image, box: Box, max_side: int) -> Image.Image:
    """Cut ``box`` out (rounded outwards to whole pixels), shrunk so its long side <= max_side."""
    left, top = int(box[0]), int(box[1])
    right, bottom = int(-(-box[2] // 1)), int(-(-box[3] // 1))
    region = image.crop((left, top, right, bottom))
    if max(region.size) > max_side:
        region.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return region


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes; 0 when either has no area."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def choose_box(
    box: Box | None, score: float, threshold: float, margin: float, width: int, height: int
) -> tuple[Box, bool]:
    """The region to crop and whether it is the full-image fallback.

    VL-CLIP keeps the detector's best box, padded, when its score reaches the threshold, and
    the whole photo otherwise (a missed product is better than a confident wrong crop).
    """
    if box is not None and score >= threshold:
        padded = pad_and_clamp(box, margin, width, height)
        if padded is not None:
            return padded, False
    return full_box(width, height), True
