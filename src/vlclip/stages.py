"""Each pipeline stage as one function over folders: what the CLI, dvc.yaml and Airflow run.

The library modules hold the logic (pure functions over tables and tensors); these functions
only read a stage's inputs, call them, and write its outputs in the standard layout.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from vlclip.catalog.schema import (
    ITEMS_FILE,
    MANIFEST_FILE,
    QUARANTINE_FILE,
    QUERIES_FILE,
    Catalog,
    Manifest,
    load_catalog,
)
from vlclip.config import Params
from vlclip.io import atomic_dir, atomic_write_text, write_json

if TYPE_CHECKING:
    from vlclip.embed import CatalogViews
    from vlclip.train import TrainResult

# torch, open_clip, faiss and Great Expectations take seconds to import: each stage imports
# only what it uses, inside its function.

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """Where each stage reads and writes; the defaults are the documented artifact layout."""

    catalog: Path = Path("data/catalog")
    validated: Path = Path("data/validated")
    crops: Path = Path("data/crops")
    enriched: Path = Path("data/enriched")
    models: Path = Path("models")
    embeddings: Path = Path("data/embeddings")
    index: Path = Path("index")
    reports: Path = Path("reports")
    ablation_runs: Path = Path("reports/ablation/runs")
    champion: Path = Path("champion")
    reference: Path = Path("data/reference")


class GateFailed(RuntimeError):
    """The data gate rejected the catalog; downstream stages must not run."""


def run_ingest(params: Params, layout: Layout) -> Manifest:
    from vlclip.catalog.ingest import describe, ingest

    manifest = ingest(params.ingest, layout.catalog)
    write_json(layout.reports / "ingest.json", json.loads(manifest.to_json()))
    log.info(describe(manifest, layout.catalog))
    return manifest


def run_validate(params: Params, layout: Layout) -> dict:
    """Run the Great Expectations gate; publish the catalog to ``validated`` only if it passes."""
    from vlclip.validate import validate_catalog

    catalog = load_catalog(layout.catalog)
    outcome = validate_catalog(catalog, params.validate_params, layout.reports / "validation")
    if not outcome.success:
        raise GateFailed(
            "data validation failed; nothing downstream will run. Failed expectations:\n  - "
            + "\n  - ".join(outcome.failed)
            + f"\nDetails: {layout.reports / 'validation'}"
        )
    with atomic_dir(layout.validated) as staging:
        for name in (ITEMS_FILE, QUERIES_FILE, QUARANTINE_FILE):
            shutil.copy2(layout.catalog / name, staging / name)
        image_root = Path(catalog.manifest.image_root)
        if not image_root.is_absolute():  # keep relative roots relative, so folders can move
            image_root = Path(os.path.relpath(layout.catalog / image_root, layout.validated))
        manifest = Manifest(**{**catalog.manifest.__dict__, "image_root": str(image_root)})
        (staging / MANIFEST_FILE).write_text(manifest.to_json() + "\n")
    return outcome.summary


def run_ground(params: Params, layout: Layout) -> pd.DataFrame:
    """Crop every photo to its product; score the crops against true boxes where known."""
    from vlclip.ground import ground, write_grounding_report

    catalog = load_catalog(layout.validated)
    boxes = ground(catalog, params.ground, layout.crops)
    write_grounding_report(catalog, boxes, params.ground, layout.crops, layout.reports)
    return boxes


def run_enrich(params: Params, layout: Layout) -> pd.DataFrame:
    """Product texts; the Claude agent also looks at the grounded crops when they exist."""
    from vlclip.enrich import enrich

    crops = layout.crops if layout.crops.is_dir() else None
    result = enrich(load_catalog(layout.validated), params.enrich, layout.enriched, crops)
    write_json(layout.reports / "enrich.json", result.report)
    return result.texts


def pipeline_views(layout: Layout) -> CatalogViews:
    """Grounded crops and enriched texts: what the model trains and is evaluated on."""
    from vlclip.artifacts import load_crop_paths, load_texts
    from vlclip.embed import CatalogViews

    item_crops, query_crops = load_crop_paths(layout.crops)
    return CatalogViews(item_crops, query_crops, load_texts(layout.enriched))


def run_train(params: Params, layout: Layout) -> TrainResult:
    from vlclip.train import train, training_pairs

    catalog = load_catalog(layout.validated)
    views = pipeline_views(layout)
    use = params.train.use_catalog_images
    result = train(
        training_pairs(catalog, views, "train", use),
        training_pairs(catalog, views, "val", use),
        params.model,
        params.train,
        layout.models,
        live_dir=layout.reports / "train",
    )
    log.info(
        "trained %d epochs (%d steps) in %.0f s; best val loss %.4f",
        result.epochs_run,
        result.steps,
        result.seconds,
        result.best_val_loss,
    )
    return result


def run_embed(
    params: Params, layout: Layout, catalog_dir: Path | None = None, out_dir: Path | None = None
) -> Path:
    """Embed the pipeline's catalog (grounded crops, enriched texts), or any catalog folder.

    A catalog folder from ``vlclip ingest`` elsewhere is embedded as it is: its own photos and
    titles, with the current model.
    """
    from vlclip.embed import check_output_folder, embed_catalog, original_views, save_embeddings
    from vlclip.model import load_checkpoint

    catalog = load_catalog(catalog_dir or layout.validated)
    target = out_dir or layout.embeddings
    check_output_folder(target, [catalog.root, catalog.image_root, layout.models])
    views = original_views(catalog) if catalog_dir else pipeline_views(layout)
    bundle = load_checkpoint(layout.models, device=params.embed.device)
    embeddings = embed_catalog(
        bundle, catalog.items, catalog.queries, views, params.embed.batch_size
    )
    save_embeddings(embeddings, target)
    log.info(
        "embedded %d items and %d query photos -> %s",
        len(catalog.items),
        len(catalog.queries),
        target,
    )
    return target


def run_evaluate(params: Params, layout: Layout) -> dict:
    """Metrics of the trained model beside the weights it started from, on the same inputs.

    Both search the whole catalog (every listing and every item text), as a shop would.
    """
    from vlclip.embed import embed_catalog, load_embeddings
    from vlclip.evaluate import evaluate_embeddings
    from vlclip.model import bundle_from_params

    catalog = load_catalog(layout.validated)
    split, ks, ndcg_k = params.evaluate.split, params.evaluate.ks, params.evaluate.ndcg_k
    trained = load_embeddings(layout.embeddings)
    start = bundle_from_params(params.model, device=params.embed.device, seed=params.train.seed)
    baseline = embed_catalog(
        start,
        catalog.items,
        catalog.queries_in(split),
        pipeline_views(layout),
        params.embed.batch_size,
    )
    results = {
        "split": split,
        "model": evaluate_embeddings(trained, split, ks, ndcg_k),
        "baseline": evaluate_embeddings(baseline, split, ks, ndcg_k),
        "baseline_kind": "pretrained" if params.model.pretrained else "untrained",
    }
    write_json(layout.reports / "metrics.json", results)
    _write_hits_plot(trained, baseline, split, ndcg_k, layout.reports / "plots")
    return results


def ablation_views(
    catalog: Catalog, layout: Layout, variant: str, params: Params | None = None
) -> CatalogViews:
    """The images and texts one ablation variant trains and is evaluated on. A variant that
    changes ``enrich`` settings gets its texts written afresh (into a temporary folder)."""
    from vlclip.artifacts import load_texts
    from vlclip.embed import CatalogViews, original_views
    from vlclip.enrich import enrich

    params = params or Params()
    spec, _, _, enrich_params = params.ablation_variant(variant, 0)
    images = {"full": lambda: original_views(catalog), "crops": lambda: pipeline_views(layout)}[
        spec.images
    ]()
    column = {"raw": "raw_text", "enriched": "text"}[spec.texts]
    if not spec.enrich:
        texts = load_texts(layout.enriched, column)
    else:
        with tempfile.TemporaryDirectory(prefix="vlclip-texts-") as folder:
            enrich(catalog, enrich_params, Path(folder) / "enriched", layout.crops)
            texts = load_texts(Path(folder) / "enriched", column)
    return CatalogViews(images.item_images, images.query_images, texts)


def run_ablation_variant(params: Params, layout: Layout, variant: str, seed: int) -> dict:
    """Train and evaluate one (variant, seed) of the retrained ablation; one JSON per run."""
    from vlclip.ablation import run_file_name, train_and_evaluate

    if variant not in params.ablation.variants:
        raise ValueError(
            f"ablation variant {variant!r} is not in ablation.variants "
            f"({params.ablation.variants})"
        )
    catalog = load_catalog(layout.validated)
    record = train_and_evaluate(
        params, variant, seed, ablation_views(catalog, layout, variant, params), catalog
    )
    write_json(layout.ablation_runs / run_file_name(variant, seed), record)
    return record


def run_ablation_report(params: Params, layout: Layout) -> dict:
    """Collect the runs that ``ablation`` params ask for into reports/ablation.{json,md}."""
    from vlclip.ablation import markdown_table, run_file_name, summarise

    settings = params.ablation
    wanted = [
        layout.ablation_runs / run_file_name(variant, seed)
        for variant in settings.variants
        for seed in settings.seeds
    ]
    missing = [path.name for path in wanted if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"ablation runs missing in {layout.ablation_runs}: {', '.join(missing)} "
            "(run `make ablation`, or `dvc repro ablation/dvc.yaml`)"
        )
    summary = summarise([json.loads(path.read_text()) for path in wanted], settings)
    write_json(layout.reports / "ablation.json", summary)
    atomic_write_text(layout.reports / "ablation.md", markdown_table(summary) + "\n")
    return summary


def _write_hits_plot(trained, baseline, split: str, max_k: int, folder: Path) -> None:
    from vlclip.evaluate import hits_curve

    model_curves, base_curves = (
        hits_curve(trained, split, max_k),
        hits_curve(baseline, split, max_k),
    )
    frame = pd.DataFrame({"k": np.arange(1, max_k + 1)})
    for task in model_curves:
        frame[f"model_{task}"] = model_curves[task]
        frame[f"baseline_{task}"] = base_curves[task]
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "hits_at_k.csv", index=False)


def run_index(params: Params, layout: Layout) -> int:
    from vlclip.embed import load_embeddings
    from vlclip.index import build_index

    catalog = load_catalog(layout.validated)
    return build_index(
        load_embeddings(layout.embeddings), catalog.items, params.index, layout.index
    )


def run_promote(params: Params, layout: Layout) -> dict:
    """Compare the new model with the champion on the same evaluation set; keep the better.

    The champion is re-evaluated on the current catalog, crops and texts, so both scores come
    from one evaluation set. Writes reports/promotion.json; replaces champion/ only on a win.
    """
    from vlclip.embed import embed_catalog
    from vlclip.evaluate import evaluate_embeddings
    from vlclip.model import CARD_FILE, load_checkpoint
    from vlclip.promote import decide, headline, install_champion

    evaluate = params.evaluate
    challenger = json.loads((layout.reports / "metrics.json").read_text())["model"]
    champion_models = layout.champion / "models"
    champion_metrics = None
    if (champion_models / CARD_FILE).is_file():
        catalog = load_catalog(layout.validated)
        bundle = load_checkpoint(champion_models, device=params.embed.device)
        embeddings = embed_catalog(
            bundle,
            catalog.items,
            catalog.queries_in(evaluate.split),
            pipeline_views(layout),
            params.embed.batch_size,
        )
        champion_metrics = evaluate_embeddings(
            embeddings, evaluate.split, evaluate.ks, evaluate.ndcg_k
        )
    metric = params.promote.metric
    decision = decide(
        headline(challenger, metric),
        headline(champion_metrics, metric) if champion_metrics is not None else None,
        params.promote,
    )
    if decision.promoted:
        install_champion(
            layout.champion, layout.models, layout.index, challenger, decision, layout.reference
        )
    report = {
        **decision.as_dict(),
        "split": evaluate.split,
        "challenger_metrics": challenger,
        "champion_metrics": champion_metrics,
    }
    write_json(layout.reports / "promotion.json", report)
    log.info("promotion: %s (%s)", decision.decision, decision.reason)
    return report


def run_snapshot(params: Params, layout: Layout) -> Path:
    """The reference snapshot of the trained model: features and embeddings of a sample of the
    catalog it was trained and evaluated on (``promote`` keeps it beside the champion)."""
    from vlclip.artifacts import BOXES_FILE
    from vlclip.monitor.snapshot import save_snapshot, snapshot_of

    boxes_file = layout.crops / BOXES_FILE
    snapshot = snapshot_of(
        load_catalog(layout.validated),
        pd.read_parquet(boxes_file) if boxes_file.is_file() else None,
        layout.models,
        params.monitor,
        params.monitor.reference_sample,
        params.embed.batch_size,
        params.embed.device,
    )
    save_snapshot(snapshot, layout.reference)
    log.info(
        "reference snapshot: %d items, %d photos, model %s -> %s",
        len(snapshot.items),
        len(snapshot.photos),
        snapshot.meta["model_version"],
        layout.reference,
    )
    return layout.reference


def monitor_run_dir(params: Params, run_id: str) -> Path:
    from vlclip.monitor.steps import safe_run_id

    return Path(params.monitor.output_dir) / safe_run_id(run_id)


def run_monitor_snapshot(
    params: Params,
    layout: Layout,
    run_id: str,
    catalog_path: Path | None = None,
    simulate_drift: bool = False,
) -> Path:
    """Snapshot a catalog drop with the champion: ``--catalog`` or the pipeline's catalog,
    optionally shifted by the drift simulation."""
    from vlclip.io import atomic_dir
    from vlclip.monitor.simulate import simulate_drift as make_drifted
    from vlclip.monitor.snapshot import save_snapshot, snapshot_of
    from vlclip.monitor.steps import ground_sample, ingest_drop, reference_of

    run_dir = monitor_run_dir(params, run_id)
    reference = reference_of(layout.champion)
    if catalog_path is not None:
        catalog = ingest_drop(catalog_path, run_dir / "catalog", params.ingest)
        described = str(catalog_path)
    else:
        catalog = load_catalog(layout.validated)
        described = f"pipeline catalog ({layout.validated})"
    if simulate_drift:
        drifted = make_drifted(catalog, run_dir / "catalog-drifted", seed=params.monitor.seed)
        catalog, described = load_catalog(drifted), f"simulated drift of {described}"
    sample = params.monitor.current_sample
    boxes = ground_sample(catalog, params.ground, params.monitor, sample)
    snapshot = snapshot_of(
        catalog,
        boxes,
        layout.champion / "models",
        params.monitor,
        sample,
        params.embed.batch_size,
        params.embed.device,
        reference=reference,
    )
    snapshot.meta["catalog"] = described
    with atomic_dir(run_dir / "current") as staging:
        save_snapshot(snapshot, staging)
    log.info("snapshot of %s: %d items, %d photos", described, len(snapshot.items),
             len(snapshot.photos))
    return run_dir / "current"


def run_monitor_compare(params: Params, layout: Layout, run_id: str) -> dict:
    """Evidently reports of the run's snapshot against the champion's reference."""
    from vlclip.monitor.drift import compare, save_comparison
    from vlclip.monitor.snapshot import load_snapshot
    from vlclip.monitor.steps import reference_of

    run_dir = monitor_run_dir(params, run_id)
    current = load_snapshot(run_dir / "current")
    comparison = compare(
        reference_of(layout.champion), current, params.monitor, run_id,
        current.meta.get("catalog", "?"),
    )
    save_comparison(comparison, run_dir)
    return comparison.summary


def run_monitor_report(params: Params) -> Path:
    """Rebuild monitoring/index.html from every run."""
    from vlclip.monitor.history import write_index

    return write_index(Path(params.monitor.output_dir))


def run_monitor_alert(params: Params, run_id: str, targets: list[str]) -> dict | None:
    """Alert on-call when the run drifted (deduplicated, retried, logged)."""
    from vlclip.monitor.steps import alert_run

    return alert_run(
        monitor_run_dir(params, run_id), params.monitor, targets, Path(params.monitor.output_dir)
    )


def serving_folders(layout: Layout) -> tuple[Path, Path]:
    """The model and index that recommend and search use: the champion's when there is one."""
    if (layout.champion / "index").is_dir() and (layout.champion / "models").is_dir():
        return layout.champion / "models", layout.champion / "index"
    return layout.models, layout.index


def recommend(item_id: str, k: int, layout: Layout) -> pd.DataFrame:
    from vlclip.index import CatalogIndex

    return CatalogIndex.load(serving_folders(layout)[1]).similar(item_id, k)


def search_text(query: str, k: int, params: Params, layout: Layout) -> pd.DataFrame:
    from vlclip.embed import embed_texts
    from vlclip.index import CatalogIndex
    from vlclip.model import load_checkpoint

    models, index = serving_folders(layout)
    bundle = load_checkpoint(models, device=params.embed.device)
    vector = embed_texts(bundle, [query], batch_size=1, desc="embedding query")
    return CatalogIndex.load(index).search(vector[0], k)
