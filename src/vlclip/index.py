"""faiss index over catalog item vectors; similar-item recommendations and text search.

An item's vector fuses its image and text embeddings (``index.text_weight``), normalised, so
inner product is cosine similarity. ``flat`` is exact; ``hnsw`` is the approximate graph index
the paper serves with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from vlclip.config import IndexParams
from vlclip.embed import Embeddings
from vlclip.io import atomic_dir

INDEX_FILE = "catalog.faiss"
IDS_FILE = "items.parquet"
INFO_FILE = "index.json"


def fuse(image: np.ndarray, text: np.ndarray, text_weight: float) -> np.ndarray:
    vectors = (1.0 - text_weight) * image + text_weight * text
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def build_faiss(vectors: np.ndarray, params: IndexParams) -> faiss.Index:
    dim = vectors.shape[1]
    if params.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexFlatIP(dim)
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def build_index(
    embeddings: Embeddings, catalog_items: pd.DataFrame, params: IndexParams, out_dir: Path
) -> int:
    """Index every catalog item; keep id, title and product type beside it for display."""
    vectors = fuse(embeddings.item_image, embeddings.item_text, params.text_weight)
    index = build_faiss(vectors, params)
    details = catalog_items.set_index("item_id").loc[embeddings.items["item_id"]]
    table = pd.DataFrame(
        {
            "item_id": embeddings.items["item_id"].to_numpy(),
            "title": details["title"].to_numpy(),
            "product_type": details["product_type"].to_numpy(),
        }
    )
    with atomic_dir(out_dir) as staging:
        faiss.write_index(index, str(staging / INDEX_FILE))
        table.to_parquet(staging / IDS_FILE, index=False)
        (staging / INFO_FILE).write_text(
            json.dumps(
                {
                    "kind": params.kind,
                    "items": len(table),
                    "dim": int(vectors.shape[1]),
                    "text_weight": params.text_weight,
                },
                indent=2,
            )
        )
    return len(table)


@dataclass
class CatalogIndex:
    index: faiss.Index
    items: pd.DataFrame

    @classmethod
    def load(cls, folder: Path) -> CatalogIndex:
        if not (folder / INDEX_FILE).is_file():
            raise FileNotFoundError(f"no index in {folder}; run `vlclip index` first")
        return cls(faiss.read_index(str(folder / INDEX_FILE)), pd.read_parquet(folder / IDS_FILE))

    def _results(self, scores: np.ndarray, positions: np.ndarray) -> pd.DataFrame:
        keep = positions >= 0
        rows = self.items.iloc[positions[keep]].reset_index(drop=True).copy()
        rows.insert(0, "score", scores[keep])
        return rows

    def similar(self, item_id: str, k: int) -> pd.DataFrame:
        """The ``k`` nearest other items to ``item_id``."""
        matches = np.flatnonzero(self.items["item_id"].to_numpy() == item_id)
        if not len(matches):
            raise KeyError(f"item {item_id!r} is not in the index")
        vector = self.index.reconstruct(int(matches[0])).reshape(1, -1)
        scores, positions = self.index.search(vector, k + 1)
        results = self._results(scores[0], positions[0])
        return results[results["item_id"] != item_id].head(k).reset_index(drop=True)

    def search(self, vector: np.ndarray, k: int) -> pd.DataFrame:
        scores, positions = self.index.search(vector.reshape(1, -1).astype(np.float32), k)
        return self._results(scores[0], positions[0])
