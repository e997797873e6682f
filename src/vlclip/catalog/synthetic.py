"""The embedded demo catalog: a small e-commerce catalog rendered from a seed.

Why it looks the way it does:

- Catalog photos show each product large on a clean studio background, while query photos show
  the same product small, rotated, under other lighting, among distractors on a cluttered
  background. A model that looks at the whole query photo is distracted; one that looks at the
  grounded product crop is not. That gap is what the grounding stage is meant to close, and the
  ground-truth boxes let it be scored by IoU.
- Titles are typed the way real supplier feeds type them: the same word is written several ways
  across listings ("ORG", "Orgnc.", "organic"), with random case, punctuation, spacing and unit
  spellings. Shortened forms are made by general rules (truncation, dropped vowels, first
  syllable), not looked up in a table, so no glossary is derived from this module: a hand-written
  glossary reads some of them, and some stay unreadable, as in a real catalog. Descriptions are
  terse supplier notes, attributes use mixed keys and units.
- Everything comes from ``numpy.random.default_rng`` streams derived from ``source.seed`` and is
  drawn with PIL only, so one seed always gives the same tables and byte-identical PNG files.
  Each product is rendered from its own stream, so a product's images do not depend on how many
  other products there are or in which order they are rendered.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageChops, ImageDraw, ImageFilter
from tqdm import tqdm

from vlclip.catalog.schema import BOX_COLUMNS, ITEM_SOURCE_COLUMNS, QUERY_SOURCE_COLUMNS
from vlclip.catalog.sources import SourceTables
from vlclip.config import SyntheticSource

__all__ = [
    "CATEGORIES",
    "COLORS",
    "MODIFIERS",
    "PATTERNS",
    "PRODUCT_TYPES",
    "UNITS",
    "VOCABULARY",
    "ProductType",
    "generate_synthetic",
    "spellings",
]

IMAGE_ROOT = "images"
ITEM_IMAGE_DIR = "items"
QUERY_IMAGE_DIR = "queries"
ITEM_ID_PREFIX = "demo"

Rgb = tuple[int, int, int]
Box = tuple[float, float, float, float]

# --------------------------------------------------------------------------- vocabulary

# Full colour names and their RGB. Hues are far apart so that products stay distinguishable
# after the lighting jitter of query photos.
COLORS: dict[str, Rgb] = {
    "red": (205, 35, 40),
    "orange": (242, 128, 20),
    "yellow": (246, 212, 40),
    "lime": (150, 212, 40),
    "green": (30, 130, 55),
    "teal": (0, 140, 140),
    "blue": (45, 105, 215),
    "navy": (25, 35, 95),
    "purple": (120, 50, 165),
    "pink": (242, 125, 185),
    "brown": (115, 70, 30),
    "black": (25, 25, 28),
    "grey": (140, 140, 145),
    "white": (246, 246, 244),
}

# Caps, lids, pumps and crimps have a colour fixed by the product type, not by the product.
ACCENT_COLORS: dict[str, Rgb] = {
    "silver": (190, 192, 200),
    "black": (30, 30, 32),
    "white": (250, 250, 250),
    "gold": (212, 172, 55),
    "red": (190, 25, 30),
    "blue": (30, 80, 190),
    "green": (30, 120, 50),
    "terracotta": (190, 95, 60),
}
# Fixed colours for details drawn over the pattern: a box window, a picture in a frame.
_DETAIL_COLOR: Rgb = (250, 242, 222)
_PICTURE_COLOR: Rgb = (150, 192, 232)

PATTERNS: tuple[str, ...] = (
    "plain", "stripes", "dots", "label band", "checker", "diagonal stripes", "two-tone",
)

# Marketing claims that prefix some titles; food-only ones are kept off soap and candles.
_GENERIC_MODIFIERS = ("premium", "classic", "value", "family size")
_FOOD_MODIFIERS = ("organic", "natural", "sugar free")
MODIFIERS: tuple[str, ...] = _GENERIC_MODIFIERS + _FOOD_MODIFIERS
_FOOD_CATEGORIES = frozenset({"beverages", "pantry", "dairy", "snacks"})
MODIFIER_PROBABILITY = 0.35

_ML_PER_FL_OZ = 29.5735
_G_PER_OZ = 28.3495
_G_PER_LB = 453.592
_LARGE_UNIT_FROM = 900.0  # ml or g from which litres / kilograms are plausible
_POUNDS_FROM = 400.0  # g from which pounds are plausible
_SIZE_MULTIPLIERS = (0.5, 0.75, 1.0, 1.5, 2.0)

# --------------------------------------------------------------------------- product types


@dataclass(frozen=True)
class ProductType:
    """A kind of product and how it is drawn.

    ``aspect`` is height over width; ``variant`` (0..1) moves the details of the silhouette
    (neck width, lid height, window, crimp) so that types sharing a silhouette still differ.
    """

    name: str
    category: str
    silhouette: str
    aspect: float
    variant: float
    accent: str
    measure: str  # "volume" (ml), "weight" (g) or "count"
    base_amount: float

    @property
    def band_center(self) -> float:
        """Where the label band / two-tone split sits, as a fraction of the label height."""
        return 0.3 + 0.4 * self.variant


_TYPE_ROWS = (
    # name, category, silhouette, aspect, variant, accent, measure, base amount
    ("soda can", "beverages", "can", 1.8, 0.3, "silver", "volume", 355),
    ("energy drink can", "beverages", "can", 2.5, 0.1, "black", "volume", 250),
    ("water bottle", "beverages", "bottle", 2.9, 0.55, "blue", "volume", 500),
    ("sports drink bottle", "beverages", "bottle", 2.5, 1.0, "black", "volume", 600),
    ("juice carton", "beverages", "carton", 2.0, 0.8, "blue", "volume", 1000),
    ("coffee bag", "beverages", "pouch", 1.5, 0.8, "black", "weight", 340),
    ("olive oil bottle", "pantry", "bottle", 3.3, 0.1, "gold", "volume", 500),
    ("ketchup bottle", "pantry", "bottle", 2.0, 0.8, "red", "weight", 400),
    ("tomato sauce jar", "pantry", "jar", 1.3, 0.4, "gold", "weight", 680),
    ("honey jar", "pantry", "jar", 1.05, 0.9, "silver", "weight", 340),
    ("spice jar", "pantry", "jar", 2.0, 0.2, "red", "weight", 50),
    ("cereal box", "pantry", "box", 1.45, 0.6, "white", "weight", 375),
    ("pasta box", "pantry", "box", 0.5, 0.9, "blue", "weight", 454),
    ("rice bag", "pantry", "pouch", 1.3, 0.6, "white", "weight", 2000),
    ("soup can", "pantry", "can", 1.35, 0.7, "silver", "weight", 400),
    ("tea tin", "pantry", "tin", 1.25, 0.3, "gold", "weight", 100),
    ("yogurt cup", "dairy", "cup", 1.05, 0.3, "silver", "weight", 150),
    ("milk carton", "dairy", "carton", 2.4, 0.2, "white", "volume", 1000),
    ("milk jug", "dairy", "jug", 1.45, 0.7, "red", "volume", 3780),
    ("cream cheese tub", "dairy", "tub", 0.55, 0.3, "silver", "weight", 227),
    ("ice cream tub", "dairy", "tub", 0.85, 0.7, "white", "volume", 1420),
    ("butter box", "dairy", "box", 0.38, 0.1, "gold", "weight", 454),
    ("detergent jug", "household", "jug", 1.15, 0.3, "blue", "volume", 2950),
    ("bleach jug", "household", "jug", 1.7, 0.5, "white", "volume", 3780),
    ("dish soap bottle", "household", "bottle", 2.4, 0.35, "white", "volume", 750),
    ("spray cleaner", "household", "spray", 2.3, 0.5, "white", "volume", 946),
    ("glass cleaner spray", "household", "spray", 2.7, 0.1, "blue", "volume", 680),
    ("trash bag box", "household", "box", 0.7, 0.3, "black", "count", 40),
    ("laundry pod tub", "household", "tub", 1.0, 1.0, "blue", "count", 42),
    ("air freshener can", "household", "can", 3.0, 0.9, "white", "weight", 250),
    ("shampoo bottle", "personal care", "bottle", 2.1, 0.6, "silver", "volume", 400),
    ("toothpaste tube", "personal care", "tube", 3.0, 0.2, "white", "weight", 100),
    ("sunscreen tube", "personal care", "tube", 2.4, 0.5, "blue", "volume", 150),
    ("deodorant stick", "personal care", "tube", 2.6, 0.9, "white", "weight", 75),
    ("hand soap pump", "personal care", "pump", 2.0, 0.3, "white", "volume", 221),
    ("lotion pump bottle", "personal care", "pump", 2.9, 0.8, "silver", "volume", 500),
    ("face cream jar", "personal care", "jar", 0.6, 0.6, "silver", "weight", 50),
    ("chips bag", "snacks", "pouch", 1.35, 0.1, "silver", "weight", 227),
    ("pretzel bag", "snacks", "pouch", 1.6, 0.3, "gold", "weight", 454),
    ("cookie box", "snacks", "box", 0.8, 0.8, "gold", "weight", 300),
    ("cracker box", "snacks", "box", 1.2, 0.4, "red", "weight", 250),
    ("nut tin", "snacks", "tin", 0.75, 0.6, "silver", "weight", 285),
    ("popcorn bucket", "snacks", "cup", 1.35, 0.0, "white", "weight", 200),
    ("candle jar", "home decor", "jar", 1.15, 0.0, "black", "weight", 400),
    ("vase", "home decor", "vase", 1.7, 0.5, "gold", "volume", 1500),
    ("plant pot", "home decor", "cup", 0.95, 1.0, "terracotta", "volume", 1000),
    ("reed diffuser bottle", "home decor", "bottle", 1.3, 0.0, "black", "volume", 100),
    ("photo frame", "home decor", "frame", 1.25, 0.5, "gold", "count", 2),
    ("decorative tin", "home decor", "tin", 0.55, 1.0, "gold", "weight", 200),
    ("ceramic mug", "home decor", "mug", 1.0, 0.5, "white", "volume", 350),
    ("dog food bag", "pet care", "pouch", 1.55, 0.45, "black", "weight", 6800),
    ("cat food can", "pet care", "can", 0.6, 0.5, "gold", "weight", 85),
    ("pet treat pouch", "pet care", "pouch", 1.25, 1.0, "red", "weight", 170),
    ("cat litter jug", "pet care", "jug", 1.25, 0.0, "black", "weight", 4500),
    ("pet shampoo bottle", "pet care", "pump", 2.4, 0.5, "black", "volume", 473),
)
PRODUCT_TYPES: tuple[ProductType, ...] = tuple(ProductType(*row) for row in _TYPE_ROWS)
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(t.category for t in PRODUCT_TYPES))

# --------------------------------------------------------------------------- rendering settings

# Silhouettes are drawn 2-3 times larger, then box-averaged down: 3x for small sprites, 2x once
# 3x would make the drawing canvas longer than MAX_CANVAS_SIDE (drawing time grows with area).
SUPERSAMPLE = (2, 3)
MAX_CANVAS_SIDE = 200
ALPHA_MIN = 64  # edge pixels covered less than this (of 255) count as background
OUTLINE_DARKEN = 0.45  # rim pixels keep this share of their colour
ROUND_SILHOUETTES = frozenset(
    {"can", "bottle", "jar", "tube", "jug", "cup", "tin", "pump", "tub", "spray", "vase", "mug"}
)

# Catalog photo: product large and centred on a plain studio sweep.
ITEM_SCALE = (0.62, 0.8)  # longest product side, as a share of the image side
ITEM_CENTER_JITTER = 0.04
ITEM_BACKGROUND_LEVEL = (236, 250)
ITEM_BACKGROUND_TINT = 4
ITEM_SWEEP_DARKEN = 14  # the studio sweep is this much darker at the bottom
SHADOW_DARKEN = 0.8
SHADOW_BLUR = 0.02  # as a share of the image side

# Query photo: product small somewhere in a cluttered scene.
QUERY_SCALE = (0.15, 0.45)
QUERY_ROTATION_PROBABILITY = 0.5
QUERY_MAX_ROTATION = 12.0  # degrees
DISTRACTOR_COUNT = (2, 5)  # inclusive
DISTRACTOR_SCALE = (0.15, 0.5)
DISTRACTOR_PRODUCT_PROBABILITY = 0.6
BACKGROUND_NOISE_CELLS = (3, 9)
BACKGROUND_NOISE_AMPLITUDE = 70.0
BACKGROUND_GREY = 128.0
BACKGROUND_MUTE = 0.4
BRIGHTNESS = (0.7, 1.25)
CONTRAST = (0.75, 1.2)
COLOR_CAST = 0.08
LIGHT_GRADIENT = 0.25
SENSOR_NOISE = (1.0, 4.0)  # standard deviation, in 8-bit levels

PNG_COMPRESS_LEVEL = 1
MAX_WORKERS = 8
PRODUCTS_PER_WORKER = 100  # below this many products per extra process, render in-process
RENDER_CHUNK = 16  # products per task sent to a worker
_RENDER_STREAM = 1  # per-product random streams are keyed (seed, _RENDER_STREAM, index)

# --------------------------------------------------------------------------- silhouettes

# What each pixel of a silhouette shows; later drawing overwrites earlier drawing.
_ROLES = {"cut": 0, "body": 1, "accent": 2, "detail": 3, "picture": 4}


class _Painter:
    """Draws one silhouette as a role map, in coordinates given as fractions of the canvas.

    Roles: ``body`` carries the product's colours and pattern, ``accent`` its type-specific
    cap/lid colour, ``detail`` and ``picture`` fixed colours. ``cut`` makes holes (handles).
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.roles = Image.new("L", (width, height), _ROLES["cut"])
        self._draw = ImageDraw.Draw(self.roles)

    def _xy(self, box: Box) -> list[float]:
        x0, y0, x1, y1 = box[0] * self.width, box[1] * self.height, box[2], box[3]
        # PIL includes the far edge; keep the box at least one pixel on tiny canvases.
        return [x0, y0, max(x0, x1 * self.width - 1), max(y0, y1 * self.height - 1)]

    def rect(self, role: str, box: Box, radius: float = 0.0) -> None:
        xy = self._xy(box)
        limit = min(xy[2] - xy[0], xy[3] - xy[1]) / 2
        pixels = max(0.0, min(radius * min(self.width, self.height), limit))
        self._draw.rounded_rectangle(xy, radius=pixels, fill=_ROLES[role])

    def ellipse(self, role: str, box: Box) -> None:
        self._draw.ellipse(self._xy(box), fill=_ROLES[role])

    def polygon(self, role: str, points: Iterable[tuple[float, float]]) -> None:
        xy = [(x * self.width, y * self.height) for x, y in points]
        self._draw.polygon(xy, fill=_ROLES[role])


# Each silhouette draws itself and returns the label box (fractions) that patterns fill.
Silhouette = Callable[[_Painter, float], Box]


def _can(p: _Painter, v: float) -> Box:
    if v >= 0.8:  # aerosol: a narrower domed cap instead of a lid
        cap = 0.16
        p.rect("body", (0, cap * 0.8, 1, 1), radius=0.12)
        p.rect("accent", (0.12, 0, 0.88, cap), radius=0.35)
        return (0, cap, 1, 0.96)
    rim = 0.05 + 0.04 * v
    p.rect("body", (0, rim * 0.8, 1, 1 - rim * 0.4), radius=0.08)
    p.rect("accent", (0.03, 0, 0.97, rim * 1.5), radius=0.2)
    p.rect("accent", (0.06, 1 - rim, 0.94, 1), radius=0.2)
    return (0, rim * 1.5, 1, 1 - rim)


def _bottle(p: _Painter, v: float) -> Box:
    neck = 0.24 + 0.32 * v  # neck width
    neck_x0, neck_x1 = 0.5 - neck / 2, 0.5 + neck / 2
    cap = 0.07 + 0.03 * (1 - v)
    shoulder_top = cap + 0.24 - 0.12 * v
    shoulder_bottom = shoulder_top + 0.1
    p.rect("body", (0, shoulder_bottom - 0.04, 1, 1), radius=0.14)
    p.polygon("body", [(0, shoulder_bottom), (neck_x0, shoulder_top), (neck_x1, shoulder_top),
                       (1, shoulder_bottom)])
    p.rect("body", (neck_x0, cap, neck_x1, shoulder_top + 0.01))
    p.rect("accent", (neck_x0 - 0.04, 0, neck_x1 + 0.04, cap), radius=0.05)
    return (0, shoulder_bottom + 0.04, 1, 0.97)


def _box(p: _Painter, v: float) -> Box:
    flap = 0.05 + 0.07 * v
    p.rect("body", (0, 0, 1, 1))
    p.rect("accent", (0, 0, 1, flap))
    if v >= 0.75:  # a see-through window
        p.rect("detail", (0.25, 0.5, 0.75, 0.82), radius=0.08)
    return (0, flap, 1, 1)


def _jar(p: _Painter, v: float) -> Box:
    lid = 0.13 + 0.1 * v
    p.rect("body", (0, lid + 0.04, 1, 1), radius=0.18)
    p.rect("body", (0.1, lid - 0.01, 0.9, lid + 0.08))
    p.rect("accent", (0.06, 0, 0.94, lid), radius=0.08)
    return (0, lid + 0.1, 1, 0.92)


def _zigzag(
    y: float, depth: float, teeth: int, inset: float, upward: bool
) -> list[tuple[float, float]]:
    """Points of a crimped seam from left to right."""
    points = []
    for i in range(2 * teeth + 1):
        x = inset + (1 - 2 * inset) * i / (2 * teeth)
        tip = (i % 2 == 0) == upward
        points.append((x, y - depth if tip else y))
    return points


def _pouch(p: _Painter, v: float) -> Box:
    crimp = 0.07 + 0.05 * v
    teeth = 7
    if v < 0.5:  # pillow bag: crimped at both ends, bulging sides
        p.polygon("body", [(0.05, crimp), (0.95, crimp), (1, 0.5), (0.95, 1 - crimp),
                           (0.05, 1 - crimp), (0, 0.5)])
        p.polygon("accent", [*_zigzag(crimp * 0.5, -crimp * 0.5, teeth, 0.04, True),
                             (0.96, crimp * 1.3), (0.04, crimp * 1.3)])
        p.polygon("accent", [(0.04, 1 - crimp * 1.3), (0.96, 1 - crimp * 1.3),
                             *reversed(_zigzag(1 - crimp * 0.5, crimp * 0.5, teeth, 0.04, False))])
        return (0.05, crimp * 1.3, 0.95, 1 - crimp * 1.3)
    # stand-up pouch: crimped top, flared gusset at the bottom
    p.polygon("body", [(0.08, crimp), (0.92, crimp), (1, 0.92), (0.97, 1), (0.03, 1), (0, 0.92)])
    p.polygon("accent", [*_zigzag(crimp * 0.5, -crimp * 0.5, teeth, 0.08, True),
                         (0.92, crimp * 1.4), (0.08, crimp * 1.4)])
    p.ellipse("detail", (0.78, crimp * 1.8, 0.86, crimp * 1.8 + 0.05))  # hang hole / valve
    return (0.06, crimp * 1.4, 0.94, 0.97)


def _tube(p: _Painter, v: float) -> Box:
    if v >= 0.75:  # stick: capsule with a tall cap on top
        cap = 0.28
        p.rect("body", (0, cap - 0.02, 1, 1), radius=0.22)
        p.rect("accent", (0, 0, 1, cap), radius=0.22)
        return (0, cap, 1, 0.95)
    crimp = 0.06
    cap = 0.1 + 0.08 * v
    p.rect("accent", (0, 0, 1, crimp))
    p.polygon("body", [(0, crimp), (1, crimp), (0.72, 1 - cap), (0.28, 1 - cap)])
    p.rect("accent", (0.3, 1 - cap - 0.01, 0.7, 1), radius=0.05)
    return (0.05, crimp, 0.95, 1 - cap - 0.1)


def _jug(p: _Painter, v: float) -> Box:
    handle_bottom = 0.45 + 0.1 * v
    p.rect("body", (0, 0.25, 1, 1), radius=0.1)
    p.polygon("body", [(0, 0.32), (0.12, 0.1), (0.58, 0.1), (1, 0.3)])
    p.ellipse("body", (0.5, 0.02, 1, handle_bottom))
    p.ellipse("cut", (0.62, 0.1, 0.88, handle_bottom - 0.1))
    p.rect("accent", (0.1, 0, 0.42, 0.12), radius=0.06)
    return (0, handle_bottom, 1, 0.95)


def _cup(p: _Painter, v: float) -> Box:
    lid = 0.07 + 0.14 * v
    taper = 0.08 + 0.06 * v
    p.polygon("body", [(0.02, lid), (0.98, lid), (1 - taper, 1), (taper, 1)])
    p.rect("accent", (0, 0, 1, lid + 0.01), radius=0.05)
    return (taper / 2, lid, 1 - taper / 2, 1)


def _tin(p: _Painter, v: float) -> Box:
    lid = 0.16 + 0.12 * v
    p.rect("body", (0.02, lid * 0.8, 0.98, 1), radius=0.05)
    p.rect("accent", (0, 0, 1, lid), radius=0.06)
    p.rect("accent", (0.02, 0.96, 0.98, 1))
    return (0.02, lid, 0.98, 0.96)


def _carton(p: _Painter, v: float) -> Box:
    fin, roof = 0.05, 0.2
    top = fin + roof
    p.rect("body", (0, top, 1, 1))
    p.polygon("body", [(0, top), (0.15, fin), (0.85, fin), (1, top)])
    p.rect("accent", (0.15, 0, 0.85, fin + 0.01))
    spout_x = 0.25 + 0.35 * v
    p.ellipse("accent", (spout_x, fin + 0.04, spout_x + 0.2, fin + 0.04 + 0.09))
    return (0, top, 1, 1)


def _pump(p: _Painter, v: float) -> Box:
    head = 0.08 + 0.04 * v
    stem_top = head + 0.02
    collar = stem_top + 0.12 + 0.08 * v
    p.rect("body", (0, collar + 0.06, 1, 1), radius=0.2)
    p.rect("accent", (0.28, collar, 0.72, collar + 0.08), radius=0.05)
    p.rect("accent", (0.43, stem_top - 0.01, 0.57, collar + 0.01))
    p.rect("accent", (0.22, 0, 0.74, head), radius=0.05)
    p.rect("accent", (0.7, head * 0.25, 1, head * 0.75))
    return (0, collar + 0.12, 1, 0.95)


def _tub(p: _Painter, v: float) -> Box:
    lid = 0.16 + 0.08 * v
    taper = 0.06 + 0.06 * v
    p.polygon("body", [(0.03, lid), (0.97, lid), (1 - taper, 1), (taper, 1)])
    p.rect("accent", (0, 0, 1, lid + 0.02), radius=0.08)
    return (taper, lid + 0.02, 1 - taper, 1)


def _spray(p: _Painter, v: float) -> Box:
    body_top = 0.3 + 0.06 * v
    p.rect("body", (0.05, body_top, 0.82, 1), radius=0.14)
    p.rect("body", (0.3, body_top - 0.06, 0.58, body_top + 0.02))
    neck = body_top - 0.05
    p.polygon("accent", [(0.2, 0.02), (0.9, 0.02), (1, 0.08), (0.72, 0.13), (0.62, neck),
                         (0.26, neck)])
    p.polygon("accent", [(0.62, 0.13), (0.7, 0.13), (0.66, neck + 0.03), (0.6, neck + 0.03)])
    return (0.05, body_top + 0.08, 0.82, 0.95)


def _vase(p: _Painter, v: float) -> Box:
    steps = 24
    half_widths = []
    for i in range(steps + 1):
        t = i / steps
        bulge = np.sin(np.pi * min(1.0, max(0.0, (t - 0.25) / 0.75))) ** 0.8
        neck = 0.18 + 0.14 * v
        half_widths.append((t, max(neck * (1 - t) + 0.1, 0.5 * bulge)))
    left = [(0.5 - w, t * 0.98 + 0.02) for t, w in half_widths]
    right = [(0.5 + w, t * 0.98 + 0.02) for t, w in reversed(half_widths)]
    p.polygon("body", left + right)
    rim = half_widths[0][1] + 0.04
    p.rect("accent", (0.5 - rim, 0, 0.5 + rim, 0.05), radius=0.02)
    return (0.05, 0.35, 0.95, 0.92)


def _frame(p: _Painter, v: float) -> Box:
    border = 0.12 + 0.06 * v
    p.rect("body", (0, 0, 1, 1))
    p.rect("accent", (border - 0.03, border - 0.03, 1 - border + 0.03, 1 - border + 0.03))
    p.rect("picture", (border, border, 1 - border, 1 - border))
    return (0, 0, 1, 1)


def _mug(p: _Painter, v: float) -> Box:
    p.ellipse("body", (0.55, 0.22, 1, 0.78))
    p.ellipse("cut", (0.7, 0.35, 0.9, 0.65))
    p.rect("body", (0, 0, 0.78, 1), radius=0.06 + 0.06 * v)
    p.rect("accent", (0, 0, 0.78, 0.07), radius=0.03)
    return (0, 0.07, 0.78, 1)


SILHOUETTES: dict[str, Silhouette] = {
    "can": _can, "bottle": _bottle, "box": _box, "jar": _jar, "pouch": _pouch, "tube": _tube,
    "jug": _jug, "cup": _cup, "tin": _tin, "carton": _carton, "pump": _pump, "tub": _tub,
    "spray": _spray, "vase": _vase, "frame": _frame, "mug": _mug,
}

# --------------------------------------------------------------------------- sprites


@dataclass(frozen=True)
class _Look:
    """Everything that decides how one product is drawn."""

    ptype: ProductType
    primary: Rgb
    secondary: Rgb
    pattern: str


def _pattern_mask(look: _Look, shape: tuple[int, int], label: Box) -> np.ndarray:
    """True where the secondary colour goes; patterns scale with the label, not the canvas."""
    height, width = shape
    x0, y0, x1, y1 = label[0] * width, label[1] * height, label[2] * width, label[3] * height
    label_w, label_h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    ys, xs = np.ogrid[0:height, 0:width]  # broadcast grids: full arrays only where needed
    ys, xs = ys.astype(np.float32) + 0.5, xs.astype(np.float32) + 0.5
    u, t = (xs - x0) / label_w, (ys - y0) / label_h
    inside = (u >= 0) & (u < 1) & (t >= 0) & (t < 1)
    cell = max(min(label_w, label_h) / 3.5, 2.0)
    center = look.ptype.band_center
    pattern = look.pattern
    if pattern == "plain":  # a round logo shows the secondary colour
        radius = 0.24 * min(label_w, label_h)
        mark = (xs - (x0 + x1) / 2) ** 2 + (ys - (y0 + y1) / 2) ** 2 < radius**2
    elif pattern == "stripes":
        mark = ((ys - y0) % cell) < cell * 0.45
    elif pattern == "dots":
        dx = (xs - x0) % cell - cell / 2
        dy = (ys - y0) % cell - cell / 2
        mark = dx**2 + dy**2 < (cell * 0.3) ** 2
    elif pattern == "label band":
        mark = np.abs(t - center) < 0.17
    elif pattern == "checker":
        mark = ((np.floor((xs - x0) / cell) + np.floor((ys - y0) / cell)) % 2) == 1
    elif pattern == "diagonal stripes":
        mark = ((xs + ys) % (cell * 1.2)) < cell * 0.5
    elif pattern == "two-tone":
        mark = t > center
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return inside & mark


@functools.lru_cache(maxsize=1024)
def _shading_rows(round_body: bool, width: int) -> tuple[Image.Image, Image.Image]:
    """One row of light across the product: a gain to multiply with, a highlight to screen with.

    Cylinders get a bright streak and dark edges, flat packs a slight falloff. Cached because
    only the width matters; callers stretch the rows to their height (a new image each time).
    """
    u = (np.arange(width, dtype=np.float32) + 0.5) / width
    if round_body:
        gain = 0.68 + 0.32 * np.sin(np.pi * u) ** 0.7
        highlight = 0.35 * np.exp(-(((u - 0.3) / 0.07) ** 2))
    else:
        gain = 1.0 - 0.14 * u
        highlight = np.zeros_like(u)

    def row(values: np.ndarray) -> Image.Image:
        line = np.round(values * 255).astype(np.uint8)
        return Image.fromarray(np.repeat(line[None, :, None], 3, axis=2), mode="RGB")

    return row(gain), row(highlight)


def _sprite_size(ptype: ProductType, max_side: float) -> tuple[int, int]:
    """Output width and height of a product whose longest side is ``max_side`` pixels."""
    if ptype.aspect >= 1:
        height, width = max_side, max_side / ptype.aspect
    else:
        width, height = max_side, max_side * ptype.aspect
    return max(2, round(width)), max(2, round(height))


def _render_sprite(look: _Look, max_side: float, angle: float = 0.0) -> Image.Image:
    """The product as a tight RGBA image: drawn large, rotated, box-averaged down, cropped."""
    width, height = _sprite_size(look.ptype, max_side)
    scale = int(np.clip(MAX_CANVAS_SIDE // max(width, height), *SUPERSAMPLE))
    canvas_w, canvas_h = width * scale, height * scale
    painter = _Painter(canvas_w, canvas_h)
    label = SILHOUETTES[look.ptype.silhouette](painter, look.ptype.variant)

    roles = np.asarray(painter.roles)

    sprite = Image.new("RGB", (canvas_w, canvas_h), look.primary)
    sprite.paste(look.secondary, mask=_mask(_pattern_mask(look, roles.shape, label)))
    sprite.paste(ACCENT_COLORS[look.ptype.accent], mask=_mask(roles == _ROLES["accent"]))
    gain, highlight = (
        row.resize(sprite.size, Image.Resampling.NEAREST)
        for row in _shading_rows(look.ptype.silhouette in ROUND_SILHOUETTES, canvas_w)
    )
    sprite = ImageChops.screen(ImageChops.multiply(sprite, gain), highlight)
    for role, color in (("detail", _DETAIL_COLOR), ("picture", _PICTURE_COLOR)):
        if (selected := roles == _ROLES[role]).any():
            sprite.paste(color, mask=_mask(selected))
    sprite.putalpha(_mask(roles != _ROLES["cut"]))
    if angle:
        # Nearest-neighbour at canvas resolution; the box average below smooths the edges.
        sprite = sprite.rotate(angle, resample=Image.Resampling.NEAREST, expand=True)
    # Average in premultiplied alpha so transparent pixels do not bleed black into the edges.
    small = np.array(sprite.convert("RGBa").reduce(scale).convert("RGBA"))
    return _finish(small)


def _mask(selected: np.ndarray) -> Image.Image:
    return Image.fromarray(selected.astype(np.uint8) * 255)


def _finish(rgba: np.ndarray) -> Image.Image:
    """Drop faint edge pixels, darken a one-pixel outline, crop to what is left."""
    keep = rgba[..., 3] >= ALPHA_MIN
    rgba[~keep] = 0
    rim = _rim(keep)
    rgba[rim, :3] = (rgba[rim, :3] * OUTLINE_DARKEN).astype(np.uint8)
    rows, cols = np.flatnonzero(keep.any(axis=1)), np.flatnonzero(keep.any(axis=0))
    return Image.fromarray(rgba[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], mode="RGBA")


def _rim(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it: a one-pixel outline."""
    padded = np.pad(mask, 1)
    inner = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~inner


def _paste(scene: Image.Image, sprite: Image.Image, x: int, y: int) -> Box:
    scene.paste(sprite, (x, y), sprite)
    return (float(x), float(y), float(x + sprite.width), float(y + sprite.height))


# --------------------------------------------------------------------------- scenes


def _catalog_photo(look: _Look, size: int, rng: np.random.Generator) -> tuple[Image.Image, Box]:
    """Studio shot: light sweep, soft shadow, product large and near the centre."""
    level = rng.uniform(*ITEM_BACKGROUND_LEVEL)
    tint = rng.uniform(-ITEM_BACKGROUND_TINT, ITEM_BACKGROUND_TINT, size=3)
    ramp = np.linspace(0, ITEM_SWEEP_DARKEN, size, dtype=np.float32)[:, None, None]
    background = np.clip(level + tint - ramp, 0, 255) * np.ones((1, size, 1))
    scene = Image.fromarray(background.astype(np.uint8))

    sprite = _render_sprite(look, size * rng.uniform(*ITEM_SCALE))
    jitter = ITEM_CENTER_JITTER * size
    x = round((size - sprite.width) / 2 + rng.uniform(-jitter, jitter))
    y = round((size - sprite.height) / 2 + rng.uniform(-jitter, jitter))
    x = int(np.clip(x, 0, size - sprite.width))
    y = int(np.clip(y, 0, size - sprite.height))

    shadow = Image.new("L", (size, size), 0)
    shadow_h = max(2.0, 0.06 * sprite.height)
    ImageDraw.Draw(shadow).ellipse(
        (x + 0.1 * sprite.width, y + sprite.height - shadow_h / 2,
         x + 0.9 * sprite.width, y + sprite.height + shadow_h / 2), fill=255,
    )
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(1.0, SHADOW_BLUR * size)))
    dark = Image.fromarray((np.asarray(scene) * SHADOW_DARKEN).astype(np.uint8))
    scene = Image.composite(dark, scene, shadow)
    return scene, _paste(scene, sprite, x, y)


def _random_color(rng: np.random.Generator) -> Rgb:
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


def _cluttered_background(size: int, rng: np.random.Generator) -> Image.Image:
    """Blotchy colour noise, then either shelves, tiles or stray shapes on top."""
    base = np.array([_random_color(rng), _random_color(rng)], dtype=np.float32)
    base += (BACKGROUND_GREY - base) * BACKGROUND_MUTE  # walls and floors are rarely neon
    mix = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    if rng.random() < 0.5:
        mix = mix.transpose(1, 0, 2)
    gradient = base[0] * (1 - mix) + base[1] * mix
    cells = int(rng.integers(BACKGROUND_NOISE_CELLS[0], BACKGROUND_NOISE_CELLS[1] + 1))
    blotches = Image.fromarray(rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8))
    blotches = blotches.resize((size, size), Image.Resampling.BICUBIC)
    noise = (np.asarray(blotches, dtype=np.float32) / 255 - 0.5) * BACKGROUND_NOISE_AMPLITUDE
    scene = Image.fromarray(np.clip(gradient + noise, 0, 255).astype(np.uint8))

    draw = ImageDraw.Draw(scene)
    style = rng.integers(3)
    if style == 0:  # shelves with price tags
        shelf_color = _random_color(rng)
        for _ in range(int(rng.integers(1, 4))):
            top = rng.uniform(0.1, 0.95) * size
            thickness = rng.uniform(0.03, 0.07) * size
            draw.rectangle((0, top, size, top + thickness), fill=shelf_color)
            for _ in range(int(rng.integers(0, 4))):
                left = rng.uniform(0, 0.9) * size
                draw.rectangle((left, top, left + 0.08 * size, top + thickness * 0.8),
                               fill=(245, 245, 235))
    elif style == 1:  # tiles or a packed shelf seen from afar
        step = int(rng.integers(size // 10, size // 4))
        for left in range(0, size, step):
            for top in range(0, size, step):
                if rng.random() < 0.5:
                    draw.rectangle((left + 1, top + 1, left + step - 2, top + step - 2),
                                   fill=_random_color(rng))
    else:  # stray blobs
        for _ in range(int(rng.integers(4, 10))):
            cx, cy = rng.uniform(0, size, size=2)
            rx, ry = rng.uniform(0.03, 0.15, size=2) * size
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=_random_color(rng))
    return scene


def _random_look(rng: np.random.Generator, avoid: str) -> _Look:
    """Some other kind of product in random colours, to stand next to the target."""
    others = [t for t in PRODUCT_TYPES if t.silhouette != avoid]
    ptype = others[int(rng.integers(len(others)))]
    return _Look(ptype, _random_color(rng), _random_color(rng),
                 PATTERNS[int(rng.integers(len(PATTERNS)))])


def _draw_distractor(scene: Image.Image, target: _Look, rng: np.random.Generator) -> None:
    size = scene.width
    extent = rng.uniform(*DISTRACTOR_SCALE) * size
    if rng.random() < DISTRACTOR_PRODUCT_PROBABILITY:
        sprite = _render_sprite(_random_look(rng, target.ptype.silhouette), extent,
                                rng.uniform(-QUERY_MAX_ROTATION, QUERY_MAX_ROTATION))
        x = int(rng.integers(-sprite.width // 3, size - sprite.width // 2))
        y = int(rng.integers(-sprite.height // 3, size - sprite.height // 2))
        _paste(scene, sprite, x, y)
        return
    draw = ImageDraw.Draw(scene)
    cx, cy = rng.uniform(0, size, size=2)
    half = extent / 2
    color = _random_color(rng)
    kind = rng.integers(3)
    if kind == 0:
        draw.ellipse((cx - half, cy - half * rng.uniform(0.4, 1), cx + half, cy + half), fill=color)
    elif kind == 1:
        draw.rectangle((cx - half, cy - half * rng.uniform(0.3, 1), cx + half, cy + half),
                       fill=color)
    else:
        corners = rng.uniform(-half, half, size=(int(rng.integers(3, 6)), 2)) + (cx, cy)
        draw.polygon([tuple(point) for point in corners], fill=color)


def _relight(scene: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Another camera and lamp: brightness, contrast, colour cast, light falloff, sensor noise."""
    pixels = np.asarray(scene, dtype=np.float32)
    size = scene.width
    mean = pixels.mean()
    pixels = (pixels - mean) * np.float32(rng.uniform(*CONTRAST)) + mean
    gain = rng.uniform(*BRIGHTNESS) * rng.uniform(1 - COLOR_CAST, 1 + COLOR_CAST, size=3)
    angle = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(-LIGHT_GRADIENT, LIGHT_GRADIENT)
    ramp = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    falloff = 1 + 2 * strength * (ramp[None, :] * np.cos(angle) + ramp[:, None] * np.sin(angle))
    pixels *= falloff[..., None] * gain.astype(np.float32)
    noise = rng.standard_normal(size=pixels.shape, dtype=np.float32)
    pixels += noise * np.float32(rng.uniform(*SENSOR_NOISE))
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


def _query_photo(look: _Look, size: int, rng: np.random.Generator) -> tuple[Image.Image, Box]:
    """The product small, maybe tilted, among distractors on clutter, under other light."""
    scene = _cluttered_background(size, rng)
    low, high = DISTRACTOR_COUNT
    for _ in range(int(rng.integers(low, high + 1))):
        _draw_distractor(scene, look, rng)
    angle = 0.0
    if rng.random() < QUERY_ROTATION_PROBABILITY:
        angle = float(rng.uniform(-QUERY_MAX_ROTATION, QUERY_MAX_ROTATION))
    sprite = _render_sprite(look, size * rng.uniform(*QUERY_SCALE), angle)
    x = int(rng.integers(0, size - sprite.width + 1))
    y = int(rng.integers(0, size - sprite.height + 1))
    box = _paste(scene, sprite, x, y)  # drawn last, so nothing covers it
    return _relight(scene, rng), box


# --------------------------------------------------------------------------- catalog plan


@dataclass(frozen=True)
class _Product:
    index: int
    ptype: ProductType
    primary: str
    secondary: str
    pattern: str
    split: str

    @property
    def item_id(self) -> str:
        return f"{ITEM_ID_PREFIX}-{self.index:05d}"

    @property
    def look(self) -> _Look:
        return _Look(self.ptype, COLORS[self.primary], COLORS[self.secondary], self.pattern)


def _assign_looks(count: int, rng: np.random.Generator) -> list[tuple[ProductType, str, str, str]]:
    """Spread products evenly over types; no two share type, colours and pattern.

    Within a type, (primary colour, pattern) pairs are used up before any repeats, so products
    of one type differ in what is most visible; repeats then differ in the secondary colour.
    """
    names = list(COLORS)
    pairs = [(color, pattern) for color in names for pattern in PATTERNS]
    capacity = len(PRODUCT_TYPES) * len(pairs) * (len(names) - 1)
    if count > capacity:
        raise ValueError(f"num_products={count}: the demo catalog can draw at most {capacity}")
    type_order = rng.permutation(len(PRODUCT_TYPES))
    pair_orders: dict[int, list[tuple[str, str]]] = {}
    secondary_orders: dict[tuple[int, str, str], list[str]] = {}
    looks = []
    for k in range(count):
        round_, type_slot = divmod(k, len(PRODUCT_TYPES))
        type_index = int(type_order[type_slot])
        if type_index not in pair_orders:
            pair_orders[type_index] = [pairs[i] for i in rng.permutation(len(pairs))]
        repeat, pair_slot = divmod(round_, len(pairs))
        primary, pattern = pair_orders[type_index][pair_slot]
        key = (type_index, primary, pattern)
        if key not in secondary_orders:
            others = [name for name in names if name != primary]
            secondary_orders[key] = [others[i] for i in rng.permutation(len(others))]
        secondary = secondary_orders[key][repeat]
        looks.append((PRODUCT_TYPES[type_index], primary, secondary, pattern))
    order = rng.permutation(count)
    return [looks[i] for i in order]


def _assign_splits(source: SyntheticSource, rng: np.random.Generator) -> list[str]:
    count = source.num_products
    num_test = round(source.test_fraction * count)
    num_val = round(source.val_fraction * count)
    if num_test + num_val >= count:
        raise ValueError(
            f"num_products={count} leaves no train products with test_fraction="
            f"{source.test_fraction} and val_fraction={source.val_fraction}"
        )
    splits = ["train"] * count
    order = rng.permutation(count)
    for position, index in enumerate(order[: num_test + num_val]):
        splits[int(index)] = "test" if position < num_test else "val"
    return splits


# --------------------------------------------------------------------------- shop jargon

# Every full word a title is built from; the generator shortens these by rule, never by table.
VOCABULARY: frozenset[str] = frozenset(
    word
    for phrase in (*(t.name for t in PRODUCT_TYPES), *COLORS, *PATTERNS, *MODIFIERS)
    for word in phrase.replace("-", " ").split()
)

# Canonical units (what attributes and descriptions use) and the ways feeds type them in titles.
_UNIT_SPELLINGS: dict[str, tuple[str, ...]] = {
    "ml": ("ml", "ml", "mL", "mls"),
    "l": ("l", "lt", "ltr", "ltrs"),
    "fl oz": ("fl oz", "floz", "fl. oz", "fz", "oz"),  # fluid ounces are often typed as "oz"
    "g": ("g", "gr", "gm", "grm"),
    "kg": ("kg", "kgs", "kilo"),
    "oz": ("oz", "oz.", "ozs"),
    "lb": ("lb", "lbs", "lb."),
    "ct": ("ct", "cnt", "pk", "pc", "count"),
}
UNITS: tuple[str, ...] = tuple(_UNIT_SPELLINGS)

_VOWELS = frozenset("aeiouy")
_NUMBER_WORDS = {"one": "1", "two": "2", "three": "3", "four": "4"}
_TRUNCATIONS = (3, 4)  # lengths a word is cut to ("bot", "bott")
_MIN_DROPPED = 2  # a truncation must drop at least this many letters to count as one
_MIN_FORM = 2  # shorter forms than this say nothing
_SHORT_SKELETON = 3  # vowel-dropped forms are sometimes cut to this length ("org" from "orgnc")
# How often each rule is used, relative to the others: dropping vowels is made the commonest
# habit, blind truncation (which reads worst) the rarest.
_SKELETON_WEIGHT = 3.0
_SHORT_SKELETON_WEIGHT = 2.0
_SYLLABLE_WEIGHT = 2.0
_TRUNCATION_WEIGHT = 0.5

# How one listing is typed. Each listing draws its own style, so the same word comes out
# differently across the catalog ("ORG", "Orgnc.", "organic").
_CASES = ("upper", "title", "lower", "mixed")  # "mixed": each token its own case
_CASE_WEIGHTS = (0.55, 0.2, 0.1, 0.15)
_TOKEN_CASES = ("upper", "title", "lower")
_SHORTEN = (0.4, 0.85)  # share of words a listing shortens, drawn per listing
_PERIOD_STYLE_PROBABILITY = 0.3  # listings that end some shortened words with "."
_PERIOD_PROBABILITY = 0.6  # ... and how many of their shortened words get one
_GROUP_SEPARATORS = (" ", " ", " ", " ", "  ", ", ", " - ")  # between name, size, colours
_COLOR_JOINERS = ("/", "/", "/", " ", "-", " & ", "")
_SECOND_COLOR_PROBABILITY = 0.6
_DROP_PLAIN_PROBABILITY = 0.5  # "plain" is often left out of a title
_INITIALISM_PROBABILITY = 0.4  # multi-word claims written by initials ("SF" for sugar free)
_HYPHEN_JOINERS = ("-", "", " ")  # how "two-tone" is typed
_UNIT_GAPS = ("", "", " ")  # "500ML" or "500 ML"
_DECIMAL_COMMA_PROBABILITY = 0.1  # "1,5L" from feeds written in continental Europe


@dataclass(frozen=True)
class _Style:
    """How one supplier listing is typed: case, how eagerly it shortens, punctuation, spacing."""

    case: str
    shorten: float
    period: float
    separator: str
    color_joiner: str
    unit_gap: str
    decimal_comma: bool


def _draw_style(rng: np.random.Generator) -> _Style:
    """A listing's typing habits, drawn once so that they hold across its whole title."""
    return _Style(
        case=_CASES[int(rng.choice(len(_CASES), p=_CASE_WEIGHTS))],
        shorten=float(rng.uniform(*_SHORTEN)),
        period=_PERIOD_PROBABILITY if rng.random() < _PERIOD_STYLE_PROBABILITY else 0.0,
        separator=_GROUP_SEPARATORS[int(rng.integers(len(_GROUP_SEPARATORS)))],
        color_joiner=_COLOR_JOINERS[int(rng.integers(len(_COLOR_JOINERS)))],
        unit_gap=_UNIT_GAPS[int(rng.integers(len(_UNIT_GAPS)))],
        decimal_comma=bool(rng.random() < _DECIMAL_COMMA_PROBABILITY),
    )


def _skeleton(word: str) -> str:
    """First letter, then the consonants, repeated letters once: "bottle" -> "btl"."""
    letters = word[0] + "".join(c for c in word[1:] if c not in _VOWELS)
    return "".join(c for i, c in enumerate(letters) if i == 0 or c != letters[i - 1])


def _first_syllable(word: str) -> str:
    """Up to the consonants after the first vowel: "organic" -> "org", "premium" -> "prem"."""
    i = 0
    while i < len(word) and word[i] not in _VOWELS:
        i += 1
    while i < len(word) and word[i] in _VOWELS:
        i += 1
    while i < len(word) and word[i] not in _VOWELS:
        i += 1
    return word[:i]


@functools.cache
def _short_forms(word: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """The shortened forms the rules give a word (lower case, no punctuation) and how likely
    each is; a form that several rules give is that much likelier."""
    if word in _NUMBER_WORDS:
        return (_NUMBER_WORDS[word],), (1.0,)
    skeleton = _skeleton(word)
    candidates = [(word[:n], _TRUNCATION_WEIGHT) for n in _TRUNCATIONS
                  if len(word) - n >= _MIN_DROPPED]
    candidates += [(skeleton, _SKELETON_WEIGHT),
                   (skeleton[:_SHORT_SKELETON], _SHORT_SKELETON_WEIGHT),
                   (_first_syllable(word), _SYLLABLE_WEIGHT)]
    weights: dict[str, float] = {}
    for form, weight in candidates:
        if _MIN_FORM <= len(form) < len(word):
            weights[form] = weights.get(form, 0.0) + weight
    total = sum(weights.values())
    return tuple(weights), tuple(weight / total for weight in weights.values())


def spellings(word: str) -> frozenset[str]:
    """Every form the generator may write a word in (lower case, no punctuation).

    For tests and audits that compare titles with a glossary; nothing else should need it.
    """
    return frozenset({word, *_short_forms(word)[0]})


def _case(token: str, case: str, rng: np.random.Generator) -> str:
    if case == "mixed":
        case = _TOKEN_CASES[int(rng.integers(len(_TOKEN_CASES)))]
    if case == "upper":
        return token.upper()
    if case == "title":
        return token[:1].upper() + token[1:]
    return token


def _write_word(word: str, style: _Style, rng: np.random.Generator) -> str:
    """One word as this listing types it: maybe shortened, cased, maybe with a period."""
    forms, weights = _short_forms(word)
    form = word
    if forms and rng.random() < style.shorten:
        form = forms[int(rng.choice(len(forms), p=weights))]
    if form != word and form.isalpha() and rng.random() < style.period:
        form += "."
    return _case(form, style.case, rng)


def _write_phrase(phrase: str, style: _Style, rng: np.random.Generator,
                  initials: bool = False) -> str:
    """A name of one or more words; hyphenated words keep a joiner of the listing's choosing."""
    words = phrase.split()
    if initials and len(words) > 1 and rng.random() < _INITIALISM_PROBABILITY:
        return _case("".join(word[0] for word in words), style.case, rng)
    written = []
    for word in words:
        parts = [_write_word(part, style, rng) for part in word.split("-")]
        joiner = _HYPHEN_JOINERS[int(rng.integers(len(_HYPHEN_JOINERS)))] if len(parts) > 1 else ""
        written.append(joiner.join(parts))
    return " ".join(written)


def _attribute_value(phrase: str, rng: np.random.Generator) -> str:
    """An attribute value as feeds send it: a lower-case code or the word itself."""
    words = []
    for word in phrase.replace("-", " ").split():
        forms = (word, *_short_forms(word)[0])
        words.append(forms[int(rng.integers(len(forms)))])
    return " ".join(words)


def _format_amount(value: float) -> str:
    text = f"{value:.0f}" if value >= 100 else f"{value:.1f}"
    return text.removesuffix(".0")


def _size(ptype: ProductType, rng: np.random.Generator) -> tuple[str, str]:
    """(amount, unit) in one of the units a supplier might have used for this product."""
    amount = ptype.base_amount * float(rng.choice(_SIZE_MULTIPLIERS))
    if ptype.measure == "count":
        return str(max(1, round(amount))), "ct"
    if ptype.measure == "volume":
        options = [("ml", amount), ("fl oz", amount / _ML_PER_FL_OZ)]
        if amount >= _LARGE_UNIT_FROM:
            options.append(("l", amount / 1000))
    else:
        options = [("g", amount), ("oz", amount / _G_PER_OZ)]
        if amount >= _LARGE_UNIT_FROM:
            options.append(("kg", amount / 1000))
        if amount >= _POUNDS_FROM:
            options.append(("lb", amount / _G_PER_LB))
    unit, value = options[int(rng.integers(len(options)))]
    return _format_amount(value), unit


def _write_size(size: tuple[str, str], style: _Style, rng: np.random.Generator) -> str:
    """The amount with one of the unit's typed spellings: 500ML, 16.9 fl. oz, 1,5Ltr."""
    amount, unit = size
    if style.decimal_comma:
        amount = amount.replace(".", ",")
    options = _UNIT_SPELLINGS[unit]
    spelled = options[int(rng.integers(len(options)))]
    if spelled == spelled.lower():  # a spelling with its own capitals ("mL") stays as it is
        spelled = _case(spelled, style.case, rng)
    return amount + style.unit_gap + spelled


def _title(product: _Product, size: tuple[str, str], modifier: str | None,
           rng: np.random.Generator) -> str:
    """A point-of-sale title in this listing's own style; its words keep no fixed spelling."""
    style = _draw_style(rng)
    name = _write_phrase(product.ptype.name, style, rng)
    colors = _write_word(product.primary, style, rng)
    if rng.random() < _SECOND_COLOR_PROBABILITY:
        colors += style.color_joiner + _write_word(product.secondary, style, rng)
    pattern = ""
    if product.pattern != "plain" or rng.random() >= _DROP_PLAIN_PROBABILITY:
        pattern = _write_phrase(product.pattern, style, rng)
    claim = _write_phrase(modifier, style, rng, initials=True) if modifier else ""
    size_token = _write_size(size, style, rng)
    templates = (
        [claim, name, size_token, colors, pattern],
        [claim, name, colors, pattern, size_token],
        [name, size_token, pattern, colors, claim],
    )
    groups = templates[int(rng.integers(len(templates)))]
    return style.separator.join(group for group in groups if group)


_DESCRIPTIONS = (
    "Item no {item_no}. Case pack {pack}. See spec sheet.",
    "Supplier ref {ref}. Ships in {pack}-unit case.",
    "{pack} per case. Reorder code {ref}.",
    "Imported. Net {size}.",
    "Store in a cool dry place.",
    "Best seller in {category}.",
    "New pkg design, same great product.",
    "Min order qty {pack}. Lead time {lead} days.",
    "Pallet ti-hi {ti}x{hi}.",
    "Promo eligible. Item no {item_no}.",
)
_COUNTRIES = ("USA", "MEX", "CAN", "DEU", "CHN", "ITA", "VNM")


def _description(product: _Product, size: tuple[str, str], rng: np.random.Generator) -> str:
    picks = rng.choice(len(_DESCRIPTIONS), size=int(rng.integers(1, 3)), replace=False)
    fields = {
        "item_no": int(rng.integers(10000, 99999)),
        "pack": int(rng.choice([6, 8, 12, 24, 36])),
        "ref": f"{chr(65 + int(rng.integers(26)))}{int(rng.integers(100, 999))}-"
               f"{int(rng.integers(10, 99))}",
        "size": " ".join(size),
        "category": product.ptype.category,
        "lead": int(rng.integers(3, 30)),
        "ti": int(rng.integers(4, 12)),
        "hi": int(rng.integers(3, 8)),
    }
    return " ".join(_DESCRIPTIONS[int(i)].format(**fields) for i in sorted(picks))


def _attributes(product: _Product, size: tuple[str, str], modifier: str | None,
                rng: np.random.Generator) -> str:
    """Supplier attributes: keys differ between feeds, values are codes or plain words."""
    def key(*options: str) -> str:
        return options[int(rng.integers(len(options)))]

    size_keys = {"volume": ("sz", "size", "vol"), "weight": ("sz", "size", "net_wt"),
                 "count": ("sz", "qty", "count")}
    attributes: dict[str, object] = {
        key("clr", "color", "colour"): _attribute_value(product.primary, rng),
        key(*size_keys[product.ptype.measure]): " ".join(size),
    }
    if rng.random() < 0.7:
        attributes[key("sec_clr", "clr2", "accent_clr")] = _attribute_value(
            product.secondary, rng)
    if rng.random() < 0.8:
        attributes[key("pattern", "ptrn", "design")] = _attribute_value(product.pattern, rng)
    if modifier:
        attributes["claim"] = _attribute_value(modifier, rng)
    if rng.random() < 0.5:
        attributes["case_pack"] = int(rng.choice([6, 12, 24]))
    if rng.random() < 0.5:
        attributes["upc"] = "".join(str(d) for d in rng.integers(0, 10, size=12))
    if rng.random() < 0.4:
        attributes["coo"] = _COUNTRIES[int(rng.integers(len(_COUNTRIES)))]
    return json.dumps(attributes, sort_keys=True)


def _modifier(ptype: ProductType, rng: np.random.Generator) -> str | None:
    if rng.random() >= MODIFIER_PROBABILITY:
        return None
    options = _GENERIC_MODIFIERS
    if ptype.category in _FOOD_CATEGORIES:
        options = options + _FOOD_MODIFIERS
    return options[int(rng.integers(len(options)))]


def _listing_text(product: _Product, rng: np.random.Generator) -> tuple[str, str, str]:
    """(title, description, attributes) of one listing, as a supplier feed would send them."""
    size = _size(product.ptype, rng)
    modifier = _modifier(product.ptype, rng)
    return (
        _title(product, size, modifier, rng),
        _description(product, size, rng),
        _attributes(product, size, modifier, rng),
    )


# --------------------------------------------------------------------------- rendering


def _entropy(seed: int) -> int:
    """numpy seeds must be non-negative; fold any int into range."""
    return seed % (1 << 64)


@dataclass(frozen=True)
class _RenderJob:
    """All one product's images: what a worker process needs, and nothing shared."""

    product: _Product
    entropy: int
    image_size: int
    num_queries: int
    image_dir: Path

    def item_path(self) -> str:
        return f"{ITEM_IMAGE_DIR}/{self.product.item_id}.png"

    def query_id(self, number: int) -> str:
        return f"{self.product.item_id}-q{number}"

    def query_path(self, number: int) -> str:
        return f"{QUERY_IMAGE_DIR}/{self.query_id(number)}.png"


def _save(image: Image.Image, path: Path) -> None:
    # Noisy photos barely compress: the fastest zlib level is ~3x faster and ~15% larger.
    image.save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def _render_product(job: _RenderJob) -> tuple[Box, list[Box]]:
    """Write a product's catalog photo and query photos; return their boxes.

    The random stream depends only on the seed and the product index, so the images are the
    same whichever process renders them, in whatever order.
    """
    rng = np.random.default_rng([job.entropy, _RENDER_STREAM, job.product.index])
    look = job.product.look
    image, item_box = _catalog_photo(look, job.image_size, rng)
    _save(image, job.image_dir / job.item_path())
    query_boxes = []
    for number in range(1, job.num_queries + 1):
        image, box = _query_photo(look, job.image_size, rng)
        _save(image, job.image_dir / job.query_path(number))
        query_boxes.append(box)
    return item_box, query_boxes


def _default_workers(num_products: int) -> int:
    """One process per core, but none extra for small catalogs: starting one costs ~1 s."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, MAX_WORKERS, num_products // PRODUCTS_PER_WORKER))


def _render_all(jobs: list[_RenderJob], workers: int) -> list[tuple[Box, list[Box]]]:
    progress = {"desc": "rendering demo catalog", "unit": "product", "total": len(jobs),
                "disable": None}
    if workers <= 1:
        return [_render_product(job) for job in tqdm(jobs, **progress)]
    # "spawn" starts clean interpreters: safe even when the caller holds threads or a GPU.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        chunk = max(1, min(RENDER_CHUNK, len(jobs) // (4 * workers)))
        return list(tqdm(pool.map(_render_product, jobs, chunksize=chunk), **progress))


# --------------------------------------------------------------------------- entry point


def _plan(source: SyntheticSource) -> tuple[list[_Product], list[tuple[str, str, str]]]:
    """Products and their listing text, without rendering: cheap, so tests can audit the text.

    Looks and splits are drawn before any text, so the way text is written never moves a
    product's look, split or images.
    """
    plan_rng = np.random.default_rng(_entropy(source.seed))
    looks = _assign_looks(source.num_products, plan_rng)
    splits = _assign_splits(source, plan_rng)
    products = [
        _Product(index, ptype, primary, secondary, pattern, split)
        for index, ((ptype, primary, secondary, pattern), split) in enumerate(
            zip(looks, splits, strict=True))
    ]
    return products, [_listing_text(product, plan_rng) for product in products]


def generate_synthetic(
    source: SyntheticSource, catalog_dir: Path, workers: int | None = None
) -> SourceTables:
    """Render the demo catalog into ``catalog_dir / "images"`` and return its raw tables.

    Same ``source`` → same tables and byte-identical PNG files, whatever ``workers`` is
    (default: one process per core for large catalogs, in-process for small ones). Boxes are
    tight pixel-edge coordinates of the product in its image (``x1``, ``y1`` exclusive).
    """
    entropy = _entropy(source.seed)
    products, texts = _plan(source)

    image_dir = Path(catalog_dir) / IMAGE_ROOT
    for folder in (ITEM_IMAGE_DIR, QUERY_IMAGE_DIR):
        (image_dir / folder).mkdir(parents=True, exist_ok=True)
    jobs = [
        _RenderJob(product, entropy, source.image_size, source.queries_per_product, image_dir)
        for product in products
    ]
    if workers is None:
        workers = _default_workers(len(jobs))
    boxes = _render_all(jobs, workers)

    item_rows, query_rows = [], []
    for job, text, (item_box, query_boxes) in zip(jobs, texts, boxes, strict=True):
        product = job.product
        item_rows.append((product.item_id, *text, product.ptype.name, product.ptype.category,
                          job.item_path(), product.split, *item_box))
        for number, box in enumerate(query_boxes, start=1):
            query_rows.append((job.query_id(number), product.item_id, job.query_path(number),
                               product.split, *box))
    return SourceTables(
        items=pd.DataFrame(item_rows, columns=[*ITEM_SOURCE_COLUMNS, *BOX_COLUMNS]),
        queries=pd.DataFrame(query_rows, columns=[*QUERY_SOURCE_COLUMNS, *BOX_COLUMNS]),
        image_root=IMAGE_ROOT,
        product_types=sorted({product.ptype.name for product in products}),
    )
