"""Paper-style ablation: plain CLIP -> fine-tuned -> + grounding -> + enrichment.

Each row evaluates one (model, images, texts) combination on the evaluation split with the
same protocol as ``evaluate``. Rows swap inputs, not code: the trained model is evaluated on
full photos vs grounded crops and raw vs enriched texts, beside the weights it started from.
It is an *input* ablation of one trained model; the paper retrains per variant.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from vlclip.embed import CatalogViews, Embeddings, embed_catalog
from vlclip.evaluate import evaluate_embeddings
from vlclip.model import ClipBundle

HEADLINE = ("hits@5", "mrr")


@dataclass(frozen=True)
class Variant:
    name: str
    weights: str  # "baseline" or "trained"
    images: str  # "full" or "crops"
    texts: str  # "raw" or "enriched"


VARIANTS = (
    Variant("CLIP (starting weights), full photos, raw text", "baseline", "full", "raw"),
    Variant("+ fine-tuned", "trained", "full", "raw"),
    Variant("+ grounding (crops)", "trained", "crops", "raw"),
    Variant("+ enrichment = VL-CLIP", "trained", "crops", "enriched"),
)


def views_for(
    variant: Variant, full: CatalogViews, crops: CatalogViews, raw_texts: dict[str, str]
) -> CatalogViews:
    images = crops if variant.images == "crops" else full
    texts = crops.item_texts if variant.texts == "enriched" else raw_texts
    return CatalogViews(images.item_images, images.query_images, texts)


def run_ablation(
    bundles: dict[str, ClipBundle],
    items: pd.DataFrame,
    queries: pd.DataFrame,
    full: CatalogViews,
    crops: CatalogViews,
    raw_texts: dict[str, str],
    split: str,
    ks: list[int],
    ndcg_k: int,
    batch_size: int,
    precomputed: dict[Variant, Embeddings] | None = None,
) -> list[dict]:
    """One row per variant: the metrics of every task."""
    rows = []
    for variant in VARIANTS:
        embeddings = (precomputed or {}).get(variant) or embed_catalog(
            bundles[variant.weights],
            items,
            queries,
            views_for(variant, full, crops, raw_texts),
            batch_size,
        )
        rows.append(
            {
                "variant": variant.name,
                "weights": variant.weights,
                "images": variant.images,
                "texts": variant.texts,
                "metrics": evaluate_embeddings(embeddings, split, ks, ndcg_k),
            }
        )
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The ablation as a Markdown table: HITS@5 and MRR per task."""
    tasks = list(rows[0]["metrics"]) if rows else []
    header = ["variant"] + [f"{task} {metric}" for task in tasks for metric in HEADLINE]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["variant"]] + [
            f"{row['metrics'][task].get(metric, float('nan')):.3f}"
            for task in tasks
            for metric in HEADLINE
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
