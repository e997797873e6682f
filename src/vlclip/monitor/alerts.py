"""Drift alerts that reach a person: Apprise targets (Slack, PagerDuty, Opsgenie, Teams, email,
webhooks: one URL each), an append-only JSON-lines log and the console.

Targets come from the environment (``VLCLIP_ALERT_URLS``, whitespace-separated Apprise URLs) or
from the Airflow connection the DAG passes in, never from tracked files. The same drift against
the same model pages once per window; the window's state is a file, so it survives restarts. A
failing target is retried with backoff and logged; the alert record is appended before any
target is tried, so no target can lose it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vlclip.io import atomic_write_text

log = logging.getLogger(__name__)

TARGETS_ENV = "VLCLIP_ALERT_URLS"
ALERTS_LOG = "alerts.jsonl"
STATE_FILE = "alert-state.json"


@dataclass(frozen=True)
class Alert:
    title: str
    body: str
    fingerprint: str
    """What makes two alerts "the same drift": the model version and the drifted signals."""
    run_id: str
    report: str


def targets_from_env(environ: dict[str, str] | None = None) -> list[str]:
    return (environ if environ is not None else os.environ).get(TARGETS_ENV, "").split()


def redact(url: str) -> str:
    """The URL as Apprise prints it with secrets hidden (what the log may keep)."""
    import apprise

    parsed = apprise.Apprise.instantiate(url)
    return parsed.url(privacy=True) if parsed else url.split("://", 1)[0] + "://(unparsable)"


def _send_once(url: str, alert: Alert) -> bool:
    import apprise

    target = apprise.Apprise()
    if not target.add(url):
        raise ValueError(f"not an Apprise URL: {redact(url)}")
    return bool(target.notify(title=alert.title, body=alert.body))


def deliver(
    url: str,
    alert: Alert,
    retries: int,
    backoff_s: float,
    send: Callable[[str, Alert], bool] = _send_once,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Send to one target with exponential backoff; never raises."""
    wait = backoff_s
    error = ""
    for attempt in range(1, retries + 2):
        try:
            if send(url, alert):
                return {"target": redact(url), "delivered": True, "attempts": attempt}
            error = "the target refused or did not answer"
        except Exception as problem:  # noqa: BLE001 - a target must never stop the monitor
            error = str(problem)
        log.warning("alert to %s failed (try %d): %s", redact(url), attempt, error)
        if attempt <= retries:
            sleep(wait)
            wait *= 2
    return {"target": redact(url), "delivered": False, "attempts": retries + 1, "error": error}


def _load_state(path: Path) -> dict[str, str]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def raise_alert(
    alert: Alert,
    folder: Path,
    targets: Sequence[str],
    window: timedelta,
    retries: int = 3,
    backoff_s: float = 2.0,
    now: datetime | None = None,
    send: Callable[[str, Alert], bool] = _send_once,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Record, dedup and deliver one alert; return its record (also appended to the log)."""
    now = now or datetime.now(UTC)
    folder.mkdir(parents=True, exist_ok=True)
    state_path = folder / STATE_FILE
    state = _load_state(state_path)
    last = state.get(alert.fingerprint)
    suppressed = last is not None and now - datetime.fromisoformat(last) < window
    record = {
        "event": "alert",
        "time": now.isoformat(),
        "run_id": alert.run_id,
        "title": alert.title,
        "body": alert.body,
        "report": alert.report,
        "fingerprint": alert.fingerprint,
        "suppressed": suppressed,
    }
    log_path = folder / ALERTS_LOG
    _append(log_path, record)  # before any target is tried: no target can lose it
    if suppressed:
        log.info("alert suppressed: the same drift was alerted at %s (window %s)", last, window)
        return {**record, "deliveries": []}
    print(f"ALERT {alert.title}\n{alert.body}", flush=True)
    deliveries = [deliver(url, alert, retries, backoff_s, send, sleep) for url in targets]
    state[alert.fingerprint] = now.isoformat()
    atomic_write_text(state_path, json.dumps(state, indent=2))
    _append(log_path, {"event": "delivery", "run_id": alert.run_id,
                       "time": datetime.now(UTC).isoformat(), "deliveries": deliveries})
    return {**record, "deliveries": deliveries}


def _append(path: Path, record: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
