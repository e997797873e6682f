"""Readers of the folders one stage hands to the next (``data/crops``, ``data/enriched``).

Downstream stages (train, embed, evaluate, promote, the ablation) read these formats and
nothing else of the ground and enrich stages, so they depend on this small module rather than
on the detectors or the Claude agent: editing a detector reruns ``ground``, not training.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

BOXES_FILE = "boxes.parquet"
"""``data/crops``: one row per photo (see ``vlclip.ground.stage.BOXES_COLUMNS``)."""
CROPS_FOLDER = "images"
TEXTS_FILE = "texts.parquet"
"""``data/enriched``: one row per item (see ``vlclip.enrich.stage.TEXT_COLUMNS``)."""
TABLES = ("items", "queries")


def load_crop_paths(crops_dir: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Crop files of the item and query photos, keyed by item id and query id."""
    boxes = pd.read_parquet(crops_dir / BOXES_FILE)
    paths = {
        table: {
            row.record_id: crops_dir / row.crop_path
            for row in boxes[boxes["table"] == table].itertuples()
        }
        for table in TABLES
    }
    return paths["items"], paths["queries"]


def load_texts(enriched_dir: Path, column: str = "text") -> dict[str, str]:
    """Item id -> enriched text (``column="raw_text"``: the verbatim fields, for the ablation)."""
    texts = pd.read_parquet(enriched_dir / TEXTS_FILE)
    return dict(zip(texts["item_id"], texts[column], strict=True))
