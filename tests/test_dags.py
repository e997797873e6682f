"""The Airflow DAGs: they import cleanly, mirror dvc.yaml, offer the params.yaml schema as the
trigger form, and the retrain DAG runs the real pipeline end to end with ``dag.test()``.

Airflow is configured per process through the environment, so each check runs in a child
Python with its own ``AIRFLOW_HOME``.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from helpers import REPO, TINY, airflow_env, make_workspace, run_command, run_dag_test

from vlclip.orchestration import POOL, form_fields
from vlclip.pipeline import edges, load_stages

DAG_ID = "vlclip_retrain"

INSPECT = textwrap.dedent(
    """
    import json, sys, time, warnings
    warnings.simplefilter("always")
    started = time.perf_counter()
    from airflow.models import DagBag
    bag = DagBag(sys.argv[1])
    seconds = time.perf_counter() - started
    dag = bag.dags.get("vlclip_retrain")
    print(json.dumps({
        "errors": {k: str(v) for k, v in bag.import_errors.items()},
        "warnings": {k: [str(w) for w in v] for k, v in bag.captured_warnings.items()},
        "heavy": sorted(m for m in ("torch", "open_clip", "faiss", "great_expectations")
                        if m in sys.modules),
        "seconds": seconds,
        "tasks": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks} if dag else None,
        "pools": sorted({t.pool for t in dag.tasks}) if dag else None,
        "retries": {t.task_id: t.retries for t in dag.tasks} if dag else None,
        "params": {k: dag.params.get_param(k).schema for k in dag.params} if dag else None,
        "max_active_runs": dag.max_active_runs if dag else None,
        "doc": bool(dag.doc_md) if dag else None,
    }))
    """
)


@pytest.fixture(scope="module")
def inspected(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("airflow")
    result = run_command(
        [sys.executable, "-c", INSPECT, str(REPO / "dags")], REPO, **airflow_env(home)
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_dags_import_without_errors_or_warnings(inspected):
    assert inspected["errors"] == {}
    assert inspected["warnings"] == {}
    assert inspected["tasks"] is not None, "vlclip_retrain missing from the DagBag"


def test_parsing_the_dags_imports_nothing_heavy(inspected):
    assert inspected["heavy"] == []


def test_retrain_tasks_and_edges_are_dvc_yaml(inspected):
    stages = load_stages(REPO)
    tasks = inspected["tasks"]
    assert set(tasks) == {"prepare_workspace", *stages, "publish"}
    dag_edges = {(up, down) for down, ups in tasks.items() for up in ups}
    stage_edges = {(a, b) for a, b in dag_edges if a in stages and b in stages}
    assert stage_edges == edges(stages)
    roots = {name for name, stage in stages.items() if not stage.upstream}
    assert {b for a, b in dag_edges if a == "prepare_workspace"} == roots
    assert tasks["prepare_workspace"] == []
    sinks = {name for name in stages if not any(name in s.upstream for s in stages.values())}
    assert set(tasks["publish"]) == sinks


def test_every_dvc_task_takes_the_one_pool_and_only_resumable_stages_retry(inspected):
    assert set(inspected["pools"]) == {POOL, "default_pool"}  # prepare_workspace runs no DVC
    retries = inspected["retries"]
    assert retries["validate"] == 0 and retries["prepare_workspace"] == 0
    assert retries["enrich"] > 0
    assert retries["ground"] == retries["train"] == 1
    assert {name for name, count in retries.items() if count} == {"enrich", "ground", "train"}
    assert inspected["max_active_runs"] == 1 and inspected["doc"]


def test_trigger_form_is_the_params_yaml_schema(inspected):
    stages = load_stages(REPO)
    sections = {key.split(".")[0] for stage in stages.values() for key in stage.params}
    expected = {f.key: f for f in form_fields(REPO / "params.yaml") if f.section in sections}
    form = inspected["params"]
    assert set(form) == set(expected)
    assert "ablation.seeds" not in form  # the ablation is not part of the retrain DAG
    for key, field in expected.items():
        schema = form[key]
        assert schema["section"] == field.section
        for name, value in field.schema.items():
            assert schema[name] == value, (key, name)
    assert form["ground.detector"]["enum"] == ["saliency", "grounding_dino", "owlv2", "full_image"]
    assert (
        form["train.epochs"]["type"] == "integer" and form["train.epochs"]["exclusiveMinimum"] == 0
    )
    defaults = yaml.safe_load((REPO / "params.yaml").read_text())
    assert form["train.lr"]["type"] == "number"
    assert expected["train.lr"].default == defaults["train"]["lr"]


@pytest.fixture(scope="module")
def retrain_run(tmp_path_factory) -> dict:
    """``dag.test()`` of the retrain DAG on a tiny demo catalog, with a changed parameter."""
    repo = make_workspace(tmp_path_factory.mktemp("repo"), TINY)
    home = tmp_path_factory.mktemp("airflow-home")
    env = airflow_env(home) | {
        "VLCLIP_REPO": str(repo),
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
    }
    airflow = str(Path(sys.executable).parent / "airflow")
    run_command([airflow, "db", "migrate"], repo, **env)
    run_command([airflow, "dags", "reserialize"], repo, **env)
    run_command(
        [airflow, "pools", "set", POOL, "1", "dvc lock"],
        repo,
        **env,
    )
    result = test_run(repo, {"train.epochs": 2}, env)
    runs = sorted(p for p in (home / "runs").iterdir() if p.name.startswith("manual"))
    return {
        "repo": repo,
        "env": env,
        "state": result["state"],
        "workspace": runs[-1] if runs else None,
        "runs": home / "runs",
        "log": result["log"],
    }


def test_run(repo: Path, conf: dict, env: dict[str, str]) -> dict:
    return run_dag_test(repo, DAG_ID, conf, env)


test_run.__test__ = False  # a helper, not a test


def test_dag_test_runs_the_pipeline_in_its_own_workspace(retrain_run):
    assert retrain_run["state"] == "success", retrain_run["log"][-3000:]
    workspace = retrain_run["workspace"]
    card = json.loads((workspace / "models/model.json").read_text())
    assert card["train"]["epochs"] == 2  # the form's value reached the stage
    assert "epochs: 2" in (workspace / "params.yaml").read_text()
    assert "epochs: 1" in (retrain_run["repo"] / "params.yaml").read_text()  # repo untouched
    promotion = json.loads((workspace / "reports/promotion.json").read_text())
    assert promotion["promoted"]
    assert (retrain_run["runs"] / "last-good" / "dvc.lock").is_file()
    assert (retrain_run["runs"] / "current").resolve() == workspace.resolve()


def test_a_run_failing_the_data_gate_stops_keeps_the_last_good_run_and_alerts(
    retrain_run, httpserver
):
    httpserver.expect_request("/alerts", method="POST").respond_with_data("ok")
    runs = retrain_run["runs"]
    last_good = (runs / "last-good" / "dvc.lock").read_bytes()
    current = (runs / "current").resolve()
    champion = (current / "champion/models/model.pt").read_bytes()
    target = {"path": f"json://127.0.0.1:{httpserver.port}/alerts"}
    env = retrain_run["env"] | {
        "AIRFLOW_CONN_VLCLIP_ALERTS": json.dumps(
            {"conn_type": "apprise", "extra": {"config": target}}
        )
    }
    failed = test_run(
        retrain_run["repo"], {"validate.allowed_product_types": ["only this type"]}, env
    )
    assert failed["state"] == "failed", failed["log"][-3000:]
    tasks = failed["tasks"]
    assert tasks["ingest"] == "success" and tasks["validate"] == "failed"
    for name in ("ground", "enrich", "train", "embed", "evaluate", "index", "promote", "publish"):
        assert tasks[name] == "upstream_failed", (name, tasks)
    # the last good run, its champion and what serves stay as they were
    assert (runs / "last-good" / "dvc.lock").read_bytes() == last_good
    assert (runs / "current").resolve() == current
    assert (current / "champion/models/model.pt").read_bytes() == champion
    # on-call got one notice naming the DAG
    bodies = [request.get_data(as_text=True) for request, _ in httpserver.log]
    assert len(bodies) == 1, bodies
    assert "vlclip_retrain" in bodies[0] and "failed" in bodies[0]


def test_values_only_vlclip_refuses_fail_the_first_task(retrain_run):
    refused = test_run(
        retrain_run["repo"],
        {"ingest.source": {"kind": "table", "path": "missing.csv", "image_root": "nowhere"}},
        retrain_run["env"],
    )
    assert refused["state"] == "failed"
    assert refused["tasks"]["prepare_workspace"] == "failed"
    assert all(
        state == "upstream_failed"
        for name, state in refused["tasks"].items()
        if name != "prepare_workspace"
    )
    assert "path='missing.csv': file not found" in refused["log"]
