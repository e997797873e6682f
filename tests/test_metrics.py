"""Retrieval metrics against rankings computed by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from vlclip.embed import Embeddings
from vlclip.evaluate import RetrievalTask, build_tasks, ranks_of_relevant, retrieval_metrics


def test_ranks_break_ties_by_gallery_order():
    scores = np.array([[0.5, 0.9, 0.5, 0.1]])
    relevant = np.array([[False, False, True, True]])
    # order: 1 (0.9), 0 (0.5), 2 (0.5), 3 (0.1) -> relevant at ranks 3 and 4
    assert ranks_of_relevant(scores, relevant)[0].tolist() == [3, 4]


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


def _unit(vectors):
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_protocol_builds_the_three_tasks():
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
    embeddings = Embeddings(
        items=items,
        item_image=_unit([a, b, c]),
        item_text=_unit([a, b, c]),
        queries=queries,
        query_image=_unit([[1, 0.1, 0], [1, 0, 0.1], [0.1, 1, 0], c]),
    )
    tasks = build_tasks(embeddings, "test")
    # only products with test photos (a, b) take part; the train photo c1 is not in any gallery
    assert tasks["text_to_image"].scores.shape == (2, 3)
    assert tasks["image_to_catalog"].scores.shape == (3, 2)
    assert tasks["text_to_image"].relevant.tolist() == [[True, True, False], [False, False, True]]
    image_to_image = tasks["image_to_image"]
    assert not image_to_image.relevant.diagonal().any()
    assert np.isneginf(image_to_image.scores.diagonal()).all()
    perfect = retrieval_metrics(tasks["image_to_catalog"], [1], 1)
    assert perfect["hits@1"] == 1.0
    # b1 has no other photo of its product: it is left out of image_to_image
    assert retrieval_metrics(image_to_image, [1], 1)["queries"] == 2
