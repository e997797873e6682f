"""
### vlclip drift monitor

Compares a catalog drop with the reference snapshot saved beside the serving model (the
champion) and tells on-call when it drifted. Runs on `monitor.schedule` (daily by default) and
whenever a retrain publishes a new model or a new catalog drop is announced (Asset events on
`vlclip://champion/model` and `vlclip://catalog`).

- **locate**: the serving workspace (the last successful `vlclip_retrain` run, else the
  repository) and the run's folder under `monitoring/`.
- **snapshot**: features and champion embeddings of the drop (`catalog`, default: the
  pipeline's catalog; `simulate_drift` shifts it for a demo).
- **compare**: Evidently reports (`report.html`, `photos.html`) and `summary.json`.
- **report**: `monitoring/index.html`, every run with its drift scores over time.
- **alert**: Apprise to the connection `vlclip_alerts` (and `VLCLIP_ALERT_URLS`), once per drift
  and model within `monitor.alert_window_hours`; always to `monitoring/alerts.jsonl`.
- **retrain**: when `retrain_on_drift` is on and the share of drifted signals reaches
  `monitor.retrain_share`, triggers `vlclip_retrain`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, task

from vlclip.config import load_params
from vlclip.orchestration import (
    CATALOG_ASSET,
    MODEL_ASSET,
    alert_targets,
    serving_workspace,
    workspace_root,
)

REPO = Path(os.environ.get("VLCLIP_REPO", Path(__file__).resolve().parents[1]))
RUNS = workspace_root(REPO)
BIN = Path(sys.executable).parent
MONITOR = load_params(REPO / "params.yaml").monitor
OUTPUT = MONITOR.output_dir if MONITOR.output_dir.is_absolute() else REPO / MONITOR.output_dir
LOCATED = "{{ ti.xcom_pull(task_ids='locate') }}"
STEP = (
    "vlclip monitor {step} --output-dir " + str(OUTPUT) + " --run-id '{{{{ run_id }}}}'"
)

with DAG(
    dag_id="vlclip_drift_monitor",
    description="Drift of catalog drops against the serving model's reference; alerts on-call",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(MONITOR.schedule, timezone="UTC"),
        assets=(Asset(MODEL_ASSET) | Asset(CATALOG_ASSET)),
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["vlclip", "mlops", "monitoring"],
    params={
        "catalog": Param(
            None,
            type=["null", "string"],
            description="A catalog drop (table file, GroceryStore-style folder or catalog "
            "folder); empty: the serving workspace's catalog.",
        ),
        "simulate_drift": Param(
            False, type="boolean", description="Shift the catalog first (the on-call demo)."
        ),
        "retrain_on_drift": Param(
            MONITOR.retrain_on_drift,
            type="boolean",
            description="Trigger vlclip_retrain when the drifted share of signals reaches "
            f"monitor.retrain_share ({MONITOR.retrain_share}).",
        ),
    },
) as dag:

    @task(task_id="locate", retries=0)
    def locate() -> str:
        """The workspace whose champion serves: its reference is what drift is measured on."""
        return str(serving_workspace(REPO, RUNS))

    environment = {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    catalog_flag = (
        "{% if params.catalog %} --catalog '{{ params.catalog }}'{% endif %}"
        "{% if params.simulate_drift %} --simulate-drift{% endif %}"
    )
    steps = {
        step: BashOperator(
            task_id=step,
            bash_command=STEP.format(step=step) + (catalog_flag if step == "snapshot" else ""),
            cwd=LOCATED,
            env=environment,
            append_env=True,
        )
        for step in ("snapshot", "compare")
    }
    report = BashOperator(
        task_id="report",
        bash_command=f"vlclip monitor report --output-dir {OUTPUT}",
        cwd=LOCATED,
        env=environment,
        append_env=True,
    )

    @task(task_id="alert", retries=0)
    def alert(**context) -> str:
        """Alert targets come from the Airflow connection, never from files in the repo."""
        targets = " ".join(alert_targets())
        done = subprocess.run(
            [str(BIN / "vlclip"), "monitor", "alert", "--output-dir", str(OUTPUT),
             "--run-id", context["run_id"]],
            cwd=context["ti"].xcom_pull(task_ids="locate"),
            env={**os.environ, "VLCLIP_ALERT_URLS": targets},
            capture_output=True,
            text=True,
        )
        print(done.stdout, done.stderr)
        done.check_returncode()
        return done.stdout.strip()

    @task.short_circuit(task_id="retrain_wanted")
    def retrain_wanted(**context) -> bool:
        """True only when retraining on drift is on and enough signals drifted."""
        import json

        from vlclip.monitor.steps import safe_run_id

        summary = json.loads(
            (OUTPUT / safe_run_id(context["run_id"]) / "summary.json").read_text()
        )
        return bool(context["params"]["retrain_on_drift"] and summary["retrain_recommended"])

    retrain = TriggerDagRunOperator(
        task_id="retrain",
        trigger_dag_id="vlclip_retrain",
        conf={},
        wait_for_completion=False,
    )

    located = locate()
    located >> steps["snapshot"] >> steps["compare"] >> report >> alert()
    steps["compare"] >> retrain_wanted() >> retrain
