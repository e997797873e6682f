"""A fake Anthropic API on 127.0.0.1 for the real SDK: the Messages and Message Batches wire
format, a "model" that follows the agent's instructions, and scripted faults (malformed JSON,
429 with retry-after, 529, 500, slow replies, rejected keys, batches that stay in progress).
Error bodies echo the request's key, as some gateways do: vlclip must never re-print it."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = "sk-ant-test-0123456789-never-log-me"
DATA = re.compile(r"<product_data>\n(.*?)\n</product_data>", re.S)
DRAFT = re.compile(r"<draft>\n(.*?)\n</draft>", re.S)
TASK = re.compile(r"Task: (SUMMARIZE|EVALUATE|REFINE)\.")
INJECTION = "ignore previous instructions"
USAGE = {
    "input_tokens": 200,
    "output_tokens": 40,
    "cache_read_input_tokens": 1000,
    "cache_creation_input_tokens": 0,
}
ERRORS = {
    "429": (429, "rate_limit_error"),
    "529": (529, "overloaded_error"),
    "500": (500, "api_error"),
    "401": (401, "authentication_error"),
    "400": (400, "invalid_request_error"),
}


# --------------------------------------------------------------------------- the fake API


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


@dataclass
class FakeAnthropic:
    """State shared with the handler: what to answer next and what was asked."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    script: deque[str] = field(default_factory=deque)
    verdicts: deque[bool] = field(default_factory=deque)
    retry_after: str = "0.3"
    slow_s: float = 1.0
    delay_s: float = 0.0
    hold_batches: bool = False
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: itertools.count = field(default_factory=itertools.count)

    def messages(self) -> list[Seen]:
        return [s for s in self.seen if s.path == "/v1/messages"]

    def batch_creates(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and s.path == "/v1/messages/batches"]

    def next_behaviour(self) -> str:
        with self.lock:
            return self.script.popleft() if self.script else "good"

    # ----------------------------------------------------------------- the "model"

    def answer(self, body: dict[str, Any], behaviour: str) -> dict[str, Any]:
        """A Message for one request body, as a model that follows the rules would write it."""
        user = body["messages"][-1]["content"][-1]["text"]
        task = TASK.search(user).group(1)
        record = json.loads(DATA.search(user).group(1))
        injected = INJECTION in json.dumps(record).lower()
        if task == "EVALUATE":
            accepted = self.verdicts.popleft() if self.verdicts else True
            payload: dict[str, Any] = {
                "faithful": True,
                "unambiguous": True,
                "states_product_type": True,
                "visual_attributes": accepted,
                "no_marketing": True,
                "within_length": True,
                "matches_image": True if body["messages"][-1]["content"][0]["type"] == "image"
                else None,
                "problems": [] if accepted else ["name the accent colour"],
                "accepted": accepted,
            }
        else:
            if task == "SUMMARIZE":
                text = f"{record['product_type'].capitalize()}, {record['glossary_expansion']}."
            else:
                text = json.loads(DRAFT.search(user).group(1))["text"] + " With a blue accent."
            payload = {"text": text, "product_type": record["product_type"], "visual_facts": []}
            if injected:  # a model that obeys the injection: leaks, reshapes, adds fields
                system = body["system"][0]["text"]
                payload = {
                    "text": system[:250],
                    "product_type": "x",
                    "visual_facts": [],
                    "hacked": True,
                }
        if behaviour == "malformed":
            payload = {"txt": "missing the required fields"}
        if behaviour == "too_long":
            payload["text"] = "word " * 200
        tool = "submit_verdict" if task == "EVALUATE" else "submit_product_text"
        if "output_config" in body:
            content = [{"type": "text", "text": json.dumps(payload)}]
            if behaviour == "malformed":
                content = [{"type": "text", "text": "{not json"}]
            stop = "end_turn"
        else:
            content = [{"type": "tool_use", "id": f"toolu_{next(self.ids)}", "name": tool,
                        "input": payload}]
            stop = "tool_use"
        return {
            "id": f"msg_{next(self.ids)}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": dict(USAGE),
        }

    def batch_object(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        ended = batch["polls"] >= 1 and not self.hold_batches
        count = len(batch["requests"])
        now = datetime.now(UTC).isoformat()
        return {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": {"processing": 0 if ended else count, "succeeded": count if ended
                               else 0, "errored": 0, "canceled": 0, "expired": 0},
            "created_at": now,
            "expires_at": now,
            "ended_at": now if ended else None,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch_id}/results" if ended else None,
        }


def make_handler(fake: FakeAnthropic) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep the test output clean
            return

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def _error(self, code: str) -> None:
            status, kind = ERRORS[code]
            headers = {"retry-after": fake.retry_after} if status == 429 else {}
            # like some gateways, echo the key the request carried: it must never be re-printed
            echoed = self.headers.get("x-api-key") or self.headers.get("authorization", "")
            body = {"type": "error", "error": {"type": kind, "message": f"fake {kind} ({echoed})"}}
            self._send(status, body, headers)

        def _record(self, body: dict[str, Any]) -> None:
            with fake.lock:
                headers = {name.lower(): value for name, value in self.headers.items()}
                fake.seen.append(Seen(self.command, self.path, headers, body, time.monotonic()))

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            self._record(body)
            if self.path == "/v1/messages":
                self._messages(body)
            elif self.path == "/v1/messages/batches":
                self._create_batch(body)
            else:
                self._send(404, {"type": "error", "error": {"type": "not_found_error",
                                                            "message": self.path}})

        def _messages(self, body: dict[str, Any]) -> None:
            behaviour = fake.next_behaviour()
            if behaviour in ERRORS:
                self._error(behaviour)
                return
            with fake.lock:
                fake.in_flight += 1
                fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
            try:
                time.sleep(fake.slow_s if behaviour == "slow" else fake.delay_s)
                self._send(200, fake.answer(body, behaviour))
            finally:
                with fake.lock:
                    fake.in_flight -= 1

        def _create_batch(self, body: dict[str, Any]) -> None:
            batch_id = f"msgbatch_{next(fake.ids)}"
            results = []
            for entry in body["requests"]:
                message = fake.answer(entry["params"], fake.next_behaviour())
                results.append({"custom_id": entry["custom_id"],
                                "result": {"type": "succeeded", "message": message}})
            fake.batches[batch_id] = {"requests": body["requests"], "results": results,
                                      "polls": 0}
            self._send(200, fake.batch_object(batch_id))

        def do_GET(self) -> None:
            self._record({})
            match = re.fullmatch(r"/v1/messages/batches/([^/]+)(/results)?", self.path)
            if not match or match.group(1) not in fake.batches:
                self._send(404, {"type": "error", "error": {"type": "not_found_error",
                                                            "message": self.path}})
                return
            batch_id = match.group(1)
            if match.group(2):
                lines = "\n".join(json.dumps(r) for r in fake.batches[batch_id]["results"])
                self._send(200, (lines + "\n").encode(), content_type="application/binary")
                return
            fake.batches[batch_id]["polls"] += 1
            self._send(200, fake.batch_object(batch_id))

    return Handler


@contextmanager
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """A running fake API; its ``url`` is the base URL to give the SDK."""
    state = FakeAnthropic()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
