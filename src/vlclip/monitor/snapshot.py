"""Snapshots: what a catalog looked like to a model, as data the drift monitor compares.

The reference snapshot (``vlclip snapshot``, saved with each promoted model under
``champion/reference``) and the snapshot of every new catalog drop are built by the same
function: features of a sample of items and query photos, the model's image and text
embeddings of those items (their own photos and titles: a new drop has not been grounded or
enriched yet, so neither side is), and each item's top-1 similarity to the reference catalog.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vlclip.catalog.schema import Catalog
from vlclip.config import MonitorParams
from vlclip.io import atomic_dir, write_json
from vlclip.monitor.features import item_features, photo_features

ITEMS = "items.parquet"
PHOTOS = "photos.parquet"
VECTORS = "embeddings.npz"
META = "snapshot.json"
SIMILARITY_BLOCK = 1024
"""Rows of similarities computed at once (1024 x 50k floats: 200 MB)."""


@dataclass
class Snapshot:
    items: pd.DataFrame
    """Item features plus ``top1_similarity``."""
    photos: pd.DataFrame
    image: np.ndarray
    """L2-normalised image embeddings, one row per item in ``items``."""
    text: np.ndarray
    meta: dict


def sample_rows(frame: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    """At most ``limit`` rows, a seeded random sample when there are more."""
    if len(frame) <= limit:
        return frame.reset_index(drop=True)
    return frame.sample(n=limit, random_state=seed).reset_index(drop=True)


def model_version(models_dir: Path) -> str:
    """A short content hash of the model's weights: what an alert names."""
    digest = hashlib.sha256()
    with (Path(models_dir) / "model.pt").open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def top1_similarity(
    vectors: np.ndarray, ids: list[str], reference: np.ndarray, reference_ids: list[str]
) -> np.ndarray:
    """Cosine similarity of each vector to its nearest reference vector of another item.

    Excluding the same ``item_id`` makes an unchanged catalog look like its reference (each
    item's nearest *other* item), not like a set of perfect self-matches.
    """
    if len(reference) == 0 or len(vectors) == 0:
        return np.full(len(vectors), np.nan)
    reference_ids = np.asarray(reference_ids)
    best = np.empty(len(vectors), dtype=np.float32)
    for start in range(0, len(vectors), SIMILARITY_BLOCK):  # bounded memory at any size
        block = slice(start, start + SIMILARITY_BLOCK)
        scores = vectors[block] @ reference.T
        scores[np.asarray(ids[block])[:, None] == reference_ids[None, :]] = -np.inf
        best[block] = scores.max(axis=1)
    return np.where(np.isfinite(best), best, np.nan)


def build_snapshot(
    catalog: Catalog,
    boxes: pd.DataFrame | None,
    embed,
    sample: int,
    seed: int,
    reference: Snapshot | None = None,
    meta: dict | None = None,
) -> Snapshot:
    """Features and embeddings of a sample of ``catalog``.

    ``embed(items)`` returns ``(image, text)`` vectors for the sampled items (the
    champion model, original photos and titles). Without ``reference`` this is a reference
    snapshot and the top-1 similarity is leave-one-out within it.
    """
    items = sample_rows(catalog.items, sample, seed)
    queries = sample_rows(catalog.queries, sample, seed)
    image, text = embed(items)
    features = item_features(catalog, items, boxes)
    ids = features["item_id"].tolist()
    if reference is None:
        features["top1_similarity"] = top1_similarity(image, ids, image, ids)
    else:
        features["top1_similarity"] = top1_similarity(
            image, ids, reference.image, reference.items["item_id"].tolist()
        )
    return Snapshot(
        items=features,
        photos=photo_features(catalog, queries, boxes),
        image=np.asarray(image, dtype=np.float32),
        text=np.asarray(text, dtype=np.float32),
        meta={
            "items": len(features),
            "photos": len(queries),
            "catalog_items": len(catalog.items),
            "catalog_photos": len(catalog.queries),
            "source": catalog.manifest.source,
            **(meta or {}),
        },
    )


def _embedder(models_dir: Path, catalog: Catalog, batch_size: int, device: str):
    from vlclip.embed import embed_images, embed_texts
    from vlclip.model import load_checkpoint

    bundle = load_checkpoint(models_dir, device=device)

    def embed(items: pd.DataFrame):
        paths = [catalog.image_file(path) for path in items["image_path"]]
        image = embed_images(bundle, paths, batch_size, "embedding the sample's photos")
        text = embed_texts(bundle, items["title"].astype(str).tolist(), batch_size)
        return image, text

    return embed


def snapshot_of(
    catalog: Catalog,
    boxes: pd.DataFrame | None,
    models_dir: Path,
    params: MonitorParams,
    sample: int,
    batch_size: int,
    device: str,
    reference: Snapshot | None = None,
) -> Snapshot:
    """Features and the model's embeddings of a sample of ``catalog``."""
    return build_snapshot(
        catalog,
        boxes,
        _embedder(models_dir, catalog, batch_size, device),
        sample,
        params.seed,
        reference,
        meta={"model_version": model_version(models_dir)},
    )


def save_snapshot(snapshot: Snapshot, folder: Path) -> Path:
    with atomic_dir(folder) as staging:
        snapshot.items.to_parquet(staging / ITEMS, index=False)
        snapshot.photos.to_parquet(staging / PHOTOS, index=False)
        np.savez_compressed(staging / VECTORS, image=snapshot.image, text=snapshot.text)
        write_json(staging / META, snapshot.meta)
    return folder


def load_snapshot(folder: Path) -> Snapshot:
    folder = Path(folder)
    if not (folder / META).is_file():
        raise FileNotFoundError(
            f"{folder} holds no snapshot ({META} missing); run `dvc repro promote` (the reference "
            "is saved with each promoted model) or `vlclip snapshot`"
        )
    vectors = np.load(folder / VECTORS)
    return Snapshot(
        items=pd.read_parquet(folder / ITEMS),
        photos=pd.read_parquet(folder / PHOTOS),
        image=vectors["image"],
        text=vectors["text"],
        meta=json.loads((folder / META).read_text()),
    )
