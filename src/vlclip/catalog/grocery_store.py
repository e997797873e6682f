"""Adapter for the GroceryStoreDataset layout (Klasson et al., WACV 2019).

Each of the 81 fine-grained classes becomes one catalog item: its iconic image is the catalog
photo, its class name the title, its Description text the description and the key/value lines of
its Information text the attributes. The in-store photos become query photos with their
published train/val/test splits. Images are read in place; nothing is copied.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from vlclip.catalog.sources import SourceTables
from vlclip.config import GroceryStoreSource

log = logging.getLogger(__name__)
ID_PREFIX = "gs-"
SPLIT_FILES = {"train": "train.txt", "val": "val.txt", "test": "test.txt"}
# Information lines that only repeat other columns or point elsewhere.
SKIPPED_INFO_KEYS = {"description", "url"}


def _read_text(path: Path) -> str:
    if not path.is_file():
        return ""
    return path.read_text(encoding="utf-8-sig", errors="replace").strip()


def parse_information(text: str) -> dict[str, str]:
    """Top-level ``Key: value`` lines of an Information file (indented lines are detail)."""
    attributes: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line[:1].isspace() or ":" not in line:
            continue
        key, value = line.split(":", 1)
        key, value = key.strip().lower(), value.strip()
        if key and value and key not in SKIPPED_INFO_KEYS:
            attributes[key] = value
    return attributes


def _item_id(class_name: str) -> str:
    return f"{ID_PREFIX}{class_name.strip().lower()}"


def read_grocery_store(source: GroceryStoreSource) -> SourceTables:
    dataset = (source.root / "dataset").resolve()
    classes = pd.read_csv(dataset / "classes.csv", skipinitialspace=True)
    classes.columns = [
        "class_name",
        "class_id",
        "coarse_name",
        "coarse_id",
        "iconic",
        "description",
    ]
    unknown = sorted(set(source.unseen_products) - set(classes["class_name"]))
    if unknown:
        raise ValueError(
            f"ingest.source.unseen_products: {unknown} are not GroceryStore class names "
            f"(e.g. {', '.join(classes['class_name'][:3])})"
        )
    unseen = {_item_id(name) for name in source.unseen_products}
    item_of_class: dict[int, str] = {}
    item_rows = []
    for row in classes.itertuples(index=False):
        item_id = _item_id(row.class_name)
        item_of_class[int(row.class_id)] = item_id
        iconic = str(row.iconic).lstrip("/")
        description_file = dataset / str(row.description).lstrip("/")
        information_file = description_file.with_name(
            description_file.name.replace("_Description.txt", "_Information.txt")
        )
        attributes = parse_information(_read_text(information_file))
        attributes["coarse_class"] = row.coarse_name.replace("-", " ").lower()
        item_rows.append(
            {
                "item_id": item_id,
                "title": row.class_name.replace("-", " "),
                "description": _read_text(description_file),
                "attributes": json.dumps(attributes, sort_keys=True, ensure_ascii=False),
                "product_type": row.coarse_name.replace("-", " ").lower(),
                "category": iconic.split("/")[1].lower() if iconic.count("/") > 1 else "",
                "image_path": iconic,
                "split": "test" if item_id in unseen else "train",
            }
        )
    query_rows = []
    left_out = 0
    for split, filename in SPLIT_FILES.items():
        listing = dataset / filename
        if not listing.is_file():
            continue
        for line in listing.read_text().splitlines():
            parts = [part.strip() for part in line.split(",")]
            if len(parts) < 2 or not parts[0]:
                continue
            path, class_id = parts[0], int(parts[1])
            if item_of_class.get(class_id) in unseen and split != "test":
                left_out += 1  # a held-out product: none of its photos may be trained on
                continue
            query_rows.append(
                {
                    "query_id": f"{ID_PREFIX}{Path(path).stem.lower()}-{split}",
                    "item_id": item_of_class.get(class_id, f"{ID_PREFIX}unknown-{class_id}"),
                    "image_path": path,
                    "split": split,
                }
            )
    if unseen:
        log.info(
            "%d products held out of training (%d train/val photos of theirs left out)",
            len(unseen),
            left_out,
        )
    items = pd.DataFrame(item_rows)
    return SourceTables(
        items=items,
        queries=pd.DataFrame(query_rows),
        image_root=str(dataset),
        product_types=sorted(items["product_type"].unique().tolist()),
    )
