"""Pure pieces of the drift monitor: image statistics, attribute fill rate, top-1 similarity,
the drift simulation, alert dedup and retries, the history page."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from vlclip.monitor.alerts import Alert, deliver, raise_alert
from vlclip.monitor.features import attribute_fill_rate, image_stats
from vlclip.monitor.history import write_index
from vlclip.monitor.snapshot import sample_rows, top1_similarity


def _photo(seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_image_stats_see_darker_flatter_and_blurred_photos():
    photo = _photo()
    base = image_stats(photo)
    darker = image_stats(Image.eval(photo, lambda v: v // 2))
    blurred = image_stats(photo.filter(ImageFilter.GaussianBlur(2)))
    assert (base.width, base.height) == (128, 96)
    assert darker.brightness < base.brightness * 0.6
    assert darker.contrast < base.contrast
    assert blurred.sharpness < base.sharpness * 0.5


def test_attribute_fill_rate_counts_blank_values():
    assert attribute_fill_rate(json.dumps({"a": "x", "b": "", "c": None, "d": 2})) == 0.5
    assert attribute_fill_rate("{}") == 0.0
    assert attribute_fill_rate("not json") == 0.0


def test_top1_similarity_never_matches_an_item_with_itself():
    vectors = np.eye(3, dtype=np.float32)
    vectors[2] = vectors[1]  # item c is a copy of b
    top1 = top1_similarity(vectors, ["a", "b", "c"], vectors, ["a", "b", "c"])
    assert top1[0] == pytest.approx(0.0)  # a's nearest other item is orthogonal
    assert top1[1] == pytest.approx(1.0) and top1[2] == pytest.approx(1.0)  # b and c: each other


def test_sample_rows_is_seeded_and_capped():
    import pandas as pd

    frame = pd.DataFrame({"x": range(100)})
    first, again = sample_rows(frame, 10, seed=3), sample_rows(frame, 10, seed=3)
    assert len(first) == 10 and first.equals(again)
    assert len(sample_rows(frame, 500, seed=3)) == 100


ALERT = Alert(
    "vlclip drift", "image embeddings: 0.91", "model-1:image embeddings", "run-1", "r.html"
)


def test_the_same_drift_pages_once_per_window_and_the_state_survives_a_restart(tmp_path):
    sent: list[str] = []

    def send(url: str, alert: Alert) -> bool:
        sent.append(url)
        return True

    start = datetime(2026, 11, 1, tzinfo=UTC)
    window = timedelta(hours=24)
    first = raise_alert(ALERT, tmp_path, ["json://x"], window, now=start, send=send)
    # a new process: nothing in memory, only the files
    again = raise_alert(ALERT, tmp_path, ["json://x"], window, now=start + timedelta(hours=2),
                        send=send)
    other = Alert(**{**ALERT.__dict__, "fingerprint": "model-2:image embeddings"})
    new_model = raise_alert(other, tmp_path, ["json://x"], window, now=start, send=send)
    later = raise_alert(ALERT, tmp_path, ["json://x"], window, now=start + timedelta(hours=25),
                        send=send)
    assert [first["suppressed"], again["suppressed"], new_model["suppressed"],
            later["suppressed"]] == [False, True, False, False]
    assert len(sent) == 3
    events = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("alert") == 4  # suppressed ones are logged too


def test_a_failing_target_is_retried_with_backoff_and_never_raises(tmp_path):
    waits: list[float] = []
    calls = {"n": 0}

    def flaky(url: str, alert: Alert) -> bool:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError("connection refused")
        return True

    result = deliver("json://x", ALERT, retries=3, backoff_s=1.0, send=flaky, sleep=waits.append)
    assert result["delivered"] and result["attempts"] == 3 and waits == [1.0, 2.0]

    def dead(url: str, alert: Alert) -> bool:
        raise ConnectionError("connection refused")

    waits.clear()
    failed = raise_alert(ALERT, tmp_path, ["json://x", "json://y"], timedelta(hours=1),
                         retries=2, backoff_s=0.5, send=dead, sleep=waits.append)
    assert [d["delivered"] for d in failed["deliveries"]] == [False, False]
    assert "connection refused" in failed["deliveries"][0]["error"]
    assert waits == [0.5, 1.0, 0.5, 1.0]
    events = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "alert" and events[-1]["event"] == "delivery"


def _summary(folder: Path, created: str, drifted: bool) -> None:
    folder.mkdir(parents=True)
    signals = [{"name": "image embeddings", "score": 0.9 if drifted else 0.5,
                "drift_detected": drifted}]
    (folder / "summary.json").write_text(json.dumps({
        "run_id": folder.name, "created": created, "catalog": "c", "model_version": "m1",
        "signals": signals, "drift_detected": drifted, "drift_share": float(drifted)}))


def test_history_page_lists_every_run_newest_first_with_a_trend(tmp_path):
    _summary(tmp_path / "run-a", "2026-11-01T00:00:00+00:00", False)
    _summary(tmp_path / "run-b", "2026-11-02T00:00:00+00:00", True)
    page = write_index(tmp_path).read_text()
    assert page.index("run-b") < page.index("run-a")
    assert "<svg" in page and "polyline" in page
    assert "run-a/report.html" in page and "DRIFT" in page
    history = json.loads((tmp_path / "history.json").read_text())
    assert [run["folder"] for run in history] == ["run-a", "run-b"]
    assert history[1]["scores"]["image embeddings"] == 0.9
