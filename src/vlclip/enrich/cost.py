"""Token usage to an estimated cost, from the price table in ``prices.json``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

DEFAULT_PRICES = Path(__file__).with_name("prices.json")
TOKENS_PER_PRICE_UNIT = 1_000_000
PER_ITEMS = 1000
COST_DECIMALS = 6
# Usage field -> price key.
PRICE_OF = {
    "input_tokens": "input",
    "output_tokens": "output",
    "cache_creation_input_tokens": "cache_write",
    "cache_read_input_tokens": "cache_read",
}


def load_prices(path: Path | None = None) -> dict[str, Any]:
    return json.loads(Path(path or DEFAULT_PRICES).read_text())


def price_entry(model: str, prices: dict[str, Any]) -> tuple[str, dict[str, float]] | None:
    """The table row of ``model``: exact, else the longest listed name it starts with
    (``claude-haiku-4-5-20251001`` is priced as ``claude-haiku-4-5``)."""
    table = prices.get("models", {})
    if model in table:
        return model, table[model]
    matches = [name for name in table if model.startswith(name)]
    if not matches:
        return None
    name = max(matches, key=len)
    return name, table[name]


def estimate_cost(
    usage: Any, model: str, batch: bool, items: int, prices: dict[str, Any]
) -> dict[str, Any]:
    """USD estimate of the tokens in ``usage`` (a dataclass of the four token counts)."""
    counts = asdict(usage)
    entry = price_entry(model, prices)
    if entry is None:
        return {"usd": None, "per_1000_items_usd": None, "priced_as": None,
                "note": f"no price for {model} in the price table"}
    name, row = entry
    factor = float(prices.get("batch_factor", 1.0)) if batch else 1.0
    usd = sum(
        counts[field] * float(row[key]) for field, key in PRICE_OF.items()
    ) * factor / TOKENS_PER_PRICE_UNIT
    return {
        "usd": round(usd, COST_DECIMALS),
        "per_1000_items_usd": round(usd * PER_ITEMS / items, COST_DECIMALS) if items else 0.0,
        "priced_as": name,
        "batch_factor": factor,
        "prices_as_of": prices.get("as_of"),
        "note": "estimate from list prices; tokens served from the reply cache cost nothing",
    }
