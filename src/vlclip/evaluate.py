"""Retrieval metrics (HITS@k, MRR, NDCG@k) and the evaluation protocol.

Protocol, on the evaluation split (``evaluate.split``, default test):

- *test products* are the catalog items that have at least one query photo in the split;
- ``text_to_image``: each test product's text queries the gallery of the split's query photos;
  relevant = the photos of that product;
- ``image_to_catalog``: each query photo queries the catalog listings of the test products;
  relevant = its product's listing;
- ``image_to_image``: each query photo queries the other query photos of the split;
  relevant = the other photos of the same product (queries without one are left out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlclip.embed import Embeddings

TASKS = ("text_to_image", "image_to_catalog", "image_to_image")


@dataclass(frozen=True)
class RetrievalTask:
    """Similarities (queries x gallery) and which gallery entries are relevant to each query."""

    scores: np.ndarray
    relevant: np.ndarray


def ranks_of_relevant(scores: np.ndarray, relevant: np.ndarray) -> list[np.ndarray]:
    """1-based ranks of each query's relevant gallery entries (ties keep gallery order)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked_relevance = np.take_along_axis(relevant, order, axis=1)
    return [np.flatnonzero(row) + 1 for row in ranked_relevance]


def retrieval_metrics(task: RetrievalTask, ks: list[int], ndcg_k: int) -> dict[str, float]:
    """HITS@k (a relevant item in the top k), MRR (first relevant) and binary-gain NDCG@k."""
    keep = task.relevant.any(axis=1)
    scores, relevant = task.scores[keep], task.relevant[keep]
    if not len(scores):
        return {"queries": 0}
    ranks = ranks_of_relevant(scores, relevant)
    first = np.array([r[0] for r in ranks], dtype=float)
    metrics: dict[str, float] = {f"hits@{k}": float(np.mean(first <= k)) for k in ks}
    metrics["mrr"] = float(np.mean(1.0 / first))
    discounts = 1.0 / np.log2(np.arange(2, ndcg_k + 2))
    ndcg = []
    for r in ranks:
        dcg = discounts[r[r <= ndcg_k] - 1].sum()
        ideal = discounts[: min(len(r), ndcg_k)].sum()
        ndcg.append(dcg / ideal)
    metrics[f"ndcg@{ndcg_k}"] = float(np.mean(ndcg))
    metrics["queries"] = int(len(scores))
    return metrics


def build_tasks(embeddings: Embeddings, split: str) -> dict[str, RetrievalTask]:
    queries = embeddings.queries
    in_split = (queries["split"] == split).to_numpy()
    photo_items = queries.loc[in_split, "item_id"].to_numpy()
    photos = embeddings.query_image[in_split]
    test_products = set(photo_items)
    item_mask = embeddings.items["item_id"].isin(test_products).to_numpy()
    product_ids = embeddings.items.loc[item_mask, "item_id"].to_numpy()

    text_to_image = RetrievalTask(
        scores=embeddings.item_text[item_mask] @ photos.T,
        relevant=product_ids[:, None] == photo_items[None, :],
    )
    image_to_catalog = RetrievalTask(
        scores=photos @ embeddings.item_image[item_mask].T,
        relevant=photo_items[:, None] == product_ids[None, :],
    )
    photo_scores = photos @ photos.T
    np.fill_diagonal(photo_scores, -np.inf)  # a photo never retrieves itself
    same = photo_items[:, None] == photo_items[None, :]
    np.fill_diagonal(same, False)
    image_to_image = RetrievalTask(scores=photo_scores, relevant=same)
    return {
        "text_to_image": text_to_image,
        "image_to_catalog": image_to_catalog,
        "image_to_image": image_to_image,
    }


def evaluate_embeddings(
    embeddings: Embeddings, split: str, ks: list[int], ndcg_k: int
) -> dict[str, dict[str, float]]:
    tasks = build_tasks(embeddings, split)
    return {name: retrieval_metrics(task, ks, ndcg_k) for name, task in tasks.items()}


def hits_curve(embeddings: Embeddings, split: str, max_k: int) -> dict[str, list[float]]:
    """HITS@k for k = 1..max_k per task, for the plots."""
    tasks = build_tasks(embeddings, split)
    curves = {}
    for name, task in tasks.items():
        metrics = retrieval_metrics(task, list(range(1, max_k + 1)), max_k)
        curves[name] = [metrics.get(f"hits@{k}", float("nan")) for k in range(1, max_k + 1)]
    return curves
