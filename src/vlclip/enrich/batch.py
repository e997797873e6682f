"""Catalog scale: each agent round as one Message Batch (submit, poll, collect, resume).

Batches cost half as much as realtime calls and have far higher limits, but take minutes to
hours. The id of every submitted batch goes to a state file at once, so a stage that is killed
or times out (``enrich.batch_timeout_s``) resumes the same batch on the next run instead of
paying for it twice. Each request's ``custom_id`` is its cache key, so results land in the reply
cache whichever run collects them, and a round that was half done replays from the cache.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic

from vlclip.config import EnrichParams
from vlclip.enrich.anthropic_backend import (
    NOT_FOUND,
    ApiRequest,
    Failure,
    OnReply,
    Outcome,
    RetryPolicy,
    normalise,
    redact,
)
from vlclip.io import atomic_write_text, write_json

STATE_FILE = "batch-state.json"
ENDED = "ended"
MAX_BATCH_BYTES = 200 * 1024 * 1024
"""Below the API's 256 MB per batch; crops in base64 make requests tens of kilobytes each."""
log = logging.getLogger(__name__)


class BatchPending(RuntimeError):
    """A batch did not end in time; its id is kept and the next run resumes it."""


def read_state(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return list(json.loads(path.read_text()).get("batches", []))


def chunks(
    requests: list[ApiRequest], max_requests: int, max_bytes: int
) -> list[list[ApiRequest]]:
    """Consecutive groups within both the request and the size limit of one batch."""
    groups: list[list[ApiRequest]] = []
    current: list[ApiRequest] = []
    size = 0
    for request in requests:
        request_bytes = len(json.dumps(request.body))
        if current and (len(current) >= max_requests or size + request_bytes > max_bytes):
            groups.append(current)
            current, size = [], 0
        current.append(request)
        size += request_bytes
    if current:
        groups.append(current)
    return groups


class BatchTransport:
    """Runs one agent round as one batch (several when it exceeds batch_max_requests)."""

    mode = "batch"

    def __init__(
        self,
        client: anthropic.Anthropic,
        params: EnrichParams,
        policy: RetryPolicy,
        state_path: Path,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.params = params
        self.policy = policy
        self.state_path = state_path
        self.sleep = sleep
        self.clock = clock

    # ----------------------------------------------------------------- state file

    def _save(self, batches: list[dict[str, Any]]) -> None:
        if batches:
            write_json(self.state_path, {"batches": batches})
        elif self.state_path.exists():
            atomic_write_text(self.state_path, '{"batches": []}\n')

    def _remember(self, batch_id: str, count: int) -> None:
        batches = read_state(self.state_path)
        batches.append(
            {"id": batch_id, "requests": count, "submitted": datetime.now(UTC).isoformat()}
        )
        self._save(batches)

    def _forget(self, batch_id: str) -> None:
        self._save([entry for entry in read_state(self.state_path) if entry["id"] != batch_id])

    # ----------------------------------------------------------------- one batch

    def _submit(self, chunk: list[ApiRequest]) -> str | Failure:
        entries = [{"custom_id": request.key, "params": request.body} for request in chunk]
        created = self.policy.call(lambda: self.client.messages.batches.create(requests=entries))
        if isinstance(created, Failure):
            return created
        self._remember(created.id, len(chunk))
        self.policy.stats.add(batches=1)
        log.info("submitted batch %s (%d requests)", created.id, len(chunk))
        return created.id

    def _wait(self, batch_id: str) -> bool:
        """Poll until the batch ends; False when it no longer exists."""
        deadline = self.clock() + self.params.batch_timeout_s
        while True:
            batch = self.policy.call(lambda: self.client.messages.batches.retrieve(batch_id))
            if isinstance(batch, Failure):
                if batch.status == NOT_FOUND:
                    log.warning("batch %s no longer exists; its requests are sent again", batch_id)
                    return False
                raise BatchPending(
                    f"could not poll batch {batch_id} ({batch.message}); "
                    "run `vlclip enrich` again to resume it"
                )
            if batch.processing_status == ENDED:
                return True
            if self.clock() >= deadline:
                raise BatchPending(
                    f"batch {batch_id} is still {batch.processing_status} after "
                    f"{self.params.batch_timeout_s:.0f} s; its id is saved in {self.state_path}: "
                    "run `vlclip enrich` again to resume it"
                )
            self.sleep(self.params.batch_poll_s)

    def _collect(self, batch_id: str, on_reply: OnReply) -> dict[str, Outcome]:
        if not self._wait(batch_id):
            self._forget(batch_id)
            return {}
        entries = self.policy.call(lambda: list(self.client.messages.batches.results(batch_id)))
        if isinstance(entries, Failure):
            raise BatchPending(
                f"could not read the results of batch {batch_id} ({entries.message}); "
                "run `vlclip enrich` again to collect them"
            )
        outcomes: dict[str, Outcome] = {}
        for entry in entries:
            result = entry.result
            if result.type == "succeeded":
                reply = normalise(result.message)
                on_reply(entry.custom_id, reply)
                outcomes[entry.custom_id] = reply
            else:
                detail = getattr(getattr(result, "error", None), "error", None)
                message = getattr(detail, "message", result.type)
                outcomes[entry.custom_id] = Failure(
                    f"batch_{result.type}", None, redact(str(message))
                )
        self._forget(batch_id)
        return outcomes

    # ----------------------------------------------------------------- a round

    def execute(self, requests: list[ApiRequest], on_reply: OnReply) -> dict[str, Outcome]:
        """Resume batches an earlier run left behind, then submit what is still missing."""
        outcomes: dict[str, Outcome] = {}
        for entry in read_state(self.state_path):
            log.info("resuming batch %s from %s", entry["id"], self.state_path)
            outcomes.update(self._collect(entry["id"], on_reply))
        missing = [request for request in requests if request.key not in outcomes]
        submitted: list[str] = []
        for chunk in chunks(missing, self.params.batch_max_requests, MAX_BATCH_BYTES):
            batch_id = self._submit(chunk)
            if isinstance(batch_id, Failure):
                outcomes.update({request.key: batch_id for request in chunk})
            else:
                submitted.append(batch_id)
        for batch_id in submitted:
            outcomes.update(self._collect(batch_id, on_reply))
        absent = Failure("batch_missing", None, "the batch returned no result for this request")
        return {request.key: outcomes.get(request.key, absent) for request in requests}
