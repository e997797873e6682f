"""Catalog tables from CSV, Parquet or JSONL files, with images in a folder.

Required columns: ``item_id``, ``title``, ``product_type``, ``image_path``. Optional ones get
defaults: an empty description, ``{}`` attributes, the product type as category, and a split
drawn deterministically from a hash of the item id.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from vlclip.catalog.sources import SourceTables
from vlclip.config import TableSource

REQUIRED_ITEM_COLUMNS = ("item_id", "title", "product_type", "image_path")
REQUIRED_QUERY_COLUMNS = ("query_id", "item_id", "image_path")
# Used only when the table has no split column: shares of val and test items.
DEFAULT_SPLIT_SHARES = (("test", 0.2), ("val", 0.1))
DEFAULT_QUERY_SPLIT = "test"


class TableError(ValueError):
    """The table cannot be used at all (unreadable, or a required column is missing)."""


def read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".jsonl":
            return _read_json_lines(path)
        return pd.read_json(path, dtype=False)
    except UnicodeDecodeError as error:
        raise TableError(
            f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset "
            f"{error.start}); save the file as UTF-8"
        ) from None
    except (ValueError, OSError) as error:
        raise TableError(f"{path}: cannot read table: {error}") from None


def _read_json_lines(path: Path) -> pd.DataFrame:
    """JSON lines, one object per line; a malformed line is named by its number."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise TableError(f"{path}, line {number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise TableError(f"{path}, line {number}: expected a JSON object per line")
            rows.append(row)
    return pd.DataFrame(rows)


def _require(frame: pd.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise TableError(f"{path}: missing required column(s) {missing}; found {list(frame)}")


def hashed_split(item_id: str) -> str:
    """A stable split from the id alone, so re-ingesting never reshuffles items."""
    fraction = int(hashlib.sha256(item_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    threshold = 0.0
    for split, share in DEFAULT_SPLIT_SHARES:
        threshold += share
        if fraction < threshold:
            return split
    return "train"


def _attributes_text(value: object) -> str:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "{}"
    return str(value)


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return str(value)


def read_table_source(source: TableSource) -> SourceTables:
    items = read_table(source.path)
    _require(items, REQUIRED_ITEM_COLUMNS, source.path)
    for name in ("item_id", "title", "product_type", "image_path", "description", "category"):
        if name in items.columns:
            items[name] = items[name].map(_text)
    items["description"] = items["description"].fillna("") if "description" in items else ""
    if "category" not in items.columns:
        items["category"] = items["product_type"]
    items["category"] = items["category"].fillna(items["product_type"])
    items["attributes"] = (
        items["attributes"].map(_attributes_text) if "attributes" in items.columns else "{}"
    )
    drawn = items["item_id"].map(lambda value: hashed_split(str(value)))
    if "split" not in items.columns:
        items["split"] = drawn
    else:  # an empty cell is a missing split, drawn like a missing column
        blank = items["split"].isna() | (items["split"].astype(str).str.strip() == "")
        items["split"] = items["split"].where(~blank, drawn)
    if source.queries_path is not None:
        queries = read_table(source.queries_path)
        _require(queries, REQUIRED_QUERY_COLUMNS, source.queries_path)
        for name in REQUIRED_QUERY_COLUMNS:
            queries[name] = queries[name].map(_text)
        if "split" not in queries.columns:
            queries["split"] = DEFAULT_QUERY_SPLIT
        queries["split"] = queries["split"].fillna(DEFAULT_QUERY_SPLIT)
    else:
        queries = pd.DataFrame(columns=["query_id", "item_id", "image_path", "split"])
    # A table declares no taxonomy of its own: the gate checks product types against
    # validate.allowed_product_types when the user sets it.
    return SourceTables(items=items, queries=queries, image_root=str(source.image_root.resolve()))
