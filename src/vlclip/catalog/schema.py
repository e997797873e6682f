"""The catalog contract every source writes and every later stage reads.

A catalog folder holds:

- ``items.parquet``: one row per catalog listing (columns :data:`ITEM_COLUMNS`);
- ``queries.parquet``: photos of the same products taken elsewhere (:data:`QUERY_COLUMNS`);
- ``quarantine.parquet``: rows whose image could not be used, with the reason;
- ``catalog.json``: the :class:`Manifest` (source kind, where images live, taxonomy).

Image paths are relative to the manifest's ``image_root`` and never escape it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

ITEMS_FILE = "items.parquet"
QUERIES_FILE = "queries.parquet"
QUARANTINE_FILE = "quarantine.parquet"
MANIFEST_FILE = "catalog.json"

SPLITS = ("train", "val", "test")

# Columns a source provides for each catalog listing.
ITEM_SOURCE_COLUMNS = (
    "item_id",
    "title",
    "description",
    "attributes",  # JSON object, stored as text
    "product_type",
    "category",
    "image_path",
    "split",
)
QUERY_SOURCE_COLUMNS = ("query_id", "item_id", "image_path", "split")
# Ground-truth product box in pixels of the image, where the source knows it (the demo does).
BOX_COLUMNS = ("box_x0", "box_y0", "box_x1", "box_y1")
# Columns ingest adds after decoding each image.
IMAGE_COLUMNS = ("image_width", "image_height", "image_sha256")

ITEM_COLUMNS = (*ITEM_SOURCE_COLUMNS, *BOX_COLUMNS, *IMAGE_COLUMNS, "content_hash")
QUERY_COLUMNS = (*QUERY_SOURCE_COLUMNS, *BOX_COLUMNS, *IMAGE_COLUMNS)
QUARANTINE_COLUMNS = ("record_id", "table", "image_path", "reason")


@dataclass(frozen=True)
class Manifest:
    source: str
    image_root: str
    """Absolute, or relative to the catalog folder."""
    product_types: list[str] = field(default_factory=list)
    has_boxes: bool = False
    num_items: int = 0
    num_queries: int = 0
    num_quarantined: int = 0
    num_rows_seen: int = 0

    @property
    def quarantine_share(self) -> float:
        return self.num_quarantined / self.num_rows_seen if self.num_rows_seen else 0.0

    def to_json(self) -> str:
        data = dict(self.__dict__)
        data["quarantine_share"] = round(self.quarantine_share, 6)
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data.pop("quarantine_share", None)
        return cls(**data)


@dataclass(frozen=True)
class Catalog:
    """A catalog folder loaded into memory."""

    root: Path
    manifest: Manifest
    items: pd.DataFrame
    queries: pd.DataFrame
    quarantine: pd.DataFrame

    @property
    def image_root(self) -> Path:
        path = Path(self.manifest.image_root)
        return path if path.is_absolute() else (self.root / path)

    def image_file(self, relative: str) -> Path:
        return self.image_root / relative

    def items_in(self, split: str) -> pd.DataFrame:
        return self.items[self.items["split"] == split]

    def queries_in(self, split: str) -> pd.DataFrame:
        return self.queries[self.queries["split"] == split]


def empty_frame(columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype="object") for name in columns})


def load_catalog(folder: Path | str) -> Catalog:
    folder = Path(folder)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a catalog folder (no {MANIFEST_FILE}); run `vlclip ingest` first"
        )
    manifest = Manifest.from_json(manifest_path.read_text())
    quarantine_path = folder / QUARANTINE_FILE
    return Catalog(
        root=folder,
        manifest=manifest,
        items=pd.read_parquet(folder / ITEMS_FILE),
        queries=pd.read_parquet(folder / QUERIES_FILE),
        quarantine=pd.read_parquet(quarantine_path)
        if quarantine_path.exists()
        else empty_frame(QUARANTINE_COLUMNS),
    )
