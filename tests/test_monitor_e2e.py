"""The drift monitor on a trained demo pipeline: an unchanged catalog raises nothing, a
simulated drift writes Evidently's report and pages on-call once (webhook and email to local
servers), a dead target loses neither the report nor the alert record, and a re-shot photo set
is caught by embedding drift while the listings' features stay put."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from aiosmtpd.controller import Controller
from helpers import copy_workspace, free_port, run_command


@pytest.fixture(scope="module")
def pipeline(trained_pipeline, tmp_path_factory) -> Path:
    """A trained workspace of this module's own: monitor runs and alert state accumulate."""
    return copy_workspace(trained_pipeline, tmp_path_factory.mktemp("monitored") / "repo")


class Mailbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


def monitor(repo: Path, *args: str, targets: str = "", check: bool = True):
    return run_command(["vlclip", "monitor", *args], repo, check=check, timeout=600,
                       VLCLIP_ALERT_URLS=targets)


def summary(repo: Path, run_id: str) -> dict:
    return json.loads((repo / "monitoring" / run_id / "summary.json").read_text())


def alert_events(repo: Path) -> list[dict]:
    log = repo / "monitoring" / "alerts.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_the_reference_snapshot_travels_with_the_champion(pipeline):
    meta = json.loads((pipeline / "champion/reference/snapshot.json").read_text())
    assert meta["items"] == 60 and meta["photos"] == 120
    lock = yaml.safe_load((pipeline / "dvc.lock").read_text())
    assert "data/reference" in {out["path"] for out in lock["stages"]["snapshot"]["outs"]}


def test_an_unchanged_catalog_raises_no_alert(pipeline, httpserver):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    result = monitor(pipeline, "--run-id", "unchanged",
                     targets=f"json://127.0.0.1:{httpserver.port}/hook")
    found = summary(pipeline, "unchanged")
    assert not found["drift_detected"], found["signals"]
    assert "no drift" in result.stdout
    assert httpserver.log == [] and alert_events(pipeline) == []
    report = (pipeline / "monitoring/unchanged/report.html").read_text()
    assert all(name in report for name in ("brightness", "top1_similarity", "image"))
    assert "unchanged" in (pipeline / "monitoring/index.html").read_text()


def test_simulated_drift_pages_webhook_and_email_once(pipeline, httpserver, mailbox):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    targets = (
        f"json://127.0.0.1:{httpserver.port}/hook "
        f"mailto://127.0.0.1:{mailbox.port}?from=vlclip@example.com&to=oncall@example.com"
        "&mode=insecure"
    )
    monitor(pipeline, "--simulate-drift", "--run-id", "drift-1", targets=targets)
    found = summary(pipeline, "drift-1")
    drifted = {s["name"] for s in found["signals"] if s["drift_detected"]}
    assert {"catalog features", "titles and descriptions", "query photos",
            "image embeddings"} <= drifted
    model = json.loads((pipeline / "champion/reference/snapshot.json").read_text())
    assert found["model_version"] == model["model_version"]
    # one webhook notice and one email, naming what drifted, against which model, and where
    assert len(httpserver.log) == 1 and len(mailbox.messages) == 1
    notice = json.loads(httpserver.log[0][0].get_data(as_text=True))
    assert model["model_version"] in notice["title"]
    assert "image embeddings" in notice["message"]
    assert "drift-1/report.html" in notice["message"]
    assert mailbox.messages[0].rcpt_tos == ["oncall@example.com"]
    # the same drift against the same model again: logged, not paged
    monitor(pipeline, "--simulate-drift", "--run-id", "drift-2", targets=targets)
    assert len(httpserver.log) == 1 and len(mailbox.messages) == 1
    alerts = [e for e in alert_events(pipeline) if e["event"] == "alert"]
    assert [e["suppressed"] for e in alerts] == [False, True]
    index = (pipeline / "monitoring/index.html").read_text()
    assert all(run in index for run in ("unchanged", "drift-1", "drift-2"))


def test_a_dead_target_loses_neither_the_report_nor_the_alert(pipeline, tmp_path):
    params = yaml.safe_load((pipeline / "params.yaml").read_text())
    params["monitor"].update(alert_window_hours=0, alert_retries=1, alert_backoff_s=0.1)
    settings = tmp_path / "params.yaml"
    settings.write_text(yaml.safe_dump(params))
    dead = f"json://127.0.0.1:{free_port()}/nobody"
    result = monitor(pipeline, "--simulate-drift", "--run-id", "dead-target", "-p", str(settings),
                     targets=dead)
    assert result.returncode == 0
    assert (pipeline / "monitoring/dead-target/report.html").is_file()
    events = [e for e in alert_events(pipeline) if e["run_id"] == "dead-target"]
    assert [e["event"] for e in events] == ["alert", "delivery"]
    delivery = events[1]["deliveries"][0]
    assert not delivery["delivered"] and delivery["attempts"] == 2


def test_photos_reshot_show_as_embedding_drift_not_listing_drift(pipeline, monkeypatch):
    from vlclip.catalog.schema import load_catalog
    from vlclip.config import load_params
    from vlclip.monitor.drift import compare
    from vlclip.monitor.simulate import ONLY_IMAGES, simulate_drift
    from vlclip.monitor.snapshot import snapshot_of
    from vlclip.monitor.steps import ground_sample, reference_of

    monkeypatch.chdir(pipeline)
    params = load_params(Path("params.yaml"))
    drifted = load_catalog(
        simulate_drift(load_catalog(Path("data/validated")), Path("reshot"), 0, ONLY_IMAGES)
    )
    reference = reference_of(Path("champion"))
    boxes = ground_sample(drifted, params.ground, params.monitor, 10_000)
    current = snapshot_of(drifted, boxes, Path("champion/models"), params.monitor, 10_000,
                          params.embed.batch_size, "cpu", reference=reference)
    signals = {
        s["name"]: s for s in compare(reference, current, params.monitor, "reshot", "x")
        .summary["signals"]
    }
    assert signals["image embeddings"]["drift_detected"], signals["image embeddings"]
    assert not signals["titles and descriptions"]["drift_detected"]
    assert not signals["text embeddings"]["drift_detected"]
    # the listings did not change: what moved among the catalog features is the photos' own
    # statistics (framing and colour balance), never the product mix, texts or attributes
    listing = {"product_type", "category", "title_length", "description_length",
               "attribute_fill_rate", "image_width", "image_height"}
    assert not listing & set(signals["catalog features"]["drifted_columns"]), signals
    print("re-shot photos, drifted catalog columns:", signals["catalog features"])
