"""DAG file parse time: ``dags/vlclip_retrain.py`` against a bare DAG file of as many tasks.

The DAG processor re-parses every DAG file every few seconds, so a DAG file must import nothing
heavy (torch, open_clip, faiss, Great Expectations) and stay well under half a second. Each
variant parses its file in a fresh process (imports are what costs), after Airflow itself is
imported: the time is the file's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.timing import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 5
BARE = """
import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG("bare", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    previous = None
    for index in range({tasks}):
        task = BashOperator(task_id=f"t{{index}}", bash_command="true")
        if previous is not None:
            previous >> task
        previous = task
"""
CHILD = """
import json, sys, time, importlib.util
import airflow.sdk, airflow.providers.standard.operators.bash  # Airflow's own import cost
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("dagfile", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
seconds = time.perf_counter() - started
heavy = [m for m in ("torch", "open_clip", "faiss", "great_expectations") if m in sys.modules]
import resource
print(json.dumps({"seconds": seconds, "heavy": heavy,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _parse(path: Path, home: Path) -> dict:
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    runs = []
    for _ in range(REPEATS):
        output = subprocess.run(
            [sys.executable, "-c", CHILD, str(path)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env=env,
        ).stdout
        runs.append(json.loads(output.strip().splitlines()[-1]))
    return min(runs, key=lambda run: run["seconds"])


def run() -> list[dict]:
    from vlclip.pipeline import load_stages

    tasks = len(load_stages(ROOT)) + 2  # prepare_workspace and publish
    with tempfile.TemporaryDirectory() as folder:
        bare = Path(folder) / "bare_dag.py"
        bare.write_text(BARE.format(tasks=tasks))
        measured = {
            f"bare DAG file, {tasks} BashOperators (baseline)": _parse(bare, Path(folder)),
            "dags/vlclip_retrain.py": _parse(ROOT / "dags" / "vlclip_retrain.py", Path(folder)),
        }
    base = next(iter(measured.values()))["seconds"]
    return [
        {
            "variant": f"{name}: parse time"
            + (f" (imports {values['heavy']})" if values["heavy"] else ""),
            "throughput": 1000 * values["seconds"],
            "unit": "ms",
            "peak_rss_mb": values["peak_rss_mb"],
            "ratio": base / values["seconds"],  # speed against the bare file, as elsewhere
        }
        for name, values in measured.items()
    ]


if __name__ == "__main__":
    print(json.dumps(run(), indent=2), peak_rss_mb())
