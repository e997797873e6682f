"""A drifted copy of a catalog, for the on-call demo (``vlclip monitor --simulate-drift``) and
the tests: the shifts a real catalog drop shows when a supplier or a photo studio changes.

- product-type mix: most items come from a few types;
- photos: darker, lower contrast and blurred (a new studio, a phone camera);
- titles: longer, with marketing filler.

Deterministic from ``seed``. Each shift can be switched off, so a test can move only the
images and check that embedding drift is seen while the tabular features barely move.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance, ImageFilter

from vlclip.catalog.schema import (
    ITEMS_FILE,
    MANIFEST_FILE,
    QUARANTINE_COLUMNS,
    QUARANTINE_FILE,
    QUERIES_FILE,
    Catalog,
    Manifest,
)
from vlclip.images import load_rgb
from vlclip.io import atomic_dir, sha256_bytes

FILLER = ("NEW", "VALUE PACK", "LIMITED EDITION", "FAMILY SIZE", "BEST SELLER", "SALE")


@dataclass(frozen=True)
class Shift:
    """How far the simulated drop moves from the catalog it is made from."""

    type_mix: bool = True
    """Draw 80% of items from a fifth of the product types."""
    darken: float = 0.55
    """Brightness factor (1 = unchanged)."""
    contrast: float = 0.7
    blur_radius: float = 2.0
    """Gaussian blur, in pixels of the original photo (0 = none)."""
    longer_titles: bool = True
    crop: float = 1.0
    """Keep this central share of each side, resized back (1 = no crop)."""
    swap_channels: bool = False
    """Red and blue swapped: a colour shift that keeps brightness and sharpness close."""


ONLY_IMAGES = Shift(
    type_mix=False, longer_titles=False, darken=1.0, contrast=1.0, blur_radius=0.0,
    crop=0.8, swap_channels=True,
)
"""Photos re-shot (tighter framing, other colour balance), listings and photo statistics
nearly unchanged: the case only embedding drift can see."""


def _weights(items: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    types = sorted(items["product_type"].astype(str).unique())
    favoured = set(rng.choice(types, size=max(1, len(types) // 5), replace=False))
    is_favoured = items["product_type"].isin(favoured).to_numpy()
    weights = np.where(is_favoured, 0.8 / max(1, is_favoured.sum()), 0.0)
    others = ~is_favoured
    if others.any():
        weights[others] = 0.2 / others.sum()
    return weights / weights.sum()


def _alter(image: Image.Image, shift: Shift) -> Image.Image:
    if shift.crop < 1.0:
        width, height = image.size
        dx, dy = width * (1 - shift.crop) / 2, height * (1 - shift.crop) / 2
        image = image.crop((dx, dy, width - dx, height - dy)).resize((width, height))
    if shift.swap_channels:
        red, green, blue = image.split()
        image = Image.merge("RGB", (blue, green, red))
    if shift.blur_radius:
        image = image.filter(ImageFilter.GaussianBlur(shift.blur_radius))
    image = ImageEnhance.Brightness(image).enhance(shift.darken)
    return ImageEnhance.Contrast(image).enhance(shift.contrast)


def _lengthen(title: str, rng: np.random.Generator) -> str:
    words = rng.choice(FILLER, size=int(rng.integers(2, 5)), replace=False)
    return f"{title} {' '.join(words)} - {' '.join(reversed(words)).lower()}"


def simulate_drift(catalog: Catalog, out_dir: Path, seed: int = 0, shift: Shift = Shift()) -> Path:
    """Write a drifted catalog folder of as many items as ``catalog`` at ``out_dir``."""
    rng = np.random.default_rng(seed)
    items = catalog.items.reset_index(drop=True)
    if shift.type_mix:
        chosen = rng.choice(len(items), size=len(items), replace=True, p=_weights(items, rng))
    else:
        chosen = np.arange(len(items))
    drifted = items.iloc[chosen].reset_index(drop=True).copy()
    drifted["source_item_id"] = drifted["item_id"]
    drifted["item_id"] = [f"{item}~drift{n}" for n, item in enumerate(drifted["item_id"])]
    if shift.longer_titles:
        drifted["title"] = [_lengthen(str(title), rng) for title in drifted["title"]]
    queries = catalog.queries.merge(
        drifted[["item_id", "source_item_id"]].rename(columns={"item_id": "new_item_id"}),
        left_on="item_id",
        right_on="source_item_id",
    )
    queries = queries.drop(columns=["item_id", "source_item_id"]).rename(
        columns={"new_item_id": "item_id"}
    )
    queries["query_id"] = [f"{q}~drift{n}" for n, q in enumerate(queries["query_id"])]
    with atomic_dir(out_dir) as staging:
        for table, frame in (("items", drifted), ("queries", queries)):
            paths, hashes = [], []
            for row in frame.itertuples():
                name = Path(table) / f"{len(paths):06d}.png"
                image = _alter(load_rgb(catalog.image_file(row.image_path)), shift)
                (staging / "images" / name).parent.mkdir(parents=True, exist_ok=True)
                image.save(staging / "images" / name)
                paths.append(str(name))
                hashes.append(sha256_bytes((staging / "images" / name).read_bytes()))
            frame["image_path"] = paths
            frame["image_sha256"] = hashes
        drifted.drop(columns=["source_item_id"]).to_parquet(staging / ITEMS_FILE, index=False)
        queries.to_parquet(staging / QUERIES_FILE, index=False)
        pd.DataFrame(columns=list(QUARANTINE_COLUMNS)).to_parquet(
            staging / QUARANTINE_FILE, index=False
        )
        manifest = Manifest(
            source=f"simulated drift of {catalog.manifest.source}",
            image_root="images",
            product_types=sorted(drifted["product_type"].astype(str).unique()),
            has_boxes=False,
            num_items=len(drifted),
            num_queries=len(queries),
            num_rows_seen=len(drifted) + len(queries),
        )
        (staging / MANIFEST_FILE).write_text(manifest.to_json() + "\n")
    return out_dir
