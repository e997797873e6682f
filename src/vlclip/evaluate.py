"""Retrieval metrics (HITS@k, MRR, NDCG@k, zero-shot accuracy) and the evaluation protocol.

Protocol, on the evaluation split (``evaluate.split``, default test). The *catalog* is every
listing in the ``Embeddings`` (all splits); *test products* are the catalog items that have at
least one query photo in the split. Tasks, in report order (``TASKS``):

- ``image_to_catalog`` (headline): each query photo of the split searches the whole catalog,
  as a shop search does; relevant = its product's listing (image vectors).
- ``image_to_catalog_test_items``: the same queries, but the gallery holds only the listings of
  the test products (the easier, closed-set variant; a secondary figure).
- ``zero_shot``: each query photo against every catalog item's *text*, the items being the
  classes; besides the ranking metrics it reports ``accuracy`` (top-1: the product's text scores
  highest) and ``accuracy@5`` (it is among the five best).
- ``zero_shot_unseen`` / ``zero_shot_seen``: ``zero_shot`` split by whether the photo's product
  was trained on. Unseen products are the items outside the train split: neither their listing
  nor their text nor any photo of them reached a gradient (a val item still steers model
  selection). This is the transfer the method is about; a task with no such photos reports
  ``queries: 0``.
- ``text_to_image``: each test product's text queries the gallery of the split's query photos;
  relevant = the photos of that product.
- ``image_to_image``: each query photo queries the other query photos of the split (never
  itself); relevant = the other photos of the same product (queries without one are left out).

Metrics: ``hits@k`` = share of queries with a relevant entry in the top k; ``mrr`` = mean of
1 / rank of the first relevant entry; ``ndcg@k`` = binary-gain NDCG (gain 1 per relevant entry,
discount 1/log2(rank + 1), normalised by the ideal ranking of min(#relevant, k) entries);
``queries`` = how many queries were scored. Queries with no relevant entry in their gallery
(e.g. a photo whose product is missing from the catalog) are left out of every task.

Ties are *pessimistic*: an entry scoring the same as a relevant one is ranked ahead of it
whenever it is irrelevant, so the metrics do not depend on gallery order (which a shuffle or
a different export could change) and a model that scores everything alike gets the worst
ranks, never lucky ones. Scores must not be NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vlclip.embed import Embeddings

TASKS = (
    "image_to_catalog",
    "image_to_catalog_test_items",
    "zero_shot",
    "zero_shot_unseen",
    "zero_shot_seen",
    "text_to_image",
    "image_to_image",
)
# Top-k accuracies of the zero-shot task: "accuracy" is top-1, then "accuracy@k".
ZERO_SHOT_ACCURACY_KS = (1, 5)


@dataclass(frozen=True)
class RetrievalTask:
    """Similarities (queries x gallery) and which gallery entries are relevant to each query."""

    scores: np.ndarray
    relevant: np.ndarray


def ranks_of_relevant(scores: np.ndarray, relevant: np.ndarray) -> list[np.ndarray]:
    """1-based ranks of each query's relevant gallery entries, ascending (pessimistic ties).

    The i-th best relevant entry (0-based) has i relevant entries and every irrelevant entry
    scoring at least as high ahead of it. Counting instead of sorting the whole gallery keeps
    a large catalog cheap: the work is (#relevant x gallery) per query.
    """
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN: ranks would be undefined")
    ranks = []
    for row, is_relevant in zip(scores, relevant.astype(bool), strict=True):
        hits = np.sort(row[is_relevant])[::-1]
        others = row[~is_relevant]
        ahead = (others[None, :] >= hits[:, None]).sum(axis=1)
        ranks.append(np.arange(1, len(hits) + 1) + ahead)
    return ranks


def _accuracy_key(k: int) -> str:
    return "accuracy" if k == 1 else f"accuracy@{k}"


def retrieval_metrics(
    task: RetrievalTask, ks: Sequence[int], ndcg_k: int, accuracy_ks: Sequence[int] = ()
) -> dict[str, float]:
    """HITS@k, MRR (first relevant), binary-gain NDCG@k and, if asked, top-k accuracies.

    Accuracy@k is HITS@k under its classification name (one relevant class per query); it is
    reported under that name so zero-shot numbers compare with papers that use it.
    """
    keep = task.relevant.any(axis=1)
    scores, relevant = task.scores[keep], task.relevant[keep]
    if not len(scores):
        return {"queries": 0}
    ranks = ranks_of_relevant(scores, relevant)
    first = np.array([r[0] for r in ranks], dtype=float)
    metrics: dict[str, float] = {_accuracy_key(k): float(np.mean(first <= k)) for k in accuracy_ks}
    metrics.update({f"hits@{k}": float(np.mean(first <= k)) for k in ks})
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
    """Every task of the protocol (module docstring), keyed and ordered as ``TASKS``."""
    queries = embeddings.queries
    in_split = (queries["split"] == split).to_numpy()
    photo_items = queries.loc[in_split, "item_id"].to_numpy()
    photos = embeddings.query_image[in_split]
    catalog_ids = embeddings.items["item_id"].to_numpy()
    test_mask = embeddings.items["item_id"].isin(set(photo_items)).to_numpy()
    test_ids = catalog_ids[test_mask]

    photo_is_listing = photo_items[:, None] == catalog_ids[None, :]
    image_to_catalog = RetrievalTask(
        scores=photos @ embeddings.item_image.T, relevant=photo_is_listing
    )
    image_to_catalog_test_items = RetrievalTask(
        scores=image_to_catalog.scores[:, test_mask], relevant=photo_is_listing[:, test_mask]
    )
    zero_shot = RetrievalTask(scores=photos @ embeddings.item_text.T, relevant=photo_is_listing)
    item_split = dict(zip(catalog_ids, embeddings.items["split"], strict=True))
    trained = np.array([item_split.get(item) == "train" for item in photo_items], dtype=bool)
    text_to_image = RetrievalTask(
        scores=embeddings.item_text[test_mask] @ photos.T,
        relevant=test_ids[:, None] == photo_items[None, :],
    )
    photo_scores = photos @ photos.T
    np.fill_diagonal(photo_scores, -np.inf)  # a photo never retrieves itself
    same = photo_items[:, None] == photo_items[None, :]
    np.fill_diagonal(same, False)
    image_to_image = RetrievalTask(scores=photo_scores, relevant=same)
    tasks = {
        "image_to_catalog": image_to_catalog,
        "image_to_catalog_test_items": image_to_catalog_test_items,
        "zero_shot": zero_shot,
        "zero_shot_unseen": RetrievalTask(zero_shot.scores[~trained], zero_shot.relevant[~trained]),
        "zero_shot_seen": RetrievalTask(zero_shot.scores[trained], zero_shot.relevant[trained]),
        "text_to_image": text_to_image,
        "image_to_image": image_to_image,
    }
    return {name: tasks[name] for name in TASKS}


def evaluate_embeddings(
    embeddings: Embeddings, split: str, ks: list[int], ndcg_k: int
) -> dict[str, dict[str, float]]:
    """Metrics of every task in ``TASKS`` order; zero-shot adds its top-k accuracies."""
    tasks = build_tasks(embeddings, split)
    return {
        name: retrieval_metrics(
            task, ks, ndcg_k, ZERO_SHOT_ACCURACY_KS if name.startswith("zero_shot") else ()
        )
        for name, task in tasks.items()
    }


def hits_curve(embeddings: Embeddings, split: str, max_k: int) -> dict[str, list[float]]:
    """HITS@k for k = 1..max_k per task, for the plots."""
    tasks = build_tasks(embeddings, split)
    curves = {}
    for name, task in tasks.items():
        metrics = retrieval_metrics(task, list(range(1, max_k + 1)), max_k)
        curves[name] = [metrics.get(f"hits@{k}", float("nan")) for k in range(1, max_k + 1)]
    return curves
