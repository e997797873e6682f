"""The ground stage: detect the product in every catalog and query photo and save the crop.

Work is skipped where it can be, because detection is the expensive part (seconds per photo
for Grounding DINO on a CPU):

- a detection is keyed by the image's content hash, the prompt and the detector's settings,
  and stored in ``ground.cache_dir`` as soon as its batch finishes (:mod:`.cache`): a second
  run detects nothing, a changed prompt re-detects only its photos, a killed run resumes;
- a crop whose detection and crop settings did not change is copied from the previous output
  folder instead of being decoded and cut again.

A photo that cannot be decoded (changed or damaged after ingest) does not stop the stage: it
gets a grey placeholder crop, ``fallback`` and an ``error`` text in ``boxes.parquet``.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from vlclip.artifacts import BOXES_FILE, CROPS_FOLDER, TABLES
from vlclip.catalog.schema import Catalog
from vlclip.config import GroundParams
from vlclip.ground.cache import DetectionCache
from vlclip.ground.crops import Box, choose_box, crop
from vlclip.ground.detectors import (
    Detection,
    Detector,
    DetectorUnavailable,
    LearnsFromExemplars,
    Prompt,
    make_detector,
)
from vlclip.images import load_rgb
from vlclip.io import atomic_dir, stable_hash

PLACEHOLDER_SIDE = 32
PLACEHOLDER_GREY = (128, 128, 128)
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
"""What decoding a damaged image raises (UnidentifiedImageError is an OSError)."""
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """One photo to ground: a catalog listing or a query photo."""

    table: str
    record_id: str
    item_id: str
    image: Path
    phrases: tuple[str, ...]
    """Product types to look for; each detector turns them into its own prompt phrases. A
    listing: its own type. A query photo: the catalog's whole vocabulary (it has no label)."""
    source: str
    """Where the phrases came from: ``listing``, ``vocabulary`` or ``oracle`` (diagnosis)."""
    sha256: str | None = None
    """Content hash of the image file (from ingest); None: hashed when needed."""


def _column(frame: pd.DataFrame, name: str) -> list:
    return list(frame[name]) if name in frame.columns else [None] * len(frame)


def vocabulary(catalog: Catalog) -> tuple[str, ...]:
    """Every product type of the catalog, sorted: what a label-free query photo is prompted with."""
    return tuple(sorted({str(value) for value in catalog.items["product_type"]}))


def records_of(catalog: Catalog, query_prompt: str = "vocabulary") -> list[Record]:
    """Photos to ground. Listings know their type; query photos get the whole vocabulary.

    ``query_prompt="oracle"`` prompts a query photo with its product's true type instead: a label
    no shopper's photo has, so only for measuring what the label is worth.
    """
    product_type = dict(zip(catalog.items["item_id"], catalog.items["product_type"], strict=True))
    items, queries = catalog.items, catalog.queries
    records = [
        Record("items", item_id, item_id, catalog.image_file(path), (str(ptype),), "listing", sha)
        for item_id, path, ptype, sha in zip(
            items["item_id"],
            items["image_path"],
            items["product_type"],
            _column(items, "image_sha256"),
            strict=True,
        )
    ]
    everything = vocabulary(catalog)

    def query_phrases(item_id: str) -> tuple[str, ...]:
        return (str(product_type[item_id]),) if query_prompt == "oracle" else everything

    records += [
        Record(
            "queries",
            query_id,
            item_id,
            catalog.image_file(path),
            query_phrases(item_id),
            query_prompt,
            sha,
        )
        for query_id, item_id, path, sha in zip(
            queries["query_id"],
            queries["item_id"],
            queries["image_path"],
            _column(queries, "image_sha256"),
            strict=True,
        )
    ]
    return records


def crop_name(record: Record) -> str:
    """A file name that is safe whatever characters the ids contain."""
    return f"{record.table}/{stable_hash(record.table, record.record_id)}.jpg"


def content_hash(record: Record) -> str:
    """The image's sha256 from ingest, or of the file now (missing file: its path)."""
    if record.sha256:
        return str(record.sha256)
    try:
        return hashlib.sha256(record.image.read_bytes()).hexdigest()
    except OSError:
        return f"unreadable:{record.image}"


# ----------------------------------------------------------------------- exemplars


def exemplar_choice(
    records: list[Record], prompts: dict[Record, Prompt], hashes: dict[Record, str], per_prompt: int
) -> dict[str, list[Record]]:
    """Catalog listings that teach an exemplar-based detector each phrase (their own type).

    Chosen by content hash (not by order or id), so the choice, and the cache keys that depend
    on it, change only when a chosen photo changes or a new photo sorts in front of them.
    """
    by_prompt: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        if record.table == "items":
            by_prompt[prompts[record][0]].append(record)
    return {
        prompt: sorted(group, key=lambda record: hashes[record])[:per_prompt]
        for prompt, group in by_prompt.items()
    }


def _fit_exemplars(detector: LearnsFromExemplars, chosen: dict[str, list[Record]]) -> None:
    exemplars: dict[str, list[Image.Image]] = {}
    for prompt, group in chosen.items():
        images = []
        for record in group:
            try:
                images.append(load_rgb(record.image))
            except IMAGE_ERRORS as error:
                log.warning("exemplar %s skipped: %s", record.record_id, error)
        exemplars[prompt] = images
    detector.fit_exemplars(exemplars)


# ----------------------------------------------------------------------- detection


def _batches(records: list[Record], size: int) -> Iterator[list[Record]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


def _detect_batch(
    detector: Detector, images: list[Image.Image], prompts: list[Prompt]
) -> tuple[list[Detection | None], list[str | None]]:
    """Detections and per-image errors; a failing batch is retried photo by photo."""
    try:
        return detector.detect(images, prompts), [None] * len(images)
    except DetectorUnavailable:
        raise
    except Exception as error:  # noqa: BLE001 - one bad photo must not stop the catalog
        log.warning("batch of %d failed (%s); retrying one by one", len(images), error)
    found: list[Detection | None] = []
    errors: list[str | None] = []
    for image, prompt in zip(images, prompts, strict=True):
        try:
            found.extend(detector.detect([image], [prompt]))
            errors.append(None)
        except DetectorUnavailable:
            raise
        except Exception as error:  # noqa: BLE001
            found.append(None)
            errors.append(f"detector failed: {error}")
    return found, errors


@dataclass
class _Counts:
    detected: int = 0
    cached: int = 0
    copied: int = 0
    failed: int = 0
    first_error: str = ""


@dataclass(frozen=True)
class Plan:
    """What each photo's detection and crop depend on, hashed: the keys of all reuse."""

    records: list[Record]
    prompts: dict[Record, Prompt]
    """The detector's prompt phrases for each photo."""
    keys: dict[Record, str]
    """Detection key: detector settings, image content, prompt, and exemplars if any."""
    crop_keys: dict[Record, str]
    """Detection key plus the crop policy: equal keys give byte-identical crops."""
    exemplars: dict[str, list[Record]]
    """Catalog listings per prompt that an exemplar-based detector learns from."""


def plan(catalog: Catalog, params: GroundParams, detector: Detector) -> Plan:
    records = records_of(catalog, params.query_prompt)
    formatted = {phrase: detector.format_prompt(phrase) for r in records for phrase in r.phrases}
    prompts = {record: tuple(formatted[phrase] for phrase in record.phrases) for record in records}
    hashes = {record: content_hash(record) for record in records}
    fingerprint = detector.fingerprint()
    exemplars: dict[str, list[Record]] = {}
    if isinstance(detector, LearnsFromExemplars):
        exemplars = exemplar_choice(records, prompts, hashes, params.exemplars_per_prompt)
    exemplar_keys = {
        prompt: stable_hash([hashes[record] for record in group])
        for prompt, group in exemplars.items()
    }
    keys = {
        record: stable_hash(
            fingerprint,
            hashes[record],
            list(prompts[record]),
            [exemplar_keys.get(phrase) for phrase in prompts[record]],
        )
        for record in records
    }
    policy = (params.box_threshold, params.margin, params.crop_max_side, params.crop_quality)
    crop_keys = {record: stable_hash(keys[record], *policy) for record in records}
    return Plan(records, prompts, keys, crop_keys, exemplars)


@dataclass
class _Run:
    """One run of the stage: detects what the cache lacks, crops everything into ``staging``."""

    detector: Detector
    params: GroundParams
    plan: Plan
    cache: DetectionCache
    previous: dict[tuple[str, str], dict]
    out_dir: Path
    staging: Path
    counts: _Counts
    fitted: bool = False

    def batch(self, batch: list[Record]) -> list[dict]:
        keys = self.plan.keys
        reuse = {}
        for record in batch:
            row = self.previous.get((record.table, record.record_id))
            if _reusable(row, self.plan.crop_keys[record], self.out_dir):
                reuse[record] = row
        images: dict[Record, Image.Image] = {}
        errors: dict[Record, str] = {}
        for record in batch:
            if record in reuse and keys[record] in self.cache:
                continue  # neither detected nor cut: the old crop is copied
            try:
                images[record] = load_rgb(record.image)
            except IMAGE_ERRORS as error:
                errors[record] = f"image could not be decoded: {error}"
        todo = [record for record in images if keys[record] not in self.cache]
        if todo:
            errors.update(self._detect(todo, images))
        rows = []
        for record in batch:
            if record in errors:
                self.counts.failed += 1
                self.counts.first_error = self.counts.first_error or errors[record]
            elif record not in todo:
                self.counts.cached += 1
            rows.append(
                self._crop(
                    record,
                    images.get(record),
                    self.cache.get(keys[record]),
                    reuse.get(record),
                    errors.get(record),
                )
            )
        return rows

    def _detect(self, todo: list[Record], images: dict[Record, Image.Image]) -> dict[Record, str]:
        """Detect, store the results durably, and return the photos the detector failed on."""
        if not self.fitted and self.plan.exemplars:
            _fit_exemplars(self.detector, self.plan.exemplars)  # only once work is left
        self.fitted = True
        found, failures = _detect_batch(
            self.detector, [images[r] for r in todo], [self.plan.prompts[r] for r in todo]
        )
        fresh, errors = {}, {}
        for record, detection, failure in zip(todo, found, failures, strict=True):
            if failure is None:
                fresh[self.plan.keys[record]] = detection
            else:
                errors[record] = failure
        self.cache.add(fresh)  # durable before the next batch: a killed run resumes here
        self.counts.detected += len(fresh)
        return errors

    def _crop(
        self,
        record: Record,
        image: Image.Image | None,
        detection: Detection | None,
        previous: dict | None,
        error: str | None,
    ) -> dict:
        """Write one crop (copied, cut, or a placeholder) and return its ``boxes.parquet`` row."""
        name = crop_name(record)
        target = self.staging / CROPS_FOLDER / name
        if error is None and image is None and previous is not None:
            shutil.copy2(self.out_dir / previous["crop_path"], target)
            self.counts.copied += 1
            width, height = int(previous["image_width"]), int(previous["image_height"])
        elif image is None:
            Image.new("RGB", (PLACEHOLDER_SIDE, PLACEHOLDER_SIDE), PLACEHOLDER_GREY).save(target)
            width = height = 0
        else:
            width, height = image.width, image.height
        if error is not None:
            detection = None
        raw: Box | None = detection.box if detection is not None else None
        score = float(detection.score) if detection is not None else 0.0
        if width and height:
            box, fallback = choose_box(
                raw, score, self.params.box_threshold, self.params.margin, width, height
            )
        else:
            box, fallback = (np.nan, np.nan, np.nan, np.nan), True
        if image is not None:
            crop(image, box, self.params.crop_max_side).save(
                target, quality=self.params.crop_quality
            )
        det = raw if raw is not None else (np.nan, np.nan, np.nan, np.nan)
        return {
            "table": record.table,
            "record_id": record.record_id,
            "item_id": record.item_id,
            "crop_path": f"{CROPS_FOLDER}/{name}",
            "box_x0": box[0],
            "box_y0": box[1],
            "box_x1": box[2],
            "box_y1": box[3],
            "score": score,
            "prompt": PROMPT_SEPARATOR.join(self.plan.prompts[record]),
            "prompt_source": record.source,
            "phrase": (detection.phrase or "") if detection is not None else "",
            "detector": self.detector.name,
            "fallback": bool(fallback),
            "det_x0": det[0],
            "det_y0": det[1],
            "det_x1": det[2],
            "det_y1": det[3],
            "image_width": width,
            "image_height": height,
            "error": error or "",
            "key": self.plan.crop_keys[record] if error is None else "",
        }


def ground(
    catalog: Catalog, params: GroundParams, out_dir: Path, detector: Detector | None = None
) -> pd.DataFrame:
    """Write crops and ``boxes.parquet`` into ``out_dir``; return the boxes table."""
    detector = detector or make_detector(params)
    work = plan(catalog, params, detector)
    cache = DetectionCache(
        Path(params.cache_dir) / f"{detector.name}-{detector.fingerprint()}.jsonl"
    )
    counts = _Counts()
    rows: list[dict] = []
    with atomic_dir(out_dir) as staging:
        for table in TABLES:
            (staging / CROPS_FOLDER / table).mkdir(parents=True, exist_ok=True)
        run = _Run(detector, params, work, cache, _previous_rows(out_dir), out_dir, staging, counts)
        progress = tqdm(
            total=len(work.records),
            desc=f"grounding ({detector.name})",
            unit="photo",
            disable=None,
        )
        for batch in _batches(work.records, params.batch_size):
            rows += run.batch(batch)
            progress.update(len(batch))
        progress.close()
        if work.records and counts.failed == len(work.records):
            raise RuntimeError(f"grounding failed for every photo; first: {counts.first_error}")
        boxes = pd.DataFrame(rows, columns=list(BOXES_COLUMNS))
        boxes.to_parquet(staging / BOXES_FILE, index=False)
    cache.compact(set(work.keys.values()))
    log.info(
        "grounded %d photos with %s: %d detected, %d from the cache (%d crops reused), "
        "%d fell back to the full image, %d failed",
        len(boxes),
        detector.name,
        counts.detected,
        counts.cached,
        counts.copied,
        int(boxes["fallback"].sum()) if len(boxes) else 0,
        counts.failed,
    )
    return boxes


BOXES_COLUMNS = (
    "table",
    "record_id",
    "item_id",
    "crop_path",
    "box_x0",
    "box_y0",
    "box_x1",
    "box_y1",
    "score",
    "prompt",
    "prompt_source",
    "phrase",
    "detector",
    "fallback",
    "det_x0",
    "det_y0",
    "det_x1",
    "det_y1",
    "image_width",
    "image_height",
    "error",
    "key",
)
"""box_*: the cropped region (padded, or the full image on fallback); det_*: the detector's best
box before padding (NaN when it found none); prompt: the phrases the detector was given
(joined by PROMPT_SEPARATOR), prompt_source: listing (own type), vocabulary (label-free query)
or oracle (the query's true type, diagnosis only); phrase: the phrase the chosen box answers;
key: hash of everything the crop depends on."""
PROMPT_SEPARATOR = " | "


def _previous_rows(out_dir: Path) -> dict[tuple[str, str], dict]:
    """Rows of the last good output, to copy crops that would come out the same."""
    path = out_dir / BOXES_FILE
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError):
        return {}
    if "key" not in frame.columns:
        return {}
    return {(row["table"], row["record_id"]): row for row in frame.to_dict("records")}


def _reusable(row: dict | None, key: str, out_dir: Path) -> bool:
    return (
        row is not None
        and row.get("key") == key
        and not row.get("error")
        and (out_dir / row["crop_path"]).is_file()
    )
