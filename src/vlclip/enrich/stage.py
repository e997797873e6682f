"""The enrich stage: one concise, visual product text per catalog item.

Backends: ``rule_based`` (offline, free, deterministic) and ``anthropic`` (the Claude agent in
``agent.py``); ``auto`` picks the agent when ANTHROPIC_API_KEY is set. Whatever the backend,
every item gets a non-empty text: the agent falls back to the rule-based text per item.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vlclip.artifacts import TEXTS_FILE
from vlclip.catalog.schema import Catalog
from vlclip.config import EnrichParams
from vlclip.enrich.rule_based import Glossary, as_text, clean_text, enrich_item
from vlclip.io import atomic_dir

TEXT_COLUMNS = ("item_id", "text", "raw_text", "backend", "content_hash", "flagged", "status")
RULE_BASED = "rule_based"
ANTHROPIC = "anthropic"
log = logging.getLogger(__name__)
PHOTO_THREADS = 4  # decoding releases the GIL


@dataclass(frozen=True)
class EnrichResult:
    texts: pd.DataFrame
    report: dict[str, Any] = field(default_factory=dict)


def raw_text(
    title: str, product_type: str, category: str, attributes: str, description: str, max_chars: int
) -> str:
    """The un-enriched text, the ablation's baseline: every field the enrichment sees, as it is.

    Title, product type, category, the attributes' JSON and the description, joined in that
    order (the short fields first, so a length cap never drops them); no word is expanded or
    dropped, so enrichment is judged on what it writes, not on which fields it can see.
    """
    parts = [title, product_type, category, attributes, description]
    return clean_text(". ".join(part.strip() for part in parts if part.strip()), max_chars)


def resolve_backend(params: EnrichParams) -> str:
    """``auto`` means the Claude agent when an API key is in the environment, else offline."""
    from vlclip.enrich.anthropic_backend import API_KEY_ENV

    if params.backend != "auto":
        return params.backend
    return ANTHROPIC if os.environ.get(API_KEY_ENV, "").strip() else RULE_BASED


def photo_words(catalog: Catalog, crops_dir: Path | None) -> dict[str, str]:
    """Item id -> what its listing's photo shows: the grounded crop when there is one, else
    the catalog photo."""
    from vlclip.artifacts import load_crop_paths
    from vlclip.enrich.visual import describe_photo
    from vlclip.images import load_rgb

    crops = load_crop_paths(crops_dir)[0] if crops_dir is not None else {}
    paths = {
        row.item_id: crops.get(row.item_id) or catalog.image_file(row.image_path)
        for row in catalog.items.itertuples()
    }
    with ThreadPoolExecutor(PHOTO_THREADS) as pool:
        described = pool.map(lambda path: describe_photo(load_rgb(path)).sentence(),
                             paths.values())
        words = dict(zip(paths, described, strict=True))
    log.info("described %d listing photos (colours, outline, aspect)", len(words))
    return words


def enrich(
    catalog: Catalog,
    params: EnrichParams,
    out_dir: Path,
    crops_dir: Path | None = None,
    client: Any = None,
) -> EnrichResult:
    """Write ``texts.parquet`` to ``out_dir``; crops (``data/crops``) are optional photo input."""
    glossary = Glossary.load(params.glossary_path)
    backend = resolve_backend(params)
    items = catalog.items
    seen = photo_words(catalog, crops_dir) if params.visual_attributes else {}
    offline = {
        row.item_id: enrich_item(
            as_text(row.title),
            as_text(row.product_type),
            as_text(row.category),
            as_text(row.attributes) if params.attributes else "{}",
            glossary,
            params.max_chars,
            seen.get(row.item_id, ""),
            as_text(row.description) if params.description else "",
        )
        for row in items.itertuples()
    }
    raw = {
        row.item_id: raw_text(
            as_text(row.title),
            as_text(row.product_type),
            as_text(row.category),
            as_text(row.attributes),
            as_text(row.description),
            params.max_chars,
        )
        for row in items.itertuples()
    }
    if backend == ANTHROPIC:
        from vlclip.enrich.agent_runner import run_agent

        results, report = run_agent(catalog, params, offline, glossary, crops_dir, client)
        chosen = {
            item_id: (r.text, r.backend, r.flagged, r.status) for item_id, r in results.items()
        }
    else:
        chosen = {
            item_id: (text, RULE_BASED, False, RULE_BASED) for item_id, text in offline.items()
        }
        report = {"backend": RULE_BASED}
    rows = []
    for row in items.itertuples():
        text, used, flagged, status = chosen[row.item_id]
        text = text or offline[row.item_id] or raw[row.item_id] or str(row.item_id)
        rows.append(
            {
                "item_id": row.item_id,
                "text": text,
                "raw_text": raw[row.item_id],
                "backend": used,
                "content_hash": row.content_hash,
                "flagged": bool(flagged),
                "status": status,
            }
        )
    texts = pd.DataFrame(rows, columns=list(TEXT_COLUMNS))
    with atomic_dir(out_dir) as staging:
        texts.to_parquet(staging / TEXTS_FILE, index=False)
    report = {
        "requested_backend": params.backend,
        **report,
        "items": len(texts),
        "flagged": int(texts["flagged"].sum()),
        "mean_chars": float(texts["text"].str.len().mean()) if len(texts) else 0.0,
    }
    log.info("enriched %d items with %s (%d flagged)", len(texts), backend, report["flagged"])
    return EnrichResult(texts, report)
