"""Drift-monitor cost at 1k, 10k and 50k items: one comparison (both Evidently reports, every
signal) of generated features and 64-dimensional image and text embeddings, each size with
the samples set to the whole drop, in a fresh process (peak RSS is that process's).

Baseline, side by side at each size: a bare Evidently ``DataDriftPreset`` over the same
tabular columns, no embeddings, text descriptors or retrieval confidence. The snapshots are
generated before the clock starts (``tests/generated.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.timing import run_measured

ROOT = Path(__file__).resolve().parents[1]
SIZES = (1_000, 10_000, 50_000)
DIM = 64
CHILD = """
import json, sys, time, warnings
sys.path.insert(0, "tests")
warnings.filterwarnings("ignore")
from generated import population, with_top1
from vlclip.config import MonitorParams
size, mode, dim = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
reference = with_top1(population(1, size, dim=dim))
current = with_top1(population(2, size, shift=1.0, dim=dim), reference)
params = MonitorParams(reference_sample=size, current_sample=size)
started = time.perf_counter()
if mode == "monitor":
    from vlclip.monitor.drift import compare
    compare(reference, current, params, "bench", "generated")
else:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset
    from vlclip.monitor.features import ITEM_CATEGORICAL, ITEM_NUMERIC
    definition = DataDefinition(numerical_columns=list(ITEM_NUMERIC),
                                categorical_columns=list(ITEM_CATEGORICAL))
    Report([DataDriftPreset(columns=[*ITEM_NUMERIC, *ITEM_CATEGORICAL])]).run(
        Dataset.from_pandas(current.items, data_definition=definition),
        Dataset.from_pandas(reference.items, data_definition=definition))
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def _measure(size: int, mode: str) -> dict:
    measured = run_measured([sys.executable, "-c", CHILD, str(size), mode, str(DIM)], ROOT, {})
    seconds = json.loads(measured["stdout"].strip().splitlines()[-1])["seconds"]
    return {"seconds": seconds, "peak_rss_mb": measured["peak_rss_mb"]}


def run() -> list[dict]:
    rows = []
    previous = None
    for size in SIZES:
        bare = _measure(size, "bare")
        full = _measure(size, "monitor")
        growth = f", x{full['seconds'] / previous:.1f} time vs the last size" if previous else ""
        previous = full["seconds"]
        rows += [
            {
                "variant": f"{size:,} items: bare DataDriftPreset, tabular only (baseline)",
                "throughput": size / bare["seconds"],
                "unit": "items/s",
                "peak_rss_mb": bare["peak_rss_mb"],
                "ratio": 1.0,
            },
            {
                "variant": f"{size:,} items: vlclip monitor compare, 6 signals "
                f"({full['seconds']:.0f} s{growth})",
                "throughput": size / full["seconds"],
                "unit": "items/s",
                "peak_rss_mb": full["peak_rss_mb"],
                "ratio": bare["seconds"] / full["seconds"],
            },
        ]
    return rows


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
