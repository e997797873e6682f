"""Grounding: stage throughput against a bare detector loop, and box quality per backend.

Throughput rows compare ``vlclip.ground.ground`` (decode, detect, cache, crop, write) with
the loop one would write around the same detector (decode, detect, nothing else) on the same
photos at the same batch size; each variant runs in its own process so peak memory is its own.
Grounding DINO is a tiny *randomly initialised* model here (no weights offline): it measures
the stage's overhead around a torch detector, not Grounding DINO's real speed. Quality rows give
the mean IoU with the true boxes of the demo catalog's query photos, for the weight-free
detector against no grounding (the full photo).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.timing import best_time, peak_rss_mb

PHOTOS = 96
BATCH_SIZE = 16
REPEATS = 3
TORCH_THREADS = 1
"""One thread per variant: on a shared 2-core machine, OpenMP spin-waits under contention make
multi-threaded timings of the tiny model swing tenfold from batch to batch."""
QUALITY_PRODUCTS = 120
QUALITY_QUERIES = 4
SEED = 7


def _catalog(folder: Path, products: int, queries: int):
    from vlclip.catalog.ingest import ingest
    from vlclip.catalog.schema import load_catalog
    from vlclip.config import IngestParams, SyntheticSource

    source = SyntheticSource(seed=SEED, num_products=products, queries_per_product=queries)
    ingest(IngestParams(source=source), folder)
    return load_catalog(folder)


def _prepare(folder: Path) -> None:
    from vlclip.ground.tiny_models import build_grounding_dino

    _catalog(folder / "catalog", PHOTOS // 4, 3)
    build_grounding_dino(folder / "dino")


def _variant(name: str, folder: Path) -> tuple[float, int]:
    """Seconds for one pass over the photos (best of REPEATS after a warm-up), and the count."""
    import torch

    from vlclip.catalog.schema import load_catalog
    from vlclip.config import GroundParams
    from vlclip.ground import ground, make_detector
    from vlclip.ground.detectors import LearnsFromExemplars
    from vlclip.ground.stage import plan, records_of
    from vlclip.images import load_rgb

    catalog = load_catalog(folder / "catalog")
    records = records_of(catalog)
    detector_name = "saliency" if name.startswith("saliency") else "grounding_dino"
    params = GroundParams(
        detector=detector_name,
        checkpoint=str(folder / "dino"),
        device="cpu",
        batch_size=BATCH_SIZE,
        text_threshold=0.0,
    )
    detector = make_detector(params)
    runs = 0

    def stage() -> None:  # a fresh cache and output each time: everything is detected
        nonlocal runs
        runs += 1
        fresh = params.model_copy(update={"cache_dir": folder / f"cache-{name}-{runs}"})
        ground(catalog, fresh, folder / f"crops-{name}-{runs}", detector=detector)

    @torch.inference_mode()
    def bare() -> None:
        work = plan(catalog, params, detector)  # the same prompts and exemplars as the stage
        if isinstance(detector, LearnsFromExemplars):
            detector.fit_exemplars(
                {p: [load_rgb(r.image) for r in group] for p, group in work.exemplars.items()}
            )
        for start in range(0, len(records), BATCH_SIZE):
            batch = records[start : start + BATCH_SIZE]
            images = [load_rgb(record.image) for record in batch]
            detector.detect(images, [work.prompts[r] for r in batch])

    run = stage if name.endswith("stage") else bare
    return best_time(run, REPEATS), len(records)


def _child(name: str, folder: str) -> None:
    import torch

    torch.set_num_threads(TORCH_THREADS)
    seconds, photos = _variant(name, Path(folder))
    peak = peak_rss_mb()
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "photos": photos}))


def _quality(folder: Path) -> list[dict]:
    """Mean IoU on the demo query photos: saliency against the full photo (no grounding)."""
    from vlclip.config import GroundParams
    from vlclip.ground import ground, grounding_metrics

    catalog = _catalog(folder / "quality", QUALITY_PRODUCTS, QUALITY_QUERIES)
    measured = {}
    for detector, query_prompt in QUALITY_VARIANTS:
        started = time.perf_counter()
        name = f"{detector}-{query_prompt}"
        params = GroundParams(
            detector=detector, query_prompt=query_prompt, cache_dir=folder / f"q-cache-{name}"
        )
        boxes = ground(catalog, params, folder / f"quality-{name}")
        seconds = time.perf_counter() - started
        peak = peak_rss_mb()
        measured[name] = (grounding_metrics(catalog, boxes), len(boxes) / seconds, peak)
    rows = []
    baseline = measured["full_image-vocabulary"][0]
    for name, (metrics, speed, peak) in measured.items():
        for table in ("queries", "items"):
            if name.endswith("oracle") and table == "items":
                continue  # listings are prompted with their own type either way
            iou = metrics[table]["mean_iou"]
            label = QUALITY_LABELS[name]
            rows.append(
                {
                    "variant": f"{label}: mean IoU with true boxes, demo {table}",
                    "throughput": 100 * iou,
                    "unit": "% IoU",
                    "peak_rss_mb": peak,
                    "ratio": iou / baseline[table]["mean_iou"],
                    "recall_iou50": metrics[table]["recall_iou50"],
                    "fallback_rate": metrics[table]["fallback_rate"],
                    "photos_per_s": speed,
                    "photos": metrics[table]["photos"],
                }
            )
    return rows


QUALITY_VARIANTS = (
    ("full_image", "vocabulary"),
    ("saliency", "vocabulary"),
    ("saliency", "oracle"),
)
QUALITY_LABELS = {
    "full_image-vocabulary": "full photo, no grounding (baseline)",
    "saliency-vocabulary": "saliency, query photos prompted with the vocabulary (no label)",
    "saliency-oracle": "saliency, ORACLE: query photos prompted with their true type",
}


def run() -> list[dict]:
    labels = {
        "dino_bare": "bare detect loop, tiny random Grounding DINO, 1 thread (baseline)",
        "dino_stage": "ground stage, tiny random Grounding DINO, 1 thread",
        "saliency_bare": "bare detect loop, saliency, 1 thread (baseline)",
        "saliency_stage": "ground stage, saliency, 1 thread",
    }
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        _prepare(Path(folder))
        measured = {}
        for name in labels:
            output = subprocess.run(
                [sys.executable, "-m", "bench.grounding_throughput", name, folder],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            measured[name] = json.loads(output.splitlines()[-1])
        for name, values in measured.items():
            baseline = measured[name.split("_")[0] + "_bare"]
            throughput = values["photos"] / values["seconds"]
            rows.append(
                {
                    "variant": labels[name],
                    "throughput": throughput,
                    "unit": "photos/s",
                    "peak_rss_mb": values["peak_rss_mb"],
                    "ratio": throughput / (baseline["photos"] / baseline["seconds"]),
                    "batch_size": BATCH_SIZE,
                    "photos": values["photos"],
                }
            )
        rows += _quality(Path(folder))
    return rows


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
