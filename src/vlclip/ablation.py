"""The retrained ablation (``make ablation``): which of VL-CLIP's inputs buys what.

The paper's question is what grounding and enrichment add to a fine-tuned CLIP. Each variant
trains its own model, from the same starting weights and on the same split, on the inputs it
names, and is evaluated on those same kinds of input (a model trained on full photos is asked
with full photos; query photos are always grounded without their label):

- ``full_raw``: full photos x raw text (the fine-tuned CLIP the others are compared with)
- ``crops_raw``: grounded crops x raw text
- ``full_enriched``: full photos x enriched text
- ``crops_enriched``: grounded crops x enriched text (VL-CLIP)

Raw text is every catalog field as it is (title, product type, category, attributes,
description), so enrichment is judged on what it writes, not on which fields it can see. Every
variant runs once per seed (model init, shuffling and augmentation all follow the seed); the
report gives per metric the mean, the standard deviation and a 95% t-interval over seeds, the
relative change against ``full_raw``, and the untrained model on the same inputs.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from vlclip.config import BUILTIN_ABLATION_VARIANTS, AblationParams, Params, TrainParams

REFERENCE = "full_raw"
"""The fine-tuned CLIP without grounding or enrichment: relative changes are against it."""
METHOD = "crops_enriched"
UNTRAINED = "untrained"
VARIANTS = BUILTIN_ABLATION_VARIANTS


def run_file_name(variant: str, seed: int) -> str:
    """One JSON per run, named as ``ablation/dvc.yaml`` names the matrix stage's output."""
    return f"{variant}-{seed}.json"


# ----------------------------------------------------------------------- one run


def train_and_evaluate(
    params: Params,
    variant: str,
    seed: int,
    views: Any,
    catalog: Any,
) -> dict[str, Any]:
    """Train one model on ``views`` with ``seed``; evaluate it and its untrained start on them."""
    from vlclip.embed import embed_catalog
    from vlclip.evaluate import evaluate_embeddings
    from vlclip.model import bundle_from_params, load_checkpoint
    from vlclip.train import train, training_pairs

    spec, model_params, train_params, _ = params.ablation_variant(variant, seed)
    use_listings = train_params.use_catalog_images
    evaluate = params.evaluate
    queries = catalog.queries_in(evaluate.split)
    probe = [views.query_images[q] for q in queries["query_id"][: train_params.batch_size]]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vlclip-ablation-") as folder:
        result = train(
            training_pairs(catalog, views, "train", use_listings),
            training_pairs(catalog, views, "val", use_listings),
            model_params,
            train_params,
            Path(folder),
        )
        trained = load_checkpoint(Path(folder), device=params.embed.device)
        trained_embeddings = embed_catalog(
            trained, catalog.items, queries, views, params.embed.batch_size,
            _frozen_layers(trained, train_params, probe),
        )
    untrained = bundle_from_params(model_params, device=params.embed.device, seed=seed)
    untrained_embeddings = embed_catalog(
        untrained, catalog.items, queries, views, params.embed.batch_size,
        _frozen_layers(untrained, train_params, probe),
    )
    return {
        "variant": variant,
        "seed": seed,
        "label": spec.label,
        "images": spec.images,
        "texts": spec.texts,
        "model": model_params.name,
        "pretrained": model_params.pretrained,
        "epochs": train_params.epochs,
        "train": {**spec.train, "lr": train_params.lr},
        "enrich": spec.enrich,
        "split": evaluate.split,
        "train_seconds": round(result.seconds, 1),
        "seconds": round(time.monotonic() - started, 1),
        "best_val_loss": result.best_val_loss,
        "metrics": evaluate_embeddings(
            trained_embeddings, evaluate.split, evaluate.ks, evaluate.ndcg_k
        ),
        "untrained": evaluate_embeddings(
            untrained_embeddings, evaluate.split, evaluate.ks, evaluate.ndcg_k
        ),
    }


def _frozen_layers(bundle: Any, train_params: TrainParams, probe: list[Path]) -> Any:
    """Evaluation reuses the frozen-feature cache training filled (same locks, same frozen
    weights, so the same cache folder)."""
    if not train_params.cache_frozen_features:
        return None
    from vlclip.features import FrozenImageLayers
    from vlclip.train import lock_towers

    lock_towers(bundle.model, train_params)
    return FrozenImageLayers.attach(
        bundle.model, bundle.preprocess_eval, bundle.device, train_params.feature_cache_dir, probe
    )


# ----------------------------------------------------------------------- summary


def interval(values: list[float], confidence: float) -> dict[str, Any]:
    """Mean, sample standard deviation and a t-interval of the mean over seeds."""
    array = np.asarray(values, dtype=float)
    count = len(array)
    mean = float(array.mean()) if count else math.nan
    if count < 2:
        return {
            "mean": mean,
            "sd": math.nan,
            "low": math.nan,
            "high": math.nan,
            "n": count,
            "values": array.tolist(),
        }
    sd = float(array.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, count - 1)) * sd / math.sqrt(count)
    return {
        "mean": mean,
        "sd": sd,
        "low": mean - half,
        "high": mean + half,
        "n": count,
        "values": array.tolist(),
    }


def _metric_values(runs: list[dict], key: str) -> dict[str, dict[str, list[float]]]:
    """task -> metric -> one value per run (seed), from each run's ``key`` block."""
    collected: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for task, metrics in run[key].items():
            for name, value in metrics.items():
                if name != "queries":
                    collected.setdefault(task, {}).setdefault(name, []).append(float(value))
    return collected


def _intervals(runs: list[dict], key: str, confidence: float) -> dict[str, dict[str, dict]]:
    return {
        task: {metric: interval(values, confidence) for metric, values in metrics.items()}
        for task, metrics in _metric_values(runs, key).items()
    }


def summarise(runs: list[dict], settings: AblationParams | None = None) -> dict[str, Any]:
    """Per variant (plus the untrained start): every metric's interval over seeds, and its
    relative change against the reference variant's mean where that was run."""
    settings = settings or AblationParams()
    by_variant: dict[str, list[dict]] = {}
    for run in sorted(runs, key=lambda r: (r["variant"], r["seed"])):
        by_variant.setdefault(run["variant"], []).append(run)
    order = [name for name in settings.variants if name in by_variant]
    order += [name for name in by_variant if name not in order]
    rows: dict[str, Any] = {}
    for name in order:
        group = by_variant[name]
        first = group[0]
        rows[name] = {
            "label": first.get("label") or settings.spec(name).label,
            "images": first.get("images") or settings.spec(name).images,
            "texts": first.get("texts") or settings.spec(name).texts,
            "model": group[0].get("model"),
            "seeds": [run["seed"] for run in group],
            "train_seconds": interval([run["train_seconds"] for run in group],
                                      settings.confidence),
            "metrics": _intervals(group, "metrics", settings.confidence),
        }
    start = settings.untrained_of if settings.untrained_of in by_variant else next(
        iter(order), None
    )
    if start is not None:
        group = by_variant[start]
        rows[UNTRAINED] = {
            "label": f"untrained start, {group[0].get('model')} "
            f"({rows[start]['label'].split(':')[-1].strip()})",
            "images": rows[start]["images"],
            "texts": rows[start]["texts"],
            "model": group[0].get("model"),
            "seeds": [run["seed"] for run in group],
            "metrics": _intervals(group, "untrained", settings.confidence),
        }
    reference = settings.reference
    if reference in rows:
        base_metrics = rows[reference]["metrics"]
        for row in rows.values():
            for task, metrics in row["metrics"].items():
                for metric, summary in metrics.items():
                    base = base_metrics.get(task, {}).get(metric, {}).get("mean")
                    summary["vs_reference"] = (summary["mean"] - base) / base if base else None
    first = runs[0] if runs else {}
    return {
        "model": first.get("model"),
        "pretrained": first.get("pretrained"),
        "epochs": first.get("epochs"),
        "split": first.get("split"),
        "confidence": settings.confidence,
        "reference": reference if reference in rows else None,
        "reference_label": rows[reference]["label"] if reference in rows else None,
        "columns": settings.columns,
        "rows": rows,
    }


def select(
    summary: dict[str, Any], rows: list[str] | None = None, columns: list[str] | None = None
) -> dict[str, Any]:
    """The summary with only ``rows`` (in that order) and ``columns``; None keeps them all."""
    unknown = [row for row in rows or [] if row not in summary["rows"]]
    if unknown:
        raise ValueError(f"--rows: no runs for {unknown}; the report has {list(summary['rows'])}")
    picked = {**summary}
    if rows:
        picked["rows"] = {row: summary["rows"][row] for row in rows}
        if summary.get("reference") not in rows:
            picked["reference"] = None
    if columns:
        picked["columns"] = columns
    return picked


def _cell(summary: dict | None) -> str:
    if not summary:
        return "n/a"
    if math.isnan(summary["low"]):
        return f"{summary['mean']:.3f}"
    return f"{summary['mean']:.3f} [{summary['low']:.3f}, {summary['high']:.3f}]"


def _change(summary: dict | None) -> str:
    change = (summary or {}).get("vs_reference")
    return "n/a" if change is None else f"{100 * change:+.0f}%"


def _seconds(summary: dict | None) -> str:
    if not summary:
        return "n/a"
    return f"{summary['mean'] / 60:.1f}"


def markdown_table(summary: dict[str, Any]) -> str:
    """Two tables: mean [95% interval] per column, then the change against the reference."""
    columns = [tuple(column.split(".", 1)) for column in summary["columns"]]
    header = ["variant", *[f"{task} {metric}" for task, metric in columns], "train min"]
    rule = "|" + "---|" * len(header)
    lines = ["| " + " | ".join(header) + " |", rule]
    changes = ["| " + " | ".join(header[:-1]) + " |", "|" + "---|" * (len(header) - 1)]
    for row in summary["rows"].values():
        cells = [row["metrics"].get(task, {}).get(metric) for task, metric in columns]
        seconds = _seconds(row.get("train_seconds"))
        lines.append("| " + " | ".join([row["label"], *map(_cell, cells), seconds]) + " |")
        changes.append("| " + " | ".join([row["label"], *map(_change, cells)]) + " |")
    seeds = sorted({seed for row in summary["rows"].values() for seed in row["seeds"]})
    models = sorted({str(row.get("model")) for row in summary["rows"].values()})
    caption = (
        f"Retrained ablation: model {', '.join(f'`{m}`' for m in models)}, "
        f"{summary['epochs']} epochs per run, seeds {seeds}, `{summary['split']}` split. "
        f"Mean over seeds [{round(100 * summary['confidence'])}% t-interval]; train min: mean "
        "training wall time per run."
    )
    parts = [caption, "", *lines]
    if summary.get("reference"):
        parts += [
            "",
            f"Relative change of the mean against `{summary['reference']}` "
            f"({summary['reference_label']}):",
            "",
            *changes,
        ]
    return "\n".join(parts)
