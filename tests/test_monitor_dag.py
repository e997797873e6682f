"""The drift-monitor DAG: it parses into one task per monitor step on a daily-or-new-model
schedule, and ``dag.test()`` on a trained demo pipeline with a simulated drift writes the
report, pages on-call through the Airflow connection and triggers ``vlclip_retrain``."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import REPO, airflow_env, copy_workspace, run_command, run_dag_test

DAG_ID = "vlclip_drift_monitor"
AIRFLOW = str(Path(sys.executable).parent / "airflow")
INSPECT = textwrap.dedent(
    """
    import json, sys
    from airflow.models import DagBag
    bag = DagBag(sys.argv[1])
    dag = bag.dags["vlclip_drift_monitor"]
    print(json.dumps({
        "errors": {k: str(v) for k, v in bag.import_errors.items()},
        "tasks": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
        "schedule": type(dag.timetable).__name__,
        "assets": sorted(a.name for a in dag.timetable.asset_condition.objects)
                  if hasattr(dag.timetable, "asset_condition") else [],
        "params": sorted(dag.params),
    }))
    """
)


def test_the_monitor_dag_is_one_task_per_step_on_time_or_new_model(tmp_path):
    result = run_command([sys.executable, "-c", INSPECT, str(REPO / "dags")], REPO,
                         **airflow_env(tmp_path))
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    assert found["tasks"] == {
        "locate": [],
        "snapshot": ["locate"],
        "compare": ["snapshot"],
        "report": ["compare"],
        "alert": ["report"],
        "retrain_wanted": ["compare"],
        "retrain": ["retrain_wanted"],
    }
    assert "Asset" in found["schedule"] and "Time" in found["schedule"]
    assert found["assets"] == ["vlclip://catalog", "vlclip://champion/model"]
    assert found["params"] == ["catalog", "retrain_on_drift", "simulate_drift"]


@pytest.fixture(scope="module")
def monitored_by_airflow(trained_pipeline, tmp_path_factory, make_httpserver) -> dict:
    receiver = make_httpserver
    receiver.clear()  # the server is shared by the session: drop other modules' requests
    receiver.expect_request("/oncall", method="POST").respond_with_data("ok")
    repo = copy_workspace(trained_pipeline, tmp_path_factory.mktemp("airflow-monitor") / "repo")
    home = tmp_path_factory.mktemp("airflow-home")
    target = {"path": f"json://127.0.0.1:{receiver.port}/oncall"}
    env = airflow_env(home) | {
        "VLCLIP_REPO": str(repo),
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
        "AIRFLOW_CONN_VLCLIP_ALERTS": json.dumps({"conn_type": "apprise",
                                                  "extra": {"config": target}}),
    }
    run_command([AIRFLOW, "db", "migrate"], repo, **env)
    run_command([AIRFLOW, "dags", "reserialize"], repo, **env)
    run = run_dag_test(repo, DAG_ID, {"simulate_drift": True, "retrain_on_drift": True}, env)
    runs = run_command([AIRFLOW, "dags", "list-runs", "vlclip_retrain", "-o", "json"], repo,
                       **env)
    return {"repo": repo, "run": run, "notices": [r.get_data(as_text=True)
                                                 for r, _ in receiver.log],
            "retrain_runs": json.loads(runs.stdout.strip().splitlines()[-1])}


def test_a_drifted_drop_is_reported_paged_and_retrains(monitored_by_airflow):
    run = monitored_by_airflow["run"]
    assert run["state"] == "success", run["log"][-3000:]
    assert set(run["tasks"].values()) == {"success"}, run["tasks"]
    monitoring = monitored_by_airflow["repo"] / "monitoring"
    (run_dir,) = [p for p in monitoring.iterdir() if p.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["drift_detected"] and summary["retrain_recommended"]
    assert "simulated drift" in summary["catalog"]
    assert (run_dir / "report.html").is_file() and (monitoring / "index.html").is_file()
    notices = monitored_by_airflow["notices"]
    assert len(notices) == 1 and "vlclip drift" in json.loads(notices[0])["title"], notices
    assert len(monitored_by_airflow["retrain_runs"]) == 1  # Airflow's own trigger, queued
