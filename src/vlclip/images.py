"""Safe image access: every image is checked once at ingest and read through here later.

Bad images (missing, corrupt, truncated, decompression bombs, paths that escape the catalog root)
are reported as :class:`ImageProblem` with a readable reason, so the caller can quarantine the
row instead of crashing.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vlclip.io import sha256_bytes


class ImageProblem(Exception):
    """An image that cannot be used; ``reason`` is short and meant for people."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    sha256: str


def resolve_inside(root: Path, relative: str) -> Path:
    """Resolve ``relative`` under ``root``; refuse absolute paths and ``..`` escapes."""
    if not isinstance(relative, str) or not relative.strip():
        raise ImageProblem("empty image path")
    if "\x00" in relative:
        raise ImageProblem("image path contains a NUL byte")
    candidate = Path(relative)
    if candidate.is_absolute():
        raise ImageProblem("absolute image path (paths must be relative to the catalog root)")
    root_resolved = root.resolve()
    try:
        resolved = (root_resolved / candidate).resolve()
    except (OSError, RuntimeError) as error:  # symlink loops, names too long for the OS
        reason = getattr(error, "strerror", None) or error
        raise ImageProblem(f"unusable image path: {reason}") from None
    if not resolved.is_relative_to(root_resolved):
        raise ImageProblem("image path escapes the catalog root")
    return resolved


def inspect_image(path: Path, max_pixels: int, min_side: int) -> ImageInfo:
    """Fully decode ``path`` once and return its size and content hash, or raise ImageProblem."""
    try:
        if not path.is_file():
            raise ImageProblem("image file not found")
        data = path.read_bytes()
    except OSError as error:  # a name too long, a loop, no permission: a bad row, not a crash
        raise ImageProblem(f"cannot read image file: {error.strerror or error}") from None
    if not data:
        raise ImageProblem("image file is empty")
    try:
        with Image.open(path) as probe:
            width, height = probe.size
            if width * height > max_pixels:
                raise ImageProblem(
                    f"decompression bomb: {width}x{height} exceeds max_image_pixels={max_pixels}"
                )
            probe.load()  # full decode: catches truncated and corrupt data
            if probe.getexif().get(EXIF_ORIENTATION) in ROTATED:
                width, height = height, width  # recorded as the photo is seen, upright
    except ImageProblem:
        raise
    except Image.DecompressionBombError as error:
        raise ImageProblem(f"decompression bomb: {error}") from None
    except UnidentifiedImageError:
        raise ImageProblem("not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageProblem(f"corrupt or truncated image: {error}") from None
    if min(width, height) < min_side:
        raise ImageProblem(f"image too small: {width}x{height} (min side {min_side})")
    return ImageInfo(width=width, height=height, sha256=sha256_bytes(data))


EXIF_ORIENTATION = 0x0112
ROTATED = {5, 6, 7, 8}
"""EXIF orientations whose upright photo has width and height swapped."""
WIDE_INTEGER_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
"""Greyscale modes with values beyond 8 bits (16-bit PNGs): ``convert("RGB")`` clips them."""


TRANSPARENT_BACKGROUND = (255, 255, 255, 255)
"""Catalog cut-outs are shown on white; dropping the alpha channel would show them on the
colour hidden under the transparent pixels, often black."""


def as_rgb(image: Image.Image) -> Image.Image:
    """An image upright (EXIF orientation applied) and in 8-bit RGB; 16-bit greyscale is
    scaled, not clipped to white, and transparent pixels are white."""
    image = ImageOps.exif_transpose(image)
    if image.mode in WIDE_INTEGER_MODES:
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max() > 255 else 255.0
        image = Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, TRANSPARENT_BACKGROUND), rgba)
    return image.convert("RGB")


def load_rgb(path: Path) -> Image.Image:
    """Open an image that passed ingest: upright, as 8-bit RGB."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            return as_rgb(image)
