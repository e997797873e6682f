"""What a product photo shows, measured without model weights: dominant colours named from a
table in CIELAB (a perceptual colour space: equal distances look about equally different),
the outline (round or boxy) and the aspect. The offline backend puts these words beside the
product type and name, so its text describes the photo as VL-CLIP's LLM step does.

Measured on the listing's grounded crop: the product, not the shelf around it.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.cluster.vq import kmeans2

COLOUR_TABLE = Path(__file__).with_name("colour_names.json")
WORK_SIDE = 64  # pixels on the long side: colours and outline do not need more
CLUSTERS = 4
MIN_COLOUR_SHARE = 0.18  # a colour is named when this share of the product shows it
MAX_COLOURS = 2
BACKGROUND_DISTANCE = 14.0  # Lab units from the border's colour: farther is the product
MIN_PRODUCT_SHARE = 0.1  # below this the mask failed: measure the whole crop
ROUND_FILL = (0.62, 0.88)  # product area / box area: an ellipse fills about 0.785 of its box
BOXY_FILL = 0.9
TALL, WIDE = 1.35, 1 / 1.35  # height / width


@dataclass(frozen=True)
class VisualFacts:
    colours: tuple[str, ...]
    outline: str | None  # "round", "boxy" or None (neither clearly)
    aspect: str  # "tall", "wide" or "about as wide as tall"

    def sentence(self) -> str:
        parts = []
        if self.colours:
            parts.append(" and ".join(self.colours))
        if self.outline:
            parts.append(self.outline)
        parts.append(self.aspect)
        return "looks " + ", ".join(parts)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in 0..255 (..., 3) to CIELAB (D65)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.2126, 0.0193],
                             [0.3576, 0.7152, 0.1192],
                             [0.1805, 0.0722, 0.9505]])
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


@cache
def colour_table(path: str = str(COLOUR_TABLE)) -> tuple[tuple[str, ...], np.ndarray]:
    """Colour names and their Lab coordinates."""
    table = json.loads(Path(path).read_text())
    names = tuple(table)
    rgb = np.array([[int(table[n][i : i + 2], 16) for i in (1, 3, 5)] for n in names])
    return names, srgb_to_lab(rgb)


def name_colour(lab: np.ndarray) -> str:
    names, coordinates = colour_table()
    return names[int(np.argmin(np.linalg.norm(coordinates - lab, axis=1)))]


def _small(image: Image.Image) -> np.ndarray:
    scale = WORK_SIDE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return np.asarray(image.convert("RGB").resize(size, Image.Resampling.BOX))


def product_mask(lab: np.ndarray) -> np.ndarray:
    """Pixels that differ from the crop's border colour: the product inside its margin."""
    border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    background = np.median(border, axis=0)
    mask = np.linalg.norm(lab - background, axis=-1) > BACKGROUND_DISTANCE
    return mask if mask.mean() >= MIN_PRODUCT_SHARE else np.ones(mask.shape, dtype=bool)


def dominant_colours(lab: np.ndarray, mask: np.ndarray) -> tuple[str, ...]:
    pixels = lab[mask].reshape(-1, 3)
    count = min(CLUSTERS, len(np.unique(pixels.round(1), axis=0)))
    with warnings.catch_warnings():  # a cluster left empty is simply not named
        warnings.simplefilter("ignore")
        centres, labels = kmeans2(pixels, count, minit="++", seed=0)
    shares: dict[str, float] = {}
    for cluster in range(count):
        share = float(np.mean(labels == cluster))
        if share:
            name = name_colour(centres[cluster])
            shares[name] = shares.get(name, 0.0) + share
    ranked = sorted(shares.items(), key=lambda item: -item[1])
    return tuple(name for name, share in ranked if share >= MIN_COLOUR_SHARE)[:MAX_COLOURS]


def outline_of(mask: np.ndarray) -> str | None:
    rows, cols = np.nonzero(mask)
    if mask.all() or not len(rows):
        return None
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    fill = mask.sum() / box
    if fill >= BOXY_FILL:
        return "boxy"
    if ROUND_FILL[0] <= fill <= ROUND_FILL[1]:
        return "round"
    return None


def aspect_of(width: int, height: int) -> str:
    ratio = height / width
    if ratio >= TALL:
        return "tall"
    if ratio <= WIDE:
        return "wide"
    return "about as wide as tall"


def describe_photo(image: Image.Image) -> VisualFacts:
    pixels = _small(image)
    lab = srgb_to_lab(pixels)
    mask = product_mask(lab)
    rows, cols = np.nonzero(mask)
    width, height = cols.max() - cols.min() + 1, rows.max() - rows.min() + 1
    return VisualFacts(dominant_colours(lab, mask), outline_of(mask), aspect_of(width, height))
