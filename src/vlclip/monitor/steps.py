"""The monitor's steps, each a plain function over files, so the CLI runs them in one go and the
drift-monitor DAG runs them as separate tasks: snapshot -> compare -> report -> alert.

Layout of one run, under ``monitor.output_dir`` (default ``monitoring/``)::

    <run-id>/catalog/        the drop as ingested (only when it came from --catalog or a simulation)
    <run-id>/current/        its snapshot: features, embeddings, top-1 similarities
    <run-id>/report.html     Evidently's report
    <run-id>/summary.json    what drifted, by how much, against which model
    index.html, history.json every run, with the drift scores over time
    alerts.jsonl             every alert raised or suppressed, and its deliveries
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from vlclip.catalog.schema import Catalog, load_catalog
from vlclip.config import GroundParams, IngestParams, MonitorParams, TableSource
from vlclip.monitor.snapshot import Snapshot, load_snapshot, sample_rows

log = logging.getLogger(__name__)

REFERENCE_FOLDER = "reference"
"""Where the reference snapshot lives beside the model it was made with (``champion/``)."""
SUMMARY = "summary.json"
REPORT = "report.html"


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def safe_run_id(run_id: str) -> str:
    """A run id usable as a folder name (Airflow's contain ``:`` and ``+``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)


def ingest_drop(path: Path, out_dir: Path, ingest: IngestParams) -> Catalog:
    """A new catalog drop read through the pipeline's own sources.

    ``path`` is a catalog folder already ingested (``catalog.json``), a GroceryStore-style
    folder (``dataset/classes.csv``), or a table (CSV, Parquet, JSON lines) whose image paths are
    relative to the table's folder.
    """
    from vlclip.catalog.ingest import ingest as run_ingest
    from vlclip.catalog.schema import MANIFEST_FILE
    from vlclip.config import GroceryStoreSource

    path = Path(path)
    if (path / MANIFEST_FILE).is_file():
        return load_catalog(path)
    if (path / "dataset" / "classes.csv").is_file():
        source = GroceryStoreSource(kind="grocery_store", root=path)
    elif path.is_file():
        source = TableSource(kind="table", path=path, image_root=path.parent)
    else:
        raise FileNotFoundError(
            f"--catalog {path}: not a catalog folder, a GroceryStore folder or a table file"
        )
    run_ingest(ingest.model_copy(update={"source": source}), out_dir)
    return load_catalog(out_dir)


def ground_sample(
    catalog: Catalog, params: GroundParams, monitor: MonitorParams, sample: int
) -> pd.DataFrame:
    """Grounding outcome (score, fallback) of the sampled records, with the pipeline's detector
    and its cache (an unchanged photo is not detected twice)."""
    from vlclip.ground import ground

    sampled = Catalog(
        root=catalog.root,
        manifest=catalog.manifest,
        items=sample_rows(catalog.items, sample, monitor.seed),
        queries=sample_rows(catalog.queries, sample, monitor.seed),
        quarantine=catalog.quarantine,
    )
    with tempfile.TemporaryDirectory(prefix="vlclip-monitor-") as scratch:
        return ground(sampled, params, Path(scratch) / "crops")


def reference_of(champion: Path) -> Snapshot:
    return load_snapshot(Path(champion) / REFERENCE_FOLDER)


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / SUMMARY).read_text())


def alert_for(summary: dict, run_dir: Path):
    """The alert a drifted run raises: what drifted, by how much, against which model."""
    from vlclip.monitor.alerts import Alert

    drifted = [s for s in summary["signals"] if s["drift_detected"]]
    lines = [
        f"{s['name']}: {s['score']:.3f} ({s['method']}, threshold {s['threshold']})"
        for s in drifted
    ]
    model = summary["model_version"]
    return Alert(
        title=f"vlclip drift: {len(drifted)} of {len(summary['signals'])} signals drifted "
        f"against model {model}",
        body="\n".join(
            [
                f"Catalog drop {summary['catalog']} ({summary['current_items']} items sampled) "
                f"against the reference of model {model} ({summary['reference_items']} items).",
                *lines,
                f"Report: {(run_dir / REPORT).resolve()}",
            ]
        ),
        fingerprint=f"{model}:" + ",".join(sorted(s["name"] for s in drifted)),
        run_id=summary["run_id"],
        report=str((run_dir / REPORT).resolve()),
    )


def alert_run(
    run_dir: Path, params: MonitorParams, targets: list[str], output_dir: Path
) -> dict | None:
    """Raise the run's alert when it drifted; None when nothing drifted."""
    from vlclip.monitor.alerts import raise_alert

    summary = read_summary(run_dir)
    if not summary["drift_detected"]:
        log.info("no drift in %s: no alert", summary["run_id"])
        return None
    return raise_alert(
        alert_for(summary, run_dir),
        output_dir,
        targets,
        timedelta(hours=params.alert_window_hours),
        params.alert_retries,
        params.alert_backoff_s,
    )
