"""The ingest stage: read a catalog source, check every image, write the catalog folder.

Rows whose image cannot be used, and rows missing a required field, go to
``quarantine.parquet`` with their id and a reason; the run goes on without them. The output
folder is replaced atomically, so a failed ingest leaves the previous catalog intact.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from vlclip.catalog.schema import (
    BOX_COLUMNS,
    IMAGE_COLUMNS,
    ITEM_COLUMNS,
    ITEMS_FILE,
    MANIFEST_FILE,
    QUARANTINE_COLUMNS,
    QUARANTINE_FILE,
    QUERIES_FILE,
    QUERY_COLUMNS,
    SPLITS,
    Manifest,
)
from vlclip.catalog.sources import SourceTables
from vlclip.config import CatalogSource, IngestParams
from vlclip.images import ImageInfo, ImageProblem, inspect_image, resolve_inside
from vlclip.io import atomic_dir, stable_hash

log = logging.getLogger(__name__)

# Image decoding releases the GIL, so a few threads keep both cores busy.
DECODE_THREADS = 4
REQUIRED_ITEM_FIELDS = ("item_id", "title", "product_type", "image_path")
REQUIRED_QUERY_FIELDS = ("query_id", "item_id", "image_path")
QUARANTINE_LOG_LINES = 10


def read_source(source: CatalogSource, staging: Path) -> SourceTables:
    """Dispatch on ``source.kind``; each source lives in its own module."""
    if source.kind == "synthetic":
        from vlclip.catalog.synthetic import generate_synthetic

        return generate_synthetic(source, staging)
    if source.kind == "grocery_store":
        from vlclip.catalog.grocery_store import read_grocery_store

        return read_grocery_store(source)
    from vlclip.catalog.table import read_table_source

    return read_table_source(source)


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value)) or not str(value).strip()


def _check_rows(
    frame: pd.DataFrame,
    table: str,
    id_column: str,
    required: tuple[str, ...],
    image_root: Path,
    params: IngestParams,
) -> tuple[pd.DataFrame, list[dict]]:
    """Return the usable rows (with image columns added) and quarantine records for the rest."""
    quarantined: list[dict] = []
    usable_index: list[int] = []
    infos: list[ImageInfo] = []

    def check(position: int) -> ImageInfo | str:
        row = frame.iloc[position]
        missing = [name for name in required if _blank(row.get(name))]
        if missing:
            return f"missing required field(s): {', '.join(missing)}"
        if "split" in row and row["split"] not in SPLITS:
            return f"unknown split {row['split']!r} (allowed: {', '.join(SPLITS)})"
        try:
            path = resolve_inside(image_root, str(row["image_path"]))
            return inspect_image(path, params.max_image_pixels, params.min_image_side)
        except ImageProblem as problem:
            return problem.reason

    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        results = pool.map(check, range(len(frame)))
        for position, result in enumerate(
            tqdm(results, total=len(frame), desc=f"checking {table} images", disable=None)
        ):
            row = frame.iloc[position]
            if isinstance(result, str):
                record_id = row.get(id_column)
                quarantined.append(
                    {
                        "record_id": "" if _blank(record_id) else str(record_id),
                        "table": table,
                        "image_path": ""
                        if _blank(row.get("image_path"))
                        else str(row["image_path"]),
                        "reason": result,
                    }
                )
            else:
                usable_index.append(position)
                infos.append(result)
    usable = frame.iloc[usable_index].reset_index(drop=True).copy()
    usable["image_width"] = [info.width for info in infos]
    usable["image_height"] = [info.height for info in infos]
    usable["image_sha256"] = [info.sha256 for info in infos]
    return usable, quarantined


def _with_columns(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    frame = frame.copy()
    for name in columns:
        if name not in frame.columns:
            frame[name] = float("nan") if name in BOX_COLUMNS else None
    return frame[list(columns)]


def content_hash(row: pd.Series) -> str:
    """Key for incremental work: changes when the item's text or image changes."""
    return stable_hash(
        row["title"],
        row["description"],
        row["attributes"],
        row["product_type"],
        row["category"],
        row["image_sha256"],
    )


def ingest(params: IngestParams, out_dir: Path) -> Manifest:
    """Build the catalog folder ``out_dir`` from ``params.source``."""
    with atomic_dir(out_dir) as staging:
        tables = read_source(params.source, staging)
        root = Path(tables.image_root)
        image_root = root if root.is_absolute() else staging / root
        rows_seen = len(tables.items) + len(tables.queries)

        items, quarantined = _check_rows(
            tables.items, "items", "item_id", REQUIRED_ITEM_FIELDS, image_root, params
        )
        items["content_hash"] = [content_hash(row) for _, row in items.iterrows()]
        queries, quarantined_queries = _check_rows(
            _with_columns(tables.queries, QUERY_COLUMNS[: -len(IMAGE_COLUMNS)]),
            "queries",
            "query_id",
            REQUIRED_QUERY_FIELDS,
            image_root,
            params,
        )
        quarantined += quarantined_queries
        orphan = ~queries["item_id"].isin(set(items["item_id"]))
        for _, row in queries[orphan].iterrows():
            quarantined.append(
                {
                    "record_id": str(row["query_id"]),
                    "table": "queries",
                    "image_path": str(row["image_path"]),
                    "reason": f"query refers to item {row['item_id']!r}, which is not in the "
                    "catalog (missing or quarantined)",
                }
            )
        queries = queries[~orphan]

        _with_columns(items, ITEM_COLUMNS).to_parquet(staging / ITEMS_FILE, index=False)
        _with_columns(queries, QUERY_COLUMNS).to_parquet(staging / QUERIES_FILE, index=False)
        quarantine = pd.DataFrame(quarantined, columns=list(QUARANTINE_COLUMNS))
        quarantine.to_parquet(staging / QUARANTINE_FILE, index=False)
        has_boxes = all(name in items.columns for name in BOX_COLUMNS) and bool(
            len(items) and items[list(BOX_COLUMNS)].notna().all().all()
        )
        manifest = Manifest(
            source=params.source.kind,
            image_root=tables.image_root,
            product_types=list(tables.product_types),
            has_boxes=has_boxes,
            num_items=len(items),
            num_queries=len(queries),
            num_quarantined=len(quarantine),
            num_rows_seen=rows_seen,
        )
        (staging / MANIFEST_FILE).write_text(manifest.to_json() + "\n")
    for record in quarantined[:QUARANTINE_LOG_LINES]:
        log.warning("quarantined %s %s: %s", record["table"], record["record_id"], record["reason"])
    if len(quarantined) > QUARANTINE_LOG_LINES:
        log.warning(
            "... and %d more; see %s",
            len(quarantined) - QUARANTINE_LOG_LINES,
            out_dir / QUARANTINE_FILE,
        )
    return manifest


def describe(manifest: Manifest, out_dir: Path) -> str:
    return (
        f"catalog from {manifest.source}: {manifest.num_items} items, {manifest.num_queries} "
        f"query photos, {manifest.num_quarantined} quarantined "
        f"({manifest.quarantine_share:.1%}) -> {out_dir}"
    )
