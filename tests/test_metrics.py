"""Retrieval metrics against hand-computed rankings and against torchmetrics.retrieval."""

import math

import numpy as np
import pandas as pd
import pytest

from vlclip.embed import Embeddings
from vlclip.evaluate import (
    TASKS,
    RetrievalTask,
    build_tasks,
    evaluate_embeddings,
    hits_curve,
    ranks_of_relevant,
    retrieval_metrics,
)


def test_ties_are_pessimistic_whatever_the_gallery_order():
    scores = np.array([[0.5, 0.9, 0.5, 0.1], [0.5, 0.9, 0.5, 0.1]])
    # the tied irrelevant entry ranks ahead of the relevant one, before or after it in the gallery
    relevant = np.array([[False, False, True, True], [True, False, False, True]])
    assert [r.tolist() for r in ranks_of_relevant(scores, relevant)] == [[3, 4], [3, 4]]


def test_tied_relevant_entries_take_consecutive_ranks():
    scores = np.array([[0.5, 0.5, 0.5, 0.9]])
    relevant = np.array([[True, False, True, False]])
    assert ranks_of_relevant(scores, relevant)[0].tolist() == [3, 4]


def test_a_constant_scorer_gets_the_worst_ranks():
    metrics = retrieval_metrics(
        RetrievalTask(np.zeros((2, 4)), np.eye(2, 4, dtype=bool)), ks=[1, 3], ndcg_k=4
    )
    assert metrics["hits@3"] == 0.0
    assert metrics["mrr"] == pytest.approx(1 / 4)


def test_nan_scores_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        ranks_of_relevant(np.array([[np.nan, 0.1]]), np.array([[True, False]]))


def test_hand_computed_metrics():
    # query 0: relevant gallery item 2 ranked first; query 1: relevant items ranked 2nd and 3rd;
    # query 2: relevant item ranked last (4th).
    scores = np.array(
        [
            [0.1, 0.2, 0.9, 0.3],
            [0.9, 0.8, 0.7, 0.1],
            [0.4, 0.3, 0.2, 0.1],
        ]
    )
    relevant = np.array(
        [
            [False, False, True, False],
            [False, True, True, False],
            [False, False, False, True],
        ]
    )
    metrics = retrieval_metrics(RetrievalTask(scores, relevant), ks=[1, 2, 3], ndcg_k=3)
    assert metrics["hits@1"] == pytest.approx(1 / 3)
    assert metrics["hits@2"] == pytest.approx(2 / 3)
    assert metrics["hits@3"] == pytest.approx(2 / 3)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 3)
    ndcg_q1 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert metrics["ndcg@3"] == pytest.approx((1 + ndcg_q1 + 0) / 3)
    assert metrics["queries"] == 3


def test_queries_without_relevant_items_are_left_out():
    scores = np.array([[0.9, 0.1], [0.2, 0.8]])
    relevant = np.array([[True, False], [False, False]])
    metrics = retrieval_metrics(RetrievalTask(scores, relevant), ks=[1], ndcg_k=2)
    assert metrics["queries"] == 1
    assert metrics["hits@1"] == 1.0


def _torchmetrics_reference(
    scores: np.ndarray, relevant: np.ndarray, ks: list[int], ndcg_k: int
) -> dict[str, float]:
    """The same metrics from torchmetrics.retrieval (queries without a relevant entry skipped)."""
    import torch
    from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR, RetrievalNormalizedDCG

    preds = torch.from_numpy(scores).double().flatten()
    target = torch.from_numpy(relevant).flatten()
    indexes = torch.arange(len(scores)).repeat_interleave(scores.shape[1])

    def run(metric) -> float:
        return float(metric(preds, target, indexes=indexes))

    reference = {
        f"hits@{k}": run(RetrievalHitRate(top_k=k, empty_target_action="skip")) for k in ks
    }
    reference["mrr"] = run(RetrievalMRR(empty_target_action="skip"))
    reference[f"ndcg@{ndcg_k}"] = run(
        RetrievalNormalizedDCG(top_k=ndcg_k, empty_target_action="skip")
    )
    return reference


def _random_task(seed: int, queries: int, gallery: int, single: bool) -> RetrievalTask:
    """Tie-free random scores; one relevant entry per query, or several (some queries none)."""
    rng = np.random.default_rng(seed)
    scores = rng.random((queries, gallery))
    assert all(len(np.unique(row)) == gallery for row in scores)  # no ties
    if single:
        relevant = np.zeros((queries, gallery), dtype=bool)
        relevant[np.arange(queries), rng.integers(0, gallery, queries)] = True
    else:
        relevant = rng.random((queries, gallery)) < 0.2
        relevant[0] = False  # a query without a relevant entry: left out by both
        relevant[1] = True  # and one where everything is relevant
    return RetrievalTask(scores, relevant)


@pytest.mark.parametrize("single", [True, False], ids=["single-relevant", "several-relevant"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ndcg_k", [1, 5, 10, 40])
def test_metrics_agree_with_torchmetrics(seed: int, single: bool, ndcg_k: int):
    task = _random_task(seed, queries=50, gallery=40, single=single)
    ks = [1, 2, 5, 10, 40]
    ours = retrieval_metrics(task, ks, ndcg_k)
    reference = _torchmetrics_reference(task.scores, task.relevant, ks, ndcg_k)
    assert ours["queries"] == int(task.relevant.any(axis=1).sum())
    for key, value in reference.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key


def test_pessimistic_ties_never_beat_torchmetrics_tie_averaged_ndcg():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, (30, 20)).astype(float)  # many ties
    relevant = rng.random((30, 20)) < 0.25
    ours = retrieval_metrics(RetrievalTask(scores, relevant), [5], 10)
    reference = _torchmetrics_reference(scores, relevant, [5], 10)
    assert ours["ndcg@10"] < reference["ndcg@10"]


def _unit(vectors):
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _catalog_with_distractor() -> Embeddings:
    """Products a, b have test photos; c is a train-only listing that photo a1 resembles.

    Listing images: a, b, c along the axes. Item texts: b's and c's are swapped, so zero-shot
    ranks b1's product last. Query photos: a1 sits closer to c's listing (0.8) than to a's (0.6);
    a2 and b1 are closest to their own listings; c1 is a train photo.
    """
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "split": ["test", "test", "train"],
            "product_type": ["x", "y", "z"],
        }
    )
    queries = pd.DataFrame(
        {
            "query_id": ["a1", "a2", "b1", "c1"],
            "item_id": ["a", "a", "b", "c"],
            "split": ["test", "test", "test", "train"],
        }
    )
    a, b, c = [1, 0, 0], [0, 1, 0], [0, 0, 1]
    return Embeddings(
        items=items,
        item_image=_unit([a, b, c]),
        item_text=_unit([a, c, b]),
        queries=queries,
        query_image=_unit([[0.6, 0, 0.8], [1, 0, 0.1], [0.1, 1, 0], c]),
    )


def test_protocol_builds_every_task_in_report_order():
    tasks = build_tasks(_catalog_with_distractor(), "test")
    assert tuple(tasks) == TASKS
    assert TASKS[0] == "image_to_catalog"
    # whole catalog (a, b, c) vs the test products' listings (a, b) only
    assert tasks["image_to_catalog"].scores.shape == (3, 3)
    assert tasks["image_to_catalog_test_items"].scores.shape == (3, 2)
    assert tasks["zero_shot"].scores.shape == (3, 3)
    assert tasks["image_to_catalog"].relevant.tolist() == [
        [True, False, False],
        [True, False, False],
        [False, True, False],
    ]
    # text -> image: only products with test photos query; the train photo c1 is in no gallery
    assert tasks["text_to_image"].scores.shape == (2, 3)
    assert tasks["text_to_image"].relevant.tolist() == [[True, True, False], [False, False, True]]
    image_to_image = tasks["image_to_image"]
    assert not image_to_image.relevant.diagonal().any()
    assert np.isneginf(image_to_image.scores.diagonal()).all()
    # b1 has no other photo of its product: it is left out of image_to_image
    assert retrieval_metrics(image_to_image, [1], 1)["queries"] == 2


def test_a_listing_outside_the_test_products_counts_against_the_whole_catalog_search():
    metrics = evaluate_embeddings(_catalog_with_distractor(), "test", ks=[1, 2], ndcg_k=2)
    # a1 finds c's listing first: rank 2 in the shop's search, rank 1 among test products
    whole, closed = metrics["image_to_catalog"], metrics["image_to_catalog_test_items"]
    assert whole["hits@1"] == pytest.approx(2 / 3)
    assert whole["hits@2"] == 1.0
    assert whole["mrr"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert whole["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1 + 1) / 3)
    assert closed["hits@1"] == closed["mrr"] == 1.0
    assert whole["queries"] == closed["queries"] == 3


def test_zero_shot_ranks_every_catalog_text():
    metrics = evaluate_embeddings(_catalog_with_distractor(), "test", ks=[1, 5], ndcg_k=3)
    zero_shot = metrics["zero_shot"]
    # a1: a's text 0.6 < b's 0.8 -> rank 2; a2: rank 1; b1: b's text is c's axis -> rank 3 of 3
    assert zero_shot["accuracy"] == pytest.approx(1 / 3)
    assert zero_shot["accuracy@5"] == 1.0
    assert zero_shot["hits@1"] == zero_shot["accuracy"]
    assert zero_shot["mrr"] == pytest.approx((1 / 2 + 1 + 1 / 3) / 3)
    assert zero_shot["queries"] == 3
    assert not any(key.startswith("accuracy") for key in metrics["image_to_catalog"])


def test_report_and_curves_cover_every_task():
    embeddings = _catalog_with_distractor()
    assert tuple(evaluate_embeddings(embeddings, "test", ks=[1], ndcg_k=1)) == TASKS
    curves = hits_curve(embeddings, "test", max_k=3)
    assert tuple(curves) == TASKS
    assert curves["image_to_catalog"] == pytest.approx([2 / 3, 1.0, 1.0])
    assert curves["image_to_catalog_test_items"] == [1.0, 1.0, 1.0]


def test_zero_shot_is_split_by_whether_the_product_was_trained_on():
    embeddings = _catalog_with_distractor()
    embeddings.items.loc[embeddings.items["item_id"] == "b", "split"] = "train"
    metrics = evaluate_embeddings(embeddings, "test", ks=[1], ndcg_k=1)
    unseen, seen = metrics["zero_shot_unseen"], metrics["zero_shot_seen"]
    assert unseen["queries"] == 2 and seen["queries"] == 1  # a1, a2 (item a) vs b1 (item b)
    assert unseen["accuracy"] == pytest.approx(1 / 2) and seen["accuracy"] == 0.0
    everything = metrics["zero_shot"]
    assert everything["queries"] == unseen["queries"] + seen["queries"]
    assert metrics["zero_shot_seen"]["mrr"] == pytest.approx(1 / 3)
    none_trained = evaluate_embeddings(_catalog_with_distractor(), "test", ks=[1], ndcg_k=1)
    assert none_trained["zero_shot_seen"] == {"queries": 0}
