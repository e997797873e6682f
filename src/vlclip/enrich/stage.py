"""The enrich stage: one concise, visual product text per catalog item."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from vlclip.catalog.schema import Catalog
from vlclip.config import EnrichParams
from vlclip.enrich.rule_based import Glossary, clean_text, enrich_item
from vlclip.io import atomic_dir

TEXTS_FILE = "texts.parquet"
TEXT_COLUMNS = ("item_id", "text", "raw_text", "backend", "content_hash", "flagged")
log = logging.getLogger(__name__)


def raw_text(title: str, description: str, max_chars: int) -> str:
    """The un-enriched text (title and supplier description): the ablation's baseline."""
    return clean_text(f"{title}. {description}" if description else title, max_chars)


def enrich(catalog: Catalog, params: EnrichParams, out_dir: Path) -> pd.DataFrame:
    glossary = Glossary.load(params.glossary_path)
    rows = []
    for item in tqdm(
        catalog.items.itertuples(),
        total=len(catalog.items),
        desc=f"enriching ({params.backend})",
        disable=None,
    ):
        text = enrich_item(
            item.title,
            item.product_type,
            item.category,
            item.attributes,
            glossary,
            params.max_chars,
        )
        rows.append(
            {
                "item_id": item.item_id,
                "text": text,
                "raw_text": raw_text(item.title, item.description, params.max_chars),
                "backend": params.backend,
                "content_hash": item.content_hash,
                "flagged": not text,
            }
        )
    texts = pd.DataFrame(rows, columns=list(TEXT_COLUMNS))
    with atomic_dir(out_dir) as staging:
        texts.to_parquet(staging / TEXTS_FILE, index=False)
    log.info("enriched %d items with %s", len(texts), params.backend)
    return texts


def load_texts(enriched_dir: Path, column: str = "text") -> dict[str, str]:
    texts = pd.read_parquet(enriched_dir / TEXTS_FILE)
    return dict(zip(texts["item_id"], texts[column], strict=True))
