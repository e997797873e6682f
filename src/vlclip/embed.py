"""Image and text embeddings for a catalog with a given model (``vlclip embed``).

Vectors are L2-normalised float32, so a dot product is the cosine similarity that both the
evaluation and the faiss index use.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from vlclip.catalog.schema import Catalog
from vlclip.features import FrozenImageLayers, preprocessed_batch
from vlclip.io import atomic_dir
from vlclip.model import ClipBundle

ITEM_IMAGE_FILE = "items_image.parquet"
ITEM_TEXT_FILE = "items_text.parquet"
QUERY_IMAGE_FILE = "queries_image.parquet"
VECTOR_COLUMN = "vector"
LOAD_THREADS = 4


def _batches(count: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]


def _normalise(features: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy()


def image_tensor(bundle: ClipBundle, paths: Sequence[Path], pool: ThreadPoolExecutor):
    """Decode and preprocess a batch of images (decoding runs in threads)."""
    return preprocessed_batch(bundle.preprocess_eval, paths, pool)


@torch.inference_mode()
def embed_images(
    bundle: ClipBundle,
    paths: Sequence[Path],
    batch_size: int,
    desc: str = "embedding images",
    frozen: FrozenImageLayers | None = None,
) -> np.ndarray:
    """``frozen``: the image tower's frozen layers' cached features stand in for the pixels."""
    bundle.model.eval()
    chunks: list[np.ndarray] = []
    if frozen is not None:
        frozen.prepare(paths, batch_size)
    with ThreadPoolExecutor(LOAD_THREADS) as pool:
        for part in tqdm(_batches(len(paths), batch_size), desc=desc, disable=None):
            if frozen is not None:
                chunks.append(_normalise(frozen.encode(paths[part])))
                continue
            pixels = image_tensor(bundle, paths[part], pool).to(bundle.device)
            chunks.append(_normalise(bundle.model.encode_image(pixels)))
    return np.concatenate(chunks) if chunks else np.zeros((0, embed_dim(bundle)), np.float32)


@torch.inference_mode()
def embed_texts(
    bundle: ClipBundle, texts: Sequence[str], batch_size: int, desc: str = "embedding texts"
) -> np.ndarray:
    bundle.model.eval()
    chunks: list[np.ndarray] = []
    for part in tqdm(_batches(len(texts), batch_size), desc=desc, disable=None):
        tokens = bundle.tokenizer(list(texts[part])).to(bundle.device)
        chunks.append(_normalise(bundle.model.encode_text(tokens)))
    return np.concatenate(chunks) if chunks else np.zeros((0, embed_dim(bundle)), np.float32)


def embed_dim(bundle: ClipBundle) -> int:
    projection = getattr(bundle.model, "text_projection", None)
    if isinstance(projection, torch.Tensor):
        return int(projection.shape[-1])
    with torch.inference_mode():
        tokens = bundle.tokenizer(["x"]).to(bundle.device)
        return int(bundle.model.encode_text(tokens).shape[-1])


@dataclass
class CatalogViews:
    """Which image and text stand for each record: the ablation swaps these, not the code.

    ``item_images`` and ``query_images`` map ids to image files; ``item_texts`` maps item ids to
    the text that describes them.
    """

    item_images: dict[str, Path]
    query_images: dict[str, Path]
    item_texts: dict[str, str]


@dataclass
class Embeddings:
    items: pd.DataFrame  # item_id, split, product_type
    item_image: np.ndarray
    item_text: np.ndarray
    queries: pd.DataFrame  # query_id, item_id, split
    query_image: np.ndarray


def original_views(catalog: Catalog, texts: dict[str, str] | None = None) -> CatalogViews:
    """The catalog's own photos (no grounding), with ``texts`` or the raw titles."""
    return CatalogViews(
        item_images={
            row.item_id: catalog.image_file(row.image_path) for row in catalog.items.itertuples()
        },
        query_images={
            row.query_id: catalog.image_file(row.image_path) for row in catalog.queries.itertuples()
        },
        item_texts=texts
        if texts is not None
        else dict(zip(catalog.items["item_id"], catalog.items["title"], strict=True)),
    )


def embed_catalog(
    bundle: ClipBundle,
    items: pd.DataFrame,
    queries: pd.DataFrame,
    views: CatalogViews,
    batch_size: int,
    frozen: FrozenImageLayers | None = None,
) -> Embeddings:
    """Embed the given item and query rows under ``views``."""
    item_ids = items["item_id"].tolist()
    query_ids = queries["query_id"].tolist()
    return Embeddings(
        items=items[["item_id", "split", "product_type"]].reset_index(drop=True),
        item_image=embed_images(
            bundle, [views.item_images[i] for i in item_ids], batch_size, "embedding items",
            frozen,
        ),
        item_text=embed_texts(bundle, [views.item_texts[i] for i in item_ids], batch_size),
        queries=queries[["query_id", "item_id", "split"]].reset_index(drop=True),
        query_image=embed_images(
            bundle, [views.query_images[i] for i in query_ids], batch_size, "embedding queries",
            frozen,
        ),
    )


def _with_vectors(frame: pd.DataFrame, vectors: np.ndarray) -> pd.DataFrame:
    frame = frame.copy()
    frame[VECTOR_COLUMN] = list(vectors.astype(np.float32))
    return frame


def check_output_folder(out_dir: Path, inputs: Sequence[Path] = ()) -> None:
    """Refuse an output that would replace what vlclip did not write: an existing file, a
    folder holding other files, or one of the inputs (or a folder inside or around one)."""
    out_dir = Path(out_dir)
    resolved = out_dir.resolve()
    for source in inputs:
        source = Path(source).resolve()
        if resolved == source or resolved.is_relative_to(source) or source.is_relative_to(resolved):
            raise ValueError(f"--out {out_dir}: that is (or holds) an input folder ({source})")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir}: a file is there; name a folder")
    if out_dir.is_dir():
        ours = {ITEM_IMAGE_FILE, ITEM_TEXT_FILE, QUERY_IMAGE_FILE}
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in ours)
        if foreign:
            raise ValueError(
                f"--out {out_dir}: the folder holds files vlclip did not write "
                f"({', '.join(foreign[:5])}); name an empty folder or earlier embeddings"
            )


def save_embeddings(embeddings: Embeddings, out_dir: Path) -> None:
    with atomic_dir(out_dir) as staging:
        _with_vectors(embeddings.items, embeddings.item_image).to_parquet(
            staging / ITEM_IMAGE_FILE, index=False
        )
        _with_vectors(embeddings.items, embeddings.item_text).to_parquet(
            staging / ITEM_TEXT_FILE, index=False
        )
        _with_vectors(embeddings.queries, embeddings.query_image).to_parquet(
            staging / QUERY_IMAGE_FILE, index=False
        )


def _split_vectors(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    vectors = np.stack(frame[VECTOR_COLUMN].to_numpy()) if len(frame) else np.zeros((0, 0))
    return frame.drop(columns=[VECTOR_COLUMN]), vectors.astype(np.float32)


def load_embeddings(folder: Path) -> Embeddings:
    items, item_image = _split_vectors(pd.read_parquet(folder / ITEM_IMAGE_FILE))
    _, item_text = _split_vectors(pd.read_parquet(folder / ITEM_TEXT_FILE))
    queries, query_image = _split_vectors(pd.read_parquet(folder / QUERY_IMAGE_FILE))
    return Embeddings(items, item_image, item_text, queries, query_image)
