"""Orchestration overhead: one retrain DAG run against the same stages run by ``dvc repro``.

Both start from a fresh copy of the repository with the same small synthetic catalog and an
empty DVC cache, so every stage really runs in both. The DAG run is ``dag.test()`` (Airflow's
in-process executor on SQLite; Airflow's database is migrated before the clock starts): it adds
the per-run workspace (a git worktree), one ``dvc repro --single-item`` process per stage,
task bookkeeping and the publish step. Scheduler and Celery queueing latency come on top in a
deployment (a few seconds per task) and are not part of this number.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.timing import run_measured
from tests.helpers import TINY, command_env, make_workspace

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAG_TEST = """
import json, sys
from airflow.models import DagBag
run = DagBag("dags").get_dag("vlclip_retrain").test(run_conf={})
print(json.dumps({"state": str(run.state)}))
"""


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        plain = make_workspace((base / "plain"), TINY)
        repro = run_measured([str(BIN / "dvc"), "repro", "--quiet"], plain, command_env())

        repo = make_workspace((base / "dag"), TINY)
        env = {
            "AIRFLOW_HOME": str(base / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
            "VLCLIP_REPO": str(repo),
            "VLCLIP_RUNS_DIR": str(base / "runs"),
        }
        airflow = str(BIN / "airflow")
        for args in (["db", "migrate"], ["pools", "set", "vlclip_dvc", "1", "dvc lock"]):
            subprocess.run([airflow, *args], cwd=repo, env=command_env(**env), check=True,
                           capture_output=True)
        dag = run_measured([sys.executable, "-c", DAG_TEST], repo, command_env(**env))
        state = json.loads(dag["stdout"].strip().splitlines()[-1])["state"]
        if state != "success":
            raise RuntimeError(f"the DAG run ended {state}:\n{dag['stderr']}")
    stages = "ingest..promote, 24 synthetic products, vlclip-micro, 1 epoch"
    return [
        {
            "variant": f"dvc repro of every stage ({stages}) (baseline)",
            "throughput": repro["seconds"],
            "unit": "s per run",
            "peak_rss_mb": repro["peak_rss_mb"],
            "ratio": 1.0,
        },
        {
            "variant": "retrain DAG run, dag.test() "
            f"(+{dag['seconds'] - repro['seconds']:.0f} s)",
            "throughput": dag["seconds"],
            "unit": "s per run",
            "peak_rss_mb": dag["peak_rss_mb"],
            "ratio": repro["seconds"] / dag["seconds"],
        },
    ]


if __name__ == "__main__":
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    print(json.dumps(run(), indent=2))
