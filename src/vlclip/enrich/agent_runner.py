"""Wire the Claude agent for one stage run: client, reply cache, transport, report."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlclip.catalog.schema import Catalog
from vlclip.config import EnrichParams
from vlclip.enrich.agent import EnrichAgent, ItemResult
from vlclip.enrich.anthropic_backend import (
    CallStats,
    RealtimeTransport,
    RetryPolicy,
    make_client,
)
from vlclip.enrich.batch import STATE_FILE, BatchTransport
from vlclip.enrich.cache import ReplyCache
from vlclip.enrich.cost import estimate_cost, load_prices
from vlclip.enrich.prompts import ItemInput
from vlclip.enrich.rule_based import Glossary, as_text, expand_title, parse_attributes

log = logging.getLogger(__name__)


def item_inputs(
    catalog: Catalog, glossary: Glossary, crops: dict[str, Path]
) -> list[ItemInput]:
    """The agent's view of each item: raw fields, the offline jargon expansion, its crop."""
    return [
        ItemInput(
            item_id=str(row.item_id),
            title=as_text(row.title),
            description=as_text(row.description),
            attributes=parse_attributes(as_text(row.attributes)),
            product_type=as_text(row.product_type),
            category=as_text(row.category),
            glossary_expansion=expand_title(as_text(row.title), glossary),
            image_path=crops.get(str(row.item_id)),
        )
        for row in catalog.items.itertuples()
    ]


def crop_paths(crops_dir: Path | None, params: EnrichParams) -> dict[str, Path]:
    """Grounded crops of the catalog items, when the crops folder exists and photos are wanted."""
    from vlclip.artifacts import BOXES_FILE, load_crop_paths

    if crops_dir is None or params.image_input == "none" or not (crops_dir / BOXES_FILE).is_file():
        return {}
    return load_crop_paths(crops_dir)[0]


def run_agent(
    catalog: Catalog,
    params: EnrichParams,
    offline: dict[str, str],
    glossary: Glossary,
    crops_dir: Path | None = None,
    client: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[dict[str, ItemResult], dict[str, Any]]:
    """Enrich every item with Claude; the report says what it cost and how it went."""
    client = client or make_client(params)
    stats = CallStats()
    policy = RetryPolicy(params, stats, sleep)
    if params.mode == "batch":
        transport = BatchTransport(client, params, policy, params.cache_dir / STATE_FILE, sleep)
    else:
        transport = RealtimeTransport(client, params, policy)
    cache = ReplyCache(params.cache_dir)
    agent = EnrichAgent(params, transport, cache)
    started = time.monotonic()
    try:
        results = agent.run(item_inputs(catalog, glossary, crop_paths(crops_dir, params)), offline)
    finally:
        cache.close()
    statuses = Counter(result.status for result in results.values())
    rounds = [result.rounds for result in results.values()]
    report = {
        "backend": "anthropic",
        "mode": params.mode,
        "model": params.model,
        "prompt_version": params.prompt_version,
        "prompt_fingerprint": agent.prompts.fingerprint,
        "structured_output": params.structured_output,
        "status": {name: statuses.get(name, 0) for name in ("accepted", "unaccepted", "fallback")},
        "mean_rounds": sum(rounds) / len(rounds) if rounds else 0.0,
        "calls": {
            "agent_rounds": agent.stats.rounds,
            "api_replies": agent.stats.api_replies,
            "cache_hits": agent.stats.cache_hits,
            "invalid_replies": agent.stats.invalid_replies,
            "failed_calls": agent.stats.failed_calls,
            "http_requests": stats.http_requests,
            "retries": stats.retries,
            "batches": stats.batches,
        },
        "tokens": {
            "input": agent.usage.input_tokens,
            "output": agent.usage.output_tokens,
            "cache_read": agent.usage.cache_read_input_tokens,
            "cache_write": agent.usage.cache_creation_input_tokens,
        },
        "cost": estimate_cost(
            agent.usage,
            params.model,
            params.mode == "batch",
            len(results),
            load_prices(params.prices_path),
        ),
        "seconds": round(time.monotonic() - started, 3),
    }
    return results, report
