"""
### vlclip retrain

Runs the vlclip pipeline of `dvc.yaml`, one task per DVC stage, in a workspace of its own.

- **Trigger form**: one field per `params.yaml` key that a stage reads, grouped by section, with
  the repository's `params.yaml` as defaults. Values the form's schema refuses are refused;
  values only vlclip's own validation refuses fail the first task with vlclip's message.
- **Workspace**: each run gets a `git worktree` of the repository (under `$VLCLIP_RUNS_DIR`)
  with the form's values written into its `params.yaml`; it shares the repository's DVC cache,
  so stages whose inputs did not change are restored, not rerun. The checked-in `params.yaml`
  is never edited.
- **Tasks** run `dvc repro --single-item <stage>` in that workspace, so `dvc.lock`, the cache and
  "skip if unchanged" work exactly as on a laptop; every DVC task takes the one slot of the
  `vlclip_dvc` pool (DVC holds a repository lock).
- **Gate**: a failed data validation fails the run without retries; nothing downstream runs and
  the previous model, champion and reports stay where they are. `enrich` (API calls) retries
  with exponential backoff; `ground` and `train` retry once after a lost worker, resuming from
  their caches and last epoch checkpoint.
- **Promotion**: the `promote` stage keeps the champion unless the new model beats it
  (`reports/promotion.json`). `publish` pushes to the DVC remote when one is configured and
  records the model and metrics as Asset events, on which the drift monitor is scheduled.
- **On-call**: a failed run, and every finished run's promotion decision, are sent to the
  Apprise connection `vlclip_alerts` when it exists.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Asset, Param, task

from vlclip.orchestration import (
    METRICS_ASSET,
    MODEL_ASSET,
    POOL,
    failure_notifier,
    form_fields,
    promotion_notifier,
    publish_run,
    start_run,
    workspace_root,
)
from vlclip.pipeline import load_stages

REPO = Path(os.environ.get("VLCLIP_REPO", Path(__file__).resolve().parents[1]))
RUNS = workspace_root(REPO)
BIN = Path(sys.executable).parent  # dvc and vlclip live beside the interpreter
TRANSIENT = {"enrich"}
"""Stages that call remote services: retried with exponential backoff."""
RESUMABLE = {"ground", "train"}
"""Long stages that resume where a killed run stopped: one retry."""

MODEL = Asset(MODEL_ASSET)
METRICS = Asset(METRICS_ASSET)

stages = load_stages(REPO)
sections = {key.split(".")[0] for stage in stages.values() for key in stage.params}
fields = [field for field in form_fields(REPO / "params.yaml") if field.section in sections]

with DAG(
    dag_id="vlclip_retrain",
    description="Retrain vlclip: the stages of dvc.yaml, with a promotion gate",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["vlclip", "mlops", "retrain"],
    params={
        field.key: Param(
            field.default, description=field.description, section=field.section, **field.schema
        )
        for field in fields
    },
    on_failure_callback=failure_notifier(),
) as dag:

    @task(task_id="prepare_workspace", retries=0)
    def prepare_workspace(**context) -> str:
        """Validate the form's values and give this run its own workspace."""
        return str(start_run(REPO, RUNS, context["run_id"], dict(context["params"])))

    workspace = prepare_workspace()

    tasks = {}
    for stage in stages.values():
        transient = stage.name in TRANSIENT
        tasks[stage.name] = BashOperator(
            task_id=stage.name,
            doc_md=f"`dvc repro --single-item {stage.name}` (runs `{stage.cmd}`)",
            bash_command=f"dvc repro --single-item {stage.name}",
            cwd="{{ ti.xcom_pull(task_ids='prepare_workspace') }}",
            env={"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
            append_env=True,
            pool=POOL,
            retries=3 if transient else 1 if stage.name in RESUMABLE else 0,
            retry_delay=timedelta(seconds=30),
            retry_exponential_backoff=transient,
            max_retry_delay=timedelta(minutes=10),
        )
    for stage in stages.values():
        if not stage.upstream:
            workspace >> tasks[stage.name]
        for before in stage.upstream:
            tasks[before] >> tasks[stage.name]

    @task(
        task_id="publish",
        outlets=[MODEL, METRICS],
        pool=POOL,
        on_success_callback=promotion_notifier(),
    )
    def publish(**context) -> dict:
        """Push DVC outputs when a remote is set; record the run as Asset events."""
        folder = Path(context["ti"].xcom_pull(task_ids="prepare_workspace"))
        summary = publish_run(REPO, RUNS, folder)
        context["outlet_events"][MODEL].extra = summary["promotion"]
        context["outlet_events"][METRICS].extra = summary["metrics"]
        return summary

    sinks = [tasks[name] for name in stages if not any(name in s.upstream for s in stages.values())]
    sinks >> publish()
