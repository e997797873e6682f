"""The retrain DAG on the production setup: Airflow's metadata on PostgreSQL, the
CeleryExecutor with Redis as broker, and api-server, scheduler, dag-processor, triggerer and a
Celery worker as separate processes. Triggered through the REST API (JWT from ``/auth/token``)
and through the UI's trigger form in headless Chromium.

Skipped only when PostgreSQL or Redis do not answer on 127.0.0.1 (CI always has them), or, for
the browser test, when no Chromium is installed (``make test`` installs Debian's as root).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from airflow_deployment import celery_deployment, missing_services
from helpers import TINY, make_workspace

from vlclip.orchestration import run_folder

DAG_ID = "vlclip_retrain"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS_ENV = "VLCLIP_SCREENSHOTS"
"""Where the browser test also copies its screenshots (the README's come from there)."""

pytestmark = pytest.mark.skipif(
    missing_services() is not None, reason=f"PostgreSQL/Redis {missing_services()}"
)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, make_httpserver):
    """A running deployment whose on-call connection points at a local HTTP receiver."""
    receiver = make_httpserver
    receiver.clear()  # the server is shared by the session: drop other modules' requests
    receiver.expect_request("/oncall", method="POST").respond_with_data("ok")
    repo = make_workspace(tmp_path_factory.mktemp("repo"), TINY)
    home = tmp_path_factory.mktemp("airflow-celery")
    alerts = {"conn_type": "apprise",
              "extra": {"config": {"path": f"json://127.0.0.1:{receiver.port}/oncall"}}}
    with celery_deployment(
        home, repo, {"AIRFLOW_CONN_VLCLIP_ALERTS": json.dumps(alerts)}
    ) as running:
        running.receiver = receiver
        running.repo = repo
        yield running


@pytest.fixture(scope="module")
def rest_run(deployment) -> dict:
    """One retrain triggered through the REST API with a non-default parameter."""
    client = deployment.client
    deployment.wait_for_dag(DAG_ID)
    client.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
    response = client.post(
        f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": {"train.epochs": 2}}
    )
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    finished = deployment.wait_for_run(DAG_ID, run_id)
    return {"run": finished, "tasks": deployment.task_states(DAG_ID, run_id)}


def test_all_five_processes_report_healthy(deployment):
    health = deployment.client.get("/monitor/health").json()
    assert {part: value["status"] for part, value in health.items()} == {
        "metadatabase": "healthy",
        "scheduler": "healthy",
        "triggerer": "healthy",
        "dag_processor": "healthy",
    }
    assert deployment.processes["celery-worker"].poll() is None
    config = deployment.env
    assert config["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert config["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")


def test_a_rest_triggered_retrain_succeeds_on_celery_with_its_parameter(deployment, rest_run):
    run = rest_run["run"]
    assert run["state"] == "success", (rest_run["tasks"], deployment.logs_tail())
    assert run["conf"] == {"train.epochs": 2}
    assert set(rest_run["tasks"].values()) == {"success"}
    workspace = run_folder(Path(deployment.env["VLCLIP_RUNS_DIR"]), run["dag_run_id"])
    card = json.loads((workspace / "models/model.json").read_text())
    assert card["train"]["epochs"] == 2  # the REST conf reached the training stage
    promotion = json.loads((workspace / "reports/promotion.json").read_text())
    assert promotion["promoted"] and promotion["champion"] is None
    # the stages ran on the Celery worker, not in the scheduler
    worker_log = deployment.log("celery-worker")
    for stage in ("ingest", "train", "promote"):
        assert f"'task_id': '{stage}'" in worker_log or f"task_id='{stage}'" in worker_log, stage


def test_the_promotion_decision_reaches_on_call(deployment, rest_run):
    bodies = [request.get_data(as_text=True) for request, _ in deployment.receiver.log]
    notices = [json.loads(body) for body in bodies]
    assert len(notices) == 1, bodies
    run_id = rest_run["run"]["dag_run_id"]
    assert run_id in notices[0]["title"] and "first model promoted" in notices[0]["title"]
    assert "image_to_catalog.mrr" in notices[0]["message"] or "mrr" in notices[0]["message"]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed "
                    "(make test installs Debian's chromium when run as root)")
def test_the_trigger_form_starts_a_run_from_the_browser(deployment, rest_run, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = [tmp_path / "trigger-form.png", tmp_path / "grid.png"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{deployment.url}/auth/login")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", deployment.password)
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: "/auth/login" not in url)
        page.goto(f"{deployment.url}/dags/{DAG_ID}")
        page.get_by_role("button", name="Trigger Dag").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("train", exact=True).first.click()  # the train section's accordion
        epochs = dialog.get_by_role("spinbutton", name="train.epochs")
        expect(epochs).to_have_value("1")  # the repository's params.yaml is the default
        epochs.fill("3")
        page.screenshot(path=str(shots[0]))
        dialog.get_by_role("button", name="Trigger").last.click()
        expect(page.get_by_text("Dag Run Triggered").first).to_be_visible(timeout=15000)
        browser_run = _newest_run(deployment, exclude=rest_run["run"]["dag_run_id"])
        assert browser_run["conf"]["train.epochs"] == 3
        page.goto(f"{deployment.url}/dags/{DAG_ID}/runs/{browser_run['dag_run_id']}")
        expect(page.get_by_text(browser_run["dag_run_id"]).first).to_be_visible(timeout=15000)
        page.screenshot(path=str(shots[1]))
        browser.close()
    assert all(shot.stat().st_size > 10_000 for shot in shots)
    if os.environ.get(SCREENSHOTS_ENV):
        for shot in shots:
            shutil.copy2(shot, Path(os.environ[SCREENSHOTS_ENV]) / f"airflow-{shot.name}")


def _newest_run(deployment, exclude: str) -> dict:
    runs = deployment.client.get(
        f"/dags/{DAG_ID}/dagRuns", params={"order_by": "-run_after"}
    ).json()["dag_runs"]
    fresh = [run for run in runs if run["dag_run_id"] != exclude]
    assert fresh, runs
    return fresh[0]
