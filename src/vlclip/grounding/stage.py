"""The ground stage: detect the product in every catalog and query photo and save the crop."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from vlclip.catalog.schema import Catalog
from vlclip.config import GroundParams
from vlclip.grounding.crops import crop, full_box, pad_and_clamp
from vlclip.grounding.detectors import make_detector
from vlclip.images import load_rgb
from vlclip.io import atomic_dir, stable_hash

BOXES_FILE = "boxes.parquet"
CROPS_FOLDER = "images"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """One photo to ground: a catalog listing or a query photo."""

    table: str
    record_id: str
    item_id: str
    image: Path
    prompt: str


def records_of(catalog: Catalog) -> list[Record]:
    product_type = dict(zip(catalog.items["item_id"], catalog.items["product_type"], strict=True))
    records = [
        Record(
            "items", row.item_id, row.item_id, catalog.image_file(row.image_path), row.product_type
        )
        for row in catalog.items.itertuples()
    ]
    records += [
        Record(
            "queries",
            row.query_id,
            row.item_id,
            catalog.image_file(row.image_path),
            product_type[row.item_id],
        )
        for row in catalog.queries.itertuples()
    ]
    return records


def crop_name(record: Record) -> str:
    """A file name that is safe whatever characters the ids contain."""
    return f"{record.table}/{stable_hash(record.table, record.record_id)}.jpg"


def ground(catalog: Catalog, params: GroundParams, out_dir: Path) -> pd.DataFrame:
    """Write crops and ``boxes.parquet`` into ``out_dir``; return the boxes table."""
    detector = make_detector(params.detector)
    records = records_of(catalog)
    rows: list[dict] = []
    with atomic_dir(out_dir) as staging:
        for table in ("items", "queries"):
            (staging / CROPS_FOLDER / table).mkdir(parents=True, exist_ok=True)
        progress = tqdm(total=len(records), desc=f"grounding ({detector.name})", disable=None)
        for start in range(0, len(records), params.batch_size):
            batch = records[start : start + params.batch_size]
            images = [load_rgb(record.image) for record in batch]
            detections = detector.detect(images, [record.prompt for record in batch])
            for record, image, detection in zip(batch, images, detections, strict=True):
                box = None
                if detection is not None and detection.score >= params.box_threshold:
                    box = pad_and_clamp(detection.box, params.margin, image.width, image.height)
                fallback = box is None
                if fallback:
                    box = full_box(image.width, image.height)
                name = crop_name(record)
                crop(image, box, params.crop_max_side).save(
                    staging / CROPS_FOLDER / name, quality=params.crop_quality
                )
                rows.append(
                    {
                        "table": record.table,
                        "record_id": record.record_id,
                        "item_id": record.item_id,
                        "crop_path": f"{CROPS_FOLDER}/{name}",
                        "box_x0": box[0],
                        "box_y0": box[1],
                        "box_x1": box[2],
                        "box_y1": box[3],
                        "score": float(detection.score) if detection else 0.0,
                        "prompt": record.prompt,
                        "detector": detector.name,
                        "fallback": fallback,
                    }
                )
            progress.update(len(batch))
        progress.close()
        boxes = pd.DataFrame(rows)
        boxes.to_parquet(staging / BOXES_FILE, index=False)
    log.info(
        "grounded %d photos with %s; %d fell back to the full image",
        len(boxes),
        detector.name,
        int(boxes["fallback"].sum()) if len(boxes) else 0,
    )
    return boxes


def load_crop_paths(crops_dir: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Crop files of the item and query photos, keyed by item id and query id."""
    boxes = pd.read_parquet(crops_dir / BOXES_FILE)
    paths = {
        table: {
            row.record_id: crops_dir / row.crop_path
            for row in boxes[boxes["table"] == table].itertuples()
        }
        for table in ("items", "queries")
    }
    return paths["items"], paths["queries"]
