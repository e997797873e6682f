"""Compare a catalog drop's snapshot with the champion's reference using Evidently 0.7.

Six signals, each with the method and threshold from ``params.yaml``'s ``monitor`` section:

- catalog features: ``DataDriftPreset`` on product type, category, title and description
  length, attribute fill rate, image size, brightness, contrast, sharpness and grounding;
- titles and descriptions: text descriptors (characters, words, share of non-letters);
- query photos: the same image and grounding features of the shoppers' photos;
- image embeddings and text embeddings: ``EmbeddingsDrift`` on the champion's vectors
  (declared in ``DataDefinition(embeddings=...)``; the preset alone ignores them);
- retrieval confidence: each item's top-1 similarity to the reference catalog.

A table-like signal drifts when the share of its drifted columns reaches
``monitor.drift_share``; the run drifts when any signal does.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from vlclip.config import MonitorParams
from vlclip.monitor.features import (
    ITEM_CATEGORICAL,
    ITEM_NUMERIC,
    PHOTO_CATEGORICAL,
    PHOTO_NUMERIC,
)
from vlclip.monitor.snapshot import Snapshot

SIMILARITY = "top1_similarity"
DESCRIPTORS = {
    "title_characters": ("TextLength", "title"),
    "title_words": ("WordCount", "title"),
    "description_words": ("WordCount", "description"),
    "description_non_letters": ("NonLetterCharacterPercentage", "description"),
}
"""Text descriptors that need no downloaded data (no nltk corpora, no models)."""
EMBEDDINGS = {"image embeddings": ("image", "img_"), "text embeddings": ("text", "txt_")}


@dataclass
class Comparison:
    summary: dict
    """Signals, per-column results, ``drift_share`` and ``drift_detected``."""
    items_report: object
    """Evidently snapshot of the items (save_html)."""
    photos_report: object


def _quiet() -> None:
    """Evidently's classifiers and tests warn on constant columns and small samples; the
    summary states what each test found, so the warnings only add noise."""
    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warnings.filterwarnings("ignore", category=RuntimeWarning)


def _embedding_method(params: MonitorParams):
    """The configured method with a fixed threshold (no bootstrap: ``score > threshold`` is
    drift, so the summary can state both)."""
    from evidently.metrics.embeddings import (
        DistanceDriftMethod,
        MMDDriftMethod,
        ModelDriftMethod,
        RatioDriftMethod,
    )

    threshold = params.embedding_threshold
    return {
        "model": lambda: ModelDriftMethod(threshold=threshold, bootstrap=False),
        "distance": lambda: DistanceDriftMethod(threshold=threshold, bootstrap=False),
        "mmd": lambda: MMDDriftMethod(threshold=threshold, bootstrap=False),
        "ratio": lambda: RatioDriftMethod(
            component_stattest="ks", component_stattest_threshold=0.05, threshold=threshold
        ),
    }[params.embedding_method]()


def _items_frame(snapshot: Snapshot) -> pd.DataFrame:
    frame = snapshot.items.reset_index(drop=True).copy()
    for _, (vectors, prefix) in EMBEDDINGS.items():
        matrix = getattr(snapshot, vectors)
        frame = pd.concat(
            [frame, pd.DataFrame(matrix, columns=[f"{prefix}{i}" for i in range(matrix.shape[1])])],
            axis=1,
        )
    return frame


FEW_VALUES_METHOD = "jensenshannon"
"""For image sizes: Evidently's automatic choice for a numeric column with few distinct values
is chi-square, which divides by zero (p = 0, drift) when the drop has a size the reference
lacks."""


def _column_kwargs(params: MonitorParams, columns: list[str], text: list[str]) -> dict:
    methods = {column: params.text_stattest for column in text if params.text_stattest}
    thresholds = {}
    if params.tabular_stattest:
        methods |= {column: params.tabular_stattest for column in columns}
    else:
        methods |= {c: FEW_VALUES_METHOD for c in ("image_width", "image_height") if c in columns}
    if params.tabular_threshold is not None:
        thresholds = dict.fromkeys(columns, params.tabular_threshold)
    return {"per_column_method": methods or None, "per_column_threshold": thresholds or None}


def _usable(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[str]:
    """Columns with at least one value (an ungrounded drop has no grounding score)."""
    return [c for c in columns if c in frame.columns and frame[c].notna().any()]


def _limit_embedding_plot(rows: int) -> None:
    """Evidently draws each embedding set as a t-SNE map of up to a module-level number of rows
    per side; at its default (2500) the map costs minutes. Only the picture uses it."""
    from evidently.legacy.metrics.data_drift import embeddings_drift

    embeddings_drift.SAMPLE_CONSTANT = rows


def _items_report(reference: Snapshot, current: Snapshot, params: MonitorParams):
    from evidently import DataDefinition, Dataset, Report, descriptors
    from evidently.metrics import EmbeddingsDrift, ValueDrift
    from evidently.presets import DataDriftPreset
    from evidently.tests import lte

    ref, cur = _items_frame(reference), _items_frame(current)
    numeric = [c for c in _usable(ref, ITEM_NUMERIC) if c in _usable(cur, ITEM_NUMERIC)]
    categorical = list(ITEM_CATEGORICAL)
    embeddings = {
        vectors: [c for c in ref.columns if c.startswith(prefix)]
        for vectors, prefix in EMBEDDINGS.values()
    }
    definition = DataDefinition(
        id_column="item_id",
        numerical_columns=[*numeric, SIMILARITY],
        categorical_columns=categorical,
        text_columns=["title", "description"],
        embeddings=embeddings,
    )
    described = [
        getattr(descriptors, kind)(column, alias=alias)
        for alias, (kind, column) in DESCRIPTORS.items()
    ]
    text_columns = list(DESCRIPTORS)
    columns = [*numeric, *categorical]
    method = _embedding_method(params)
    metrics = [
        DataDriftPreset(
            columns=[*columns, *text_columns],
            drift_share=params.drift_share,
            **_column_kwargs(params, columns, text_columns),
        ),
        ValueDrift(
            column=SIMILARITY,
            method=params.similarity_stattest,
            threshold=params.similarity_threshold,
        ),
        *(
            EmbeddingsDrift(
                embeddings_name=name, drift_method=method, tests=[lte(params.embedding_threshold)]
            )
            for name in embeddings
        ),
    ]
    report = Report(metrics, include_tests=True)
    _limit_embedding_plot(params.embedding_plot_sample)
    snapshot = report.run(
        Dataset.from_pandas(cur, data_definition=definition, descriptors=described),
        Dataset.from_pandas(ref, data_definition=definition, descriptors=described),
    )
    return snapshot, columns, text_columns


def _photos_report(reference: Snapshot, current: Snapshot, params: MonitorParams):
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = [
        c
        for c in _usable(reference.photos, PHOTO_NUMERIC)
        if c in _usable(current.photos, PHOTO_NUMERIC)
    ]
    columns = [*numeric, *PHOTO_CATEGORICAL]
    definition = DataDefinition(
        id_column="query_id", numerical_columns=numeric, categorical_columns=list(PHOTO_CATEGORICAL)
    )
    report = Report(
        [
            DataDriftPreset(
                columns=columns, drift_share=params.drift_share,
                **_column_kwargs(params, columns, []),
            )
        ],
        include_tests=True,
    )
    snapshot = report.run(
        Dataset.from_pandas(current.photos, data_definition=definition),
        Dataset.from_pandas(reference.photos, data_definition=definition),
    )
    return snapshot, columns


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _results(snapshot) -> tuple[dict[str, dict], dict[str, dict]]:
    """Per-column drift and per-embedding drift from an Evidently snapshot's dict."""
    data = snapshot.dict()
    failed: dict[str, bool] = {}
    for test in data.get("tests", []):
        metric = test["metric_config"]["metric_id"]
        failed[metric] = failed.get(metric, False) or test["status"] == "FAIL"
    columns: dict[str, dict] = {}
    embeddings: dict[str, dict] = {}
    for metric in data["metrics"]:
        config, kind = metric["config"], metric["config"]["type"].rsplit(":", 1)[-1]
        if kind == "ValueDrift":
            columns[config["column"]] = {
                "score": _number(metric["value"]),
                "method": config["method"],
                "threshold": config["threshold"],
                "drift_detected": failed.get(metric["id"], False),
            }
        elif kind == "EmbeddingsDrift":
            method = config.get("drift_method") or {}
            embeddings[config["embeddings_name"]] = {
                "score": _number(metric["value"]),
                "method": method.get("type", "").rsplit(":", 1)[-1],
                "threshold": method.get("threshold"),
                "drift_detected": failed.get(metric["id"], False),
            }
    return columns, embeddings


def _table_signal(name: str, columns: list[str], results: dict[str, dict], share: float) -> dict:
    drifted = [c for c in columns if results.get(c, {}).get("drift_detected")]
    score = len(drifted) / len(columns) if columns else 0.0
    return {
        "name": name,
        "score": score,
        "method": "share of drifted columns",
        "threshold": share,
        "drift_detected": bool(columns) and score >= share,
        "drifted_columns": drifted,
    }


def compare(
    reference: Snapshot, current: Snapshot, params: MonitorParams, run_id: str, catalog: str
) -> Comparison:
    """Run both reports and summarise them as signals."""
    from threadpoolctl import threadpool_limits

    # one thread: Evidently's t-SNE maps and classifiers run faster and steadier than with
    # OpenMP threads contending on a small machine
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        _quiet()
        items, columns, text_columns = _items_report(reference, current, params)
        photos, photo_columns = _photos_report(reference, current, params)
    item_results, embedding_results = _results(items)
    photo_results, _ = _results(photos)
    similarity = item_results.pop(SIMILARITY)
    signals = [
        _table_signal("catalog features", columns, item_results, params.drift_share),
        _table_signal("titles and descriptions", text_columns, item_results, params.drift_share),
        _table_signal("query photos", photo_columns, photo_results, params.drift_share),
        *(
            {"name": name, **embedding_results[vectors]}
            for name, (vectors, _) in EMBEDDINGS.items()
        ),
        {
            "name": "retrieval confidence",
            **similarity,
            "reference_mean": _number(np.nanmean(reference.items[SIMILARITY])),
            "current_mean": _number(np.nanmean(current.items[SIMILARITY])),
        },
    ]
    drifted = sum(signal["drift_detected"] for signal in signals)
    summary = {
        "run_id": run_id,
        "created": datetime.now(UTC).isoformat(),
        "catalog": catalog,
        "model_version": reference.meta.get("model_version"),
        "current_model_version": current.meta.get("model_version"),
        "reference_items": len(reference.items),
        "current_items": len(current.items),
        "reference_photos": len(reference.photos),
        "current_photos": len(current.photos),
        "signals": signals,
        "columns": item_results,
        "photo_columns": photo_results,
        "drift_share": drifted / len(signals),
        "drift_detected": drifted > 0,
        "retrain_recommended": drifted / len(signals) >= params.retrain_share,
    }
    return Comparison(summary, items, photos)


def save_comparison(comparison: Comparison, run_dir: Path) -> None:
    from vlclip.io import write_json

    run_dir.mkdir(parents=True, exist_ok=True)
    comparison.items_report.save_html(str(run_dir / "report.html"))
    comparison.photos_report.save_html(str(run_dir / "photos.html"))
    write_json(run_dir / "summary.json", comparison.summary)
