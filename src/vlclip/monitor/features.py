"""Per-item and per-photo features the drift monitor compares: one function for the reference
snapshot and for every new catalog drop, so both sides are measured the same way.

Image statistics are computed on a thumbnail (``STATS_SIDE`` pixels on the long side): drift in
brightness, contrast or sharpness shows at that size, and a 50k-item drop stays affordable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from vlclip.catalog.schema import Catalog
from vlclip.images import load_rgb

STATS_SIDE = 128
"""Long side of the thumbnail image statistics are computed on."""

IMAGE_FEATURES = ("image_width", "image_height", "brightness", "contrast", "sharpness")
GROUNDING_FEATURES = ("grounding_score", "grounding_fallback")
ITEM_NUMERIC = (
    "title_length",
    "description_length",
    "attribute_fill_rate",
    *IMAGE_FEATURES,
    "grounding_score",
)
ITEM_CATEGORICAL = ("product_type", "category", "grounding_fallback")
ITEM_TEXT = ("title", "description")
PHOTO_NUMERIC = (*IMAGE_FEATURES, "grounding_score")
PHOTO_CATEGORICAL = ("grounding_fallback",)


@dataclass(frozen=True)
class ImageStats:
    width: int
    height: int
    brightness: float
    """Mean luminance in [0, 1]."""
    contrast: float
    """Standard deviation of luminance."""
    sharpness: float
    """Mean absolute Laplacian of luminance: falls when a photo is blurred."""


def image_stats(image: Image.Image) -> ImageStats:
    width, height = image.size
    thumbnail = image.convert("L")
    thumbnail.thumbnail((STATS_SIDE, STATS_SIDE))
    lum = np.asarray(thumbnail, dtype=np.float32) / 255.0
    laplacian = (
        -4 * lum[1:-1, 1:-1] + lum[:-2, 1:-1] + lum[2:, 1:-1] + lum[1:-1, :-2] + lum[1:-1, 2:]
    )
    return ImageStats(
        width=width,
        height=height,
        brightness=float(lum.mean()),
        contrast=float(lum.std()),
        sharpness=float(np.abs(laplacian).mean()) if laplacian.size else 0.0,
    )


def _stats_frame(paths: list[Path]) -> pd.DataFrame:
    rows = []
    for path in paths:
        try:
            stats = image_stats(load_rgb(path))
            rows.append(
                {
                    "image_width": stats.width,
                    "image_height": stats.height,
                    "brightness": stats.brightness,
                    "contrast": stats.contrast,
                    "sharpness": stats.sharpness,
                }
            )
        except (OSError, ValueError):  # an unreadable photo is a missing value, not a crash
            rows.append(dict.fromkeys(IMAGE_FEATURES, np.nan))
    return pd.DataFrame(rows, columns=list(IMAGE_FEATURES))


def attribute_fill_rate(attributes: str | None) -> float:
    """Share of attribute values that are not blank (0 for no attributes)."""
    try:
        parsed = json.loads(attributes) if attributes else {}
    except json.JSONDecodeError:
        return 0.0
    if not isinstance(parsed, dict) or not parsed:
        return 0.0
    filled = sum(1 for value in parsed.values() if str(value).strip() not in ("", "None", "null"))
    return filled / len(parsed)


def _grounding(boxes: pd.DataFrame | None, table: str, ids: pd.Series) -> pd.DataFrame:
    """Detector score and fallback flag per record (NaN/unknown when not grounded)."""
    if boxes is None or boxes.empty:
        return pd.DataFrame(
            {"grounding_score": np.nan, "grounding_fallback": "unknown"}, index=range(len(ids))
        )
    rows = boxes[boxes["table"] == table].drop_duplicates("record_id").set_index("record_id")
    score = ids.map(rows["score"]).astype(float).to_numpy()
    fallback = ids.map(rows["fallback"]).map({True: "full image", False: "crop"})
    return pd.DataFrame(
        {"grounding_score": score, "grounding_fallback": fallback.fillna("unknown").to_numpy()}
    )


def item_features(
    catalog: Catalog, items: pd.DataFrame, boxes: pd.DataFrame | None
) -> pd.DataFrame:
    """One row per item: ``item_id``, text, categorical and numeric features."""
    items = items.reset_index(drop=True)
    titles = items["title"].fillna("").astype(str)
    descriptions = items["description"].fillna("").astype(str)
    frame = pd.DataFrame(
        {
            "item_id": items["item_id"].astype(str),
            "product_type": items["product_type"].astype(str),
            "category": items["category"].fillna("").astype(str),
            "title": titles,
            "description": descriptions,
            "title_length": titles.str.len(),
            "description_length": descriptions.str.len(),
            "attribute_fill_rate": items["attributes"].map(attribute_fill_rate),
        }
    )
    stats = _stats_frame([catalog.image_file(path) for path in items["image_path"]])
    grounding = _grounding(boxes, "items", items["item_id"].astype(str))
    return pd.concat([frame, stats, grounding], axis=1)


def photo_features(
    catalog: Catalog, queries: pd.DataFrame, boxes: pd.DataFrame | None
) -> pd.DataFrame:
    """One row per query photo: image statistics and the label-free grounding outcome."""
    queries = queries.reset_index(drop=True)
    frame = pd.DataFrame({"query_id": queries["query_id"].astype(str)})
    stats = _stats_frame([catalog.image_file(path) for path in queries["image_path"]])
    grounding = _grounding(boxes, "queries", queries["query_id"].astype(str))
    return pd.concat([frame, stats, grounding], axis=1)
