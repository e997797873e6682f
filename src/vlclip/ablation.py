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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from vlclip.config import Params

REFERENCE = "full_raw"
"""The fine-tuned CLIP without grounding or enrichment: relative changes are against it."""
METHOD = "crops_enriched"
UNTRAINED = "untrained"
HEADLINE = (
    ("image_to_catalog", "hits@5"),
    ("image_to_catalog", "mrr"),
    ("text_to_image", "hits@5"),
    ("text_to_image", "mrr"),
    ("image_to_image", "hits@5"),
    ("zero_shot", "accuracy"),
)
"""The (task, metric) columns of the Markdown table; the JSON holds every metric."""


@dataclass(frozen=True)
class InputVariant:
    """Which images and which texts a variant trains and is evaluated on."""

    images: str  # "full" (the photos as they are) or "crops" (grounded)
    texts: str  # "raw" (catalog fields verbatim) or "enriched"
    label: str


VARIANTS: dict[str, InputVariant] = {
    "full_raw": InputVariant("full", "raw", "fine-tuned CLIP: full photos, raw text"),
    "crops_raw": InputVariant("crops", "raw", "+ grounding: crops, raw text"),
    "full_enriched": InputVariant("full", "enriched", "+ enrichment: full photos, enriched text"),
    "crops_enriched": InputVariant("crops", "enriched", "VL-CLIP: crops, enriched text"),
}


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

    settings = params.ablation
    train_params = params.train.model_copy(
        update={
            "epochs": settings.epochs,
            "batch_size": settings.batch_size,
            "lr": settings.lr,
            "seed": seed,
            "max_train_minutes": 0.0,  # a clock-dependent stop is not reproducible
        }
    )
    use_listings = train_params.use_catalog_images
    evaluate = params.evaluate
    queries = catalog.queries_in(evaluate.split)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vlclip-ablation-") as folder:
        result = train(
            training_pairs(catalog, views, "train", use_listings),
            training_pairs(catalog, views, "val", use_listings),
            settings.model,
            train_params,
            Path(folder),
        )
        trained = load_checkpoint(Path(folder), device=params.embed.device)
        trained_embeddings = embed_catalog(
            trained, catalog.items, queries, views, params.embed.batch_size
        )
    untrained = bundle_from_params(settings.model, device=params.embed.device, seed=seed)
    untrained_embeddings = embed_catalog(
        untrained, catalog.items, queries, views, params.embed.batch_size
    )
    return {
        "variant": variant,
        "seed": seed,
        "images": VARIANTS[variant].images,
        "texts": VARIANTS[variant].texts,
        "model": settings.model.name,
        "pretrained": settings.model.pretrained,
        "epochs": settings.epochs,
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


def summarise(runs: list[dict], confidence: float) -> dict[str, Any]:
    """Per variant (plus the untrained start): every metric's interval over seeds, and its
    relative change against the fine-tuned ``full_raw`` row where that was run."""
    by_variant: dict[str, list[dict]] = {}
    for run in sorted(runs, key=lambda r: (r["variant"], r["seed"])):
        by_variant.setdefault(run["variant"], []).append(run)
    rows: dict[str, Any] = {}
    for name in [v for v in VARIANTS if v in by_variant]:
        group = by_variant[name]
        rows[name] = {
            "label": VARIANTS[name].label,
            "images": VARIANTS[name].images,
            "texts": VARIANTS[name].texts,
            "seeds": [run["seed"] for run in group],
            "train_seconds": interval([run["train_seconds"] for run in group], confidence),
            "metrics": _intervals(group, "metrics", confidence),
        }
    start = METHOD if METHOD in by_variant else next(iter(by_variant), None)
    if start is not None:
        group = by_variant[start]
        rows[UNTRAINED] = {
            "label": f"untrained start ({VARIANTS[start].label.split(':')[-1].strip()})",
            "images": VARIANTS[start].images,
            "texts": VARIANTS[start].texts,
            "seeds": [run["seed"] for run in group],
            "metrics": _intervals(group, "untrained", confidence),
        }
    if REFERENCE in rows:
        reference = rows[REFERENCE]["metrics"]
        for row in rows.values():
            for task, metrics in row["metrics"].items():
                for metric, summary in metrics.items():
                    base = reference.get(task, {}).get(metric, {}).get("mean")
                    summary["vs_reference"] = (summary["mean"] - base) / base if base else None
    first = runs[0] if runs else {}
    return {
        "model": first.get("model"),
        "pretrained": first.get("pretrained"),
        "epochs": first.get("epochs"),
        "split": first.get("split"),
        "confidence": confidence,
        "reference": REFERENCE,
        "rows": rows,
    }


def _cell(summary: dict | None) -> str:
    if not summary:
        return "n/a"
    if math.isnan(summary["low"]):
        return f"{summary['mean']:.3f}"
    return f"{summary['mean']:.3f} [{summary['low']:.3f}, {summary['high']:.3f}]"


def _change(summary: dict | None) -> str:
    change = (summary or {}).get("vs_reference")
    return "n/a" if change is None else f"{100 * change:+.0f}%"


def markdown_table(summary: dict[str, Any]) -> str:
    """Two tables: mean [95% interval] per headline metric, then change against full_raw."""
    header = ["variant", *[f"{task} {metric}" for task, metric in HEADLINE]]
    rule = "|" + "---|" * len(header)
    lines = ["| " + " | ".join(header) + " |", rule]
    changes = ["| " + " | ".join(header) + " |", rule]
    for row in summary["rows"].values():
        cells = [row["metrics"].get(task, {}).get(metric) for task, metric in HEADLINE]
        lines.append("| " + " | ".join([row["label"], *map(_cell, cells)]) + " |")
        changes.append("| " + " | ".join([row["label"], *map(_change, cells)]) + " |")
    seeds = sorted({seed for row in summary["rows"].values() for seed in row["seeds"]})
    caption = (
        f"Retrained ablation: `{summary['model']}` "
        f"({'pretrained ' + str(summary['pretrained']) if summary['pretrained'] else 'random init'}"
        f"), {summary['epochs']} epochs per run, seeds {seeds}, `{summary['split']}` split. "
        f"Mean over seeds [{round(100 * summary['confidence'])}% t-interval]."
    )
    return "\n".join(
        [
            caption,
            "",
            *lines,
            "",
            f"Relative change of the mean against `{summary['reference']}` (fine-tuned CLIP):",
            "",
            *changes,
        ]
    )
