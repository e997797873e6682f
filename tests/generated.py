"""Generated snapshots: features and embeddings of a catalog population, without photos or a
model. The drift statistics are tested on them (fixed seeds) and the monitor benchmark scales
them to 50k items."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vlclip.monitor.snapshot import Snapshot, top1_similarity

TYPES = np.array(["can", "box", "jar", "tube", "bottle"])


def population(
    seed: int, size: int, shift: float = 0.0, vector_shift: float = 0.0, dim: int = 32
) -> Snapshot:
    """``size`` items of one catalog population; ``shift`` moves the listings and photos,
    ``vector_shift`` only the image embeddings."""
    rng = np.random.default_rng(seed)
    mix = [0.3, 0.25, 0.2, 0.15, 0.1] if not shift else [0.05, 0.05, 0.1, 0.2, 0.6]
    types = rng.choice(TYPES, size, p=mix)
    words = rng.integers(3, 7 + int(6 * shift), size)
    titles = [" ".join(["WORD"] * int(n)) + " 12OZ" for n in words]
    items = pd.DataFrame({
        "item_id": [f"{seed}-{k}" for k in range(size)],
        "product_type": types,
        "category": np.where(np.isin(types, ["can", "bottle"]), "drinks", "pantry"),
        "title": titles,
        "description": ["plain supplier text about the product"] * size,
        "title_length": [len(t) for t in titles],
        "description_length": 37,
        "attribute_fill_rate": rng.uniform(0.5, 1.0, size),
        "image_width": 128,
        "image_height": 128,
        "brightness": rng.normal(0.5 - 0.2 * shift, 0.05, size),
        "contrast": rng.normal(0.2 - 0.05 * shift, 0.03, size),
        "sharpness": rng.normal(0.1 - 0.05 * shift, 0.01, size),
        "grounding_score": rng.beta(5, 2, size),
        "grounding_fallback": rng.choice(["crop", "full image"], size, p=[0.9, 0.1]),
    })
    centres = np.random.default_rng(0).normal(size=(len(TYPES), dim))
    index = np.searchsorted(TYPES, types, sorter=np.argsort(TYPES))
    index = np.argsort(TYPES)[index]

    def vectors(offset: float) -> np.ndarray:
        raw = centres[index] + rng.normal(size=(size, dim)) + offset
        return (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)

    image, text = vectors(vector_shift + 0.3 * shift), vectors(0.3 * shift)
    photos = items[["image_width", "image_height", "brightness", "contrast", "sharpness",
                    "grounding_score", "grounding_fallback"]].copy()
    photos.insert(0, "query_id", [f"q{seed}-{k}" for k in range(size)])
    snapshot = Snapshot(items, photos, image, text, {"model_version": "m1"})
    return snapshot


def with_top1(current: Snapshot, reference: Snapshot | None = None) -> Snapshot:
    against = reference or current
    current.items["top1_similarity"] = top1_similarity(
        current.image, current.items["item_id"].tolist(),
        against.image, against.items["item_id"].tolist(),
    )
    return current


