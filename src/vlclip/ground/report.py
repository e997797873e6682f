"""Grounding quality: crops against ground-truth product boxes, and a contact sheet to look at.

``reports/grounding.json`` (a DVC metric) holds, per table (catalog listings, query photos):
the fallback rate, and where the catalog knows the true boxes (the demo does) the mean IoU and
the recall at IoU >= 0.5 of the region the stage chose (the detector's box, or the full photo on
fallback), the same for the padded crop, and the IoU of the full photo for comparison (what no
grounding would give). ``reports/grounding.html`` shows a sample of photos with the detector's
box (red) and the true box (green) beside the crop that was saved, as one self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from vlclip.catalog.schema import BOX_COLUMNS, Catalog
from vlclip.config import GroundParams
from vlclip.ground.crops import Box, box_iou
from vlclip.ground.stage import TABLES
from vlclip.images import load_rgb
from vlclip.io import atomic_write_text, stable_hash, write_json

log = logging.getLogger(__name__)

IOU_HIT = 0.5
"""A box 'finds' the product when its IoU with the true box reaches this (the usual AP50)."""
RECALL_KEY = "recall_iou50"
THUMB_SIDE = 200
"""Long side of a photo in the contact sheet (small demo photos are enlarged)."""
CROP_THUMB_SIDE = 120
TILE_PADDING = 16
DETECTION_COLOR = (230, 30, 30)
TRUTH_COLOR = (30, 200, 60)
LINE_WIDTH = 2
REJECTED_WIDTH = 1
"""A box below the threshold (the full photo was kept) is drawn thinner."""
METRIC_DECIMALS = 4
ID_COLUMNS = {"items": "item_id", "queries": "query_id"}


def _truth(catalog: Catalog, table: str) -> pd.DataFrame:
    """Ground-truth boxes of a table indexed by record id (empty when the source has none)."""
    frame = getattr(catalog, table)
    columns = [ID_COLUMNS[table], *BOX_COLUMNS]
    if not catalog.manifest.has_boxes or not set(columns) <= set(frame.columns):
        return pd.DataFrame(columns=list(BOX_COLUMNS))
    truth = frame[columns].dropna().set_index(ID_COLUMNS[table])
    return truth.astype(float)


def _chosen_box(row: dict) -> Box | None:
    """The region the stage settled on before padding: the detection, or the whole photo."""
    if row["error"] or not row["image_width"]:
        return None
    if row["fallback"] or np.isnan(row["det_x0"]):
        return (0.0, 0.0, float(row["image_width"]), float(row["image_height"]))
    return (row["det_x0"], row["det_y0"], row["det_x1"], row["det_y1"])


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", str(text).lower()))


def phrase_accuracy(catalog: Catalog, rows: pd.DataFrame) -> float | None:
    """Share of label-free photos whose box answers their product's own type, scored afterwards
    with the label the detector never saw (a photo with no named phrase is a miss). None when the
    detector names no phrase at all (a studio silhouette, the full image)."""
    if "phrase" not in rows.columns or not (rows["phrase"] != "").any():
        return None
    own = dict(zip(catalog.items["item_id"], catalog.items["product_type"], strict=True))
    hits = [
        bool(phrase)
        and (
            _words(phrase) == _words(own[item]) or _words(phrase).endswith(" " + _words(own[item]))
        )
        for phrase, item in zip(rows["phrase"], rows["item_id"], strict=True)
    ]
    return _mean(hits)


def _ious(rows: pd.DataFrame, truth: pd.DataFrame) -> dict[str, np.ndarray]:
    chosen, cropped, full = [], [], []
    # full: what no grounding would give (the whole photo) for comparison
    for row in rows.to_dict("records"):
        gt = tuple(truth.loc[row["record_id"], list(BOX_COLUMNS)])
        box = _chosen_box(row)
        chosen.append(box_iou(box, gt) if box else 0.0)
        cropped.append(
            0.0
            if box is None
            else box_iou((row["box_x0"], row["box_y0"], row["box_x1"], row["box_y1"]), gt)
        )
        whole = (0.0, 0.0, float(row["image_width"]), float(row["image_height"]))
        full.append(box_iou(whole, gt) if box else 0.0)
    return {"chosen": np.array(chosen), "crop": np.array(cropped), "full": np.array(full)}


def grounding_metrics(catalog: Catalog, boxes: pd.DataFrame) -> dict:
    """Per-table grounding quality; IoU figures only where true boxes are known."""
    result: dict = {
        "detector": str(boxes["detector"].iloc[0]) if len(boxes) else None,
        "has_boxes": bool(catalog.manifest.has_boxes),
    }
    for table in TABLES:
        rows = boxes[boxes["table"] == table]
        sources = sorted(set(rows["prompt_source"])) if "prompt_source" in rows.columns else []
        metrics: dict = {
            "photos": int(len(rows)),
            "prompt_source": ",".join(sources) or None,
            "phrase_accuracy": phrase_accuracy(catalog, rows) if "vocabulary" in sources else None,
            "fallback_rate": _mean(rows["fallback"].astype(float)),
            "errors": int((rows["error"] != "").sum()),
            "mean_score": _mean(rows["score"]),
        }
        truth = _truth(catalog, table)
        scored = rows[rows["record_id"].isin(truth.index)]
        if len(scored):
            ious = _ious(scored, truth)
            metrics.update(
                {
                    "evaluated": int(len(scored)),
                    "mean_iou": _mean(ious["chosen"]),
                    RECALL_KEY: _mean(ious["chosen"] >= IOU_HIT),
                    "mean_iou_crop": _mean(ious["crop"]),
                    "full_image_iou": _mean(ious["full"]),
                    f"full_image_{RECALL_KEY}": _mean(ious["full"] >= IOU_HIT),
                }
            )
        result[table] = metrics
    return result


def _mean(values) -> float | None:
    values = np.asarray(values, dtype=float)
    return round(float(values.mean()), METRIC_DECIMALS) if values.size else None


# ----------------------------------------------------------------------- contact sheet


def sample_rows(boxes: pd.DataFrame, per_table: int) -> pd.DataFrame:
    """A fixed sample per table: photos that failed first, then the same photos from run to run
    (ordered by a hash of their id, not by catalog order)."""
    picked = []
    for table in TABLES:
        rows = boxes[boxes["table"] == table]
        order = sorted(
            rows.index,
            key=lambda index: (
                rows.at[index, "error"] == "",
                stable_hash(table, rows.at[index, "record_id"]),
            ),
        )
        picked.append(rows.loc[order[:per_table]])
    return pd.concat(picked)


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def annotated_photo(
    image: Image.Image, detection: Box | None, truth: Box | None, used: bool
) -> Image.Image:
    """The photo scaled to THUMB_SIDE with the true box (green) and the detection (red)."""
    scale = THUMB_SIDE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    canvas = image.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(canvas)
    for box, color, width in (
        (truth, TRUTH_COLOR, LINE_WIDTH),
        (detection, DETECTION_COLOR, LINE_WIDTH if used else REJECTED_WIDTH),
    ):
        if box is not None and not any(np.isnan(box)):
            x0, y0, x1, y1 = (value * scale for value in box)
            draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=color, width=width)
    return canvas


def _tile(row: dict, catalog: Catalog, truth: pd.DataFrame, crops_dir: Path) -> str:
    frame = getattr(catalog, row["table"])
    source = frame.loc[frame[ID_COLUMNS[row["table"]]] == row["record_id"], "image_path"]
    gt = (
        tuple(truth.loc[row["record_id"], list(BOX_COLUMNS)])
        if row["record_id"] in truth.index
        else None
    )
    detection = (
        None
        if np.isnan(row["det_x0"])
        else (row["det_x0"], row["det_y0"], row["det_x1"], row["det_y1"])
    )
    try:
        photo = load_rgb(catalog.image_file(source.iloc[0]))
        photo_uri = _data_uri(annotated_photo(photo, detection, gt, not row["fallback"]))
        cropped = load_rgb(crops_dir / row["crop_path"])
        cropped.thumbnail((CROP_THUMB_SIDE, CROP_THUMB_SIDE))
        crop_uri = _data_uri(cropped)
    except (OSError, ValueError, IndexError) as error:
        reason = row["error"] or str(error)
        return (
            f'<figure class="tile bad"><figcaption><code>{html.escape(row["record_id"])}'
            f'</code> <b class="fallback">{html.escape(reason)}</b></figcaption></figure>'
        )
    chosen = _chosen_box(row)
    notes = [f"score {row['score']:.2f}"]
    if row.get("phrase"):
        notes.append(f"found: {html.escape(row['phrase'])}")
    if gt is not None and chosen is not None:
        notes.append(f"IoU {box_iou(chosen, gt):.2f}")
    if row["fallback"]:
        notes.append('<b class="fallback">full photo</b>')
    if row["error"]:
        notes.append(f'<b class="fallback">{html.escape(row["error"])}</b>')
    return (
        '<figure class="tile">'
        f'<img src="{photo_uri}" alt="photo"><img class="crop" src="{crop_uri}" alt="crop">'
        f"<figcaption><code>{html.escape(row['record_id'])}</code> "
        f"{html.escape(_prompt_caption(row))}<br>{' · '.join(notes)}</figcaption></figure>"
    )


def _prompt_caption(row: dict) -> str:
    if row.get("prompt_source") == "vocabulary":
        return "prompted with the whole vocabulary (no label)"
    return f'"{row["prompt"]}"' + (" (oracle)" if row.get("prompt_source") == "oracle" else "")


def contact_sheet(
    catalog: Catalog, boxes: pd.DataFrame, metrics: dict, crops_dir: Path, per_table: int
) -> str:
    """A self-contained HTML page: metrics, then sampled photos with their boxes and crops."""
    sample = sample_rows(boxes, per_table)
    sections = []
    for table in TABLES:
        truth = _truth(catalog, table)
        rows = sample[sample["table"] == table].to_dict("records")
        tiles = "\n".join(_tile(row, catalog, truth, crops_dir) for row in rows)
        sections.append(
            f"<h2>{table} ({len(rows)} of {metrics[table]['photos']})</h2>"
            f'<div class="grid">{tiles}</div>'
        )
    header = "".join(
        f"<th>{html.escape(name)}</th>"
        for name in ("table", *[key for key in metrics["items"] if key != "photos"])
    )
    body = ""
    for table in TABLES:
        cells = "".join(
            f"<td>{_cell(value)}</td>" for key, value in metrics[table].items() if key != "photos"
        )
        body += f"<tr><td>{table}</td>{cells}</tr>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>vlclip grounding report</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 10px; }}
.tile {{ margin: 0; padding: 6px; border: 1px solid #ddd;
        width: {THUMB_SIDE + CROP_THUMB_SIDE + TILE_PADDING}px; }}
.tile img {{ vertical-align: top; image-rendering: auto; }}
.tile .crop {{ margin-left: 4px; border: 1px dashed #999; }}
figcaption {{ font-size: 12px; margin-top: 4px; }}
.fallback {{ color: #b00; }}
.legend span {{ display: inline-block; width: 14px; height: 3px; margin: 0 4px 3px 10px; }}
</style></head><body>
<h1>Grounding: {html.escape(str(metrics["detector"]))}</h1>
<p class="legend">Each photo with <span style="background: rgb{TRUTH_COLOR}"></span>the true
product box and <span style="background: rgb{DETECTION_COLOR}"></span>the detector's best box
(thin when below the threshold, the full photo then being kept), and beside it the crop that was
saved. IoU is that of the region used (the box, or the full photo) with the true box.</p>
<table><tr>{header}</tr>{body}</table>
{"".join(sections)}
</body></html>
"""


def _cell(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else html.escape(str(value))


def write_grounding_report(
    catalog: Catalog, boxes: pd.DataFrame, params: GroundParams, crops_dir: Path, reports_dir: Path
) -> dict:
    """Write ``grounding.json`` and ``grounding.html`` into ``reports_dir``; return the metrics."""
    metrics = grounding_metrics(catalog, boxes)
    write_json(reports_dir / "grounding.json", metrics)
    page = contact_sheet(catalog, boxes, metrics, crops_dir, params.report_samples)
    atomic_write_text(reports_dir / "grounding.html", page)
    for table in TABLES:
        if metrics[table].get("mean_iou") is not None:
            log.info(
                "grounding %s: mean IoU %.3f (full photo %.3f), recall@%.1f %.3f, fallback %.3f",
                table,
                metrics[table]["mean_iou"],
                metrics[table]["full_image_iou"],
                IOU_HIT,
                metrics[table][RECALL_KEY],
                metrics[table]["fallback_rate"],
            )
    return metrics
