"""Claude through the official SDK: the client, reply normalisation, realtime calls with retries.

The SDK's own retries are switched off (``max_retries=0``) so that one loop, configured in
params and covered by the tests, owns the policy: retry 408, 409, 429, 5xx (529 included),
timeouts and dropped connections; wait what ``retry-after`` says when the server says it (and
hold every worker back for that long, not just the one that was told), else back off
exponentially with jitter. A call that still fails becomes a :class:`Failure` for its item,
never an exception out of the stage; a rejected API key is a configuration error and stops the
run. The API key is read from the environment only and never logged or written anywhere.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import anthropic

from vlclip.config import EnrichParams

API_KEY_ENV = "ANTHROPIC_API_KEY"
RATE_LIMITED = 429
NOT_FOUND = 404
RETRYABLE_STATUS = frozenset({408, 409, RATE_LIMITED})
FIRST_SERVER_ERROR = 500
FATAL_STATUS = frozenset({401, 403})
JITTER = 0.25
"""Backoff delays are shortened by up to this fraction, so workers do not retry in step."""
MESSAGE_CHARS = 300
EXTRA_BODY_KEYS = frozenset({"temperature"})
"""API fields this SDK version has no keyword for; they travel in ``extra_body``."""
MAX_RETRY_AFTER_S = 600.0
"""A retry-after beyond this is treated as this (a broken header must not hang the stage)."""
log = logging.getLogger(__name__)
KEY_PATTERN = re.compile(r"sk-ant-[A-Za-z0-9_\-]+")
REDACTED = "[redacted]"
DEFAULT_ENDPOINT = "https://api.anthropic.com"


def redact(text: str) -> str:
    """``text`` without the configured API key or anything shaped like an Anthropic key (an
    API error may echo the request's key; it must not reach a log, a report or the cache)."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    if key:
        text = text.replace(key, REDACTED)
    return KEY_PATTERN.sub(REDACTED, text)


class EnrichConfigError(ValueError):
    """The Claude backend cannot run as configured (no API key, key rejected, bad model)."""


@dataclass(frozen=True)
class ApiRequest:
    """One Messages API call: its cache key (also the batch custom_id) and its body."""

    key: str
    body: dict[str, Any]
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    """A call that produced no reply after every retry (or a batch entry that errored)."""

    kind: str
    status: int | None
    message: str

    @property
    def fatal(self) -> bool:
        return self.status in FATAL_STATUS


Reply = dict[str, Any]
Outcome = Reply | Failure
OnReply = Callable[[str, Reply], None]


def api_key() -> str:
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise EnrichConfigError(
            f"enrich.backend is anthropic but {API_KEY_ENV} is not set; export it, or use "
            "enrich.backend: auto / rule_based to run offline"
        )
    return key


def make_client(params: EnrichParams) -> anthropic.Anthropic:
    """A client whose retries are ours (max_retries=0) and whose key comes from the environment."""
    return anthropic.Anthropic(
        api_key=api_key(),
        base_url=params.base_url,
        max_retries=0,
        timeout=params.timeout_s,
    )


def normalise(message: Any) -> Reply:
    """The parts of a Message the agent uses, as plain JSON (what the cache stores)."""
    content: list[dict[str, Any]] = []
    for block in message.content:
        if block.type == "tool_use":
            content.append({"type": "tool_use", "name": block.name, "input": block.input})
        elif block.type == "text":
            content.append({"type": "text", "text": block.text})
    usage = message.usage
    return {
        "content": content,
        "stop_reason": message.stop_reason,
        "usage": {
            "input_tokens": usage.input_tokens or 0,
            "output_tokens": usage.output_tokens or 0,
            "cache_read_input_tokens": usage.cache_read_input_tokens or 0,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens or 0,
        },
    }


def is_retryable(error: Exception) -> bool:
    if isinstance(error, anthropic.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(error, anthropic.APIStatusError):
        return error.status_code in RETRYABLE_STATUS or error.status_code >= FIRST_SERVER_ERROR
    return False


def retry_after_s(error: Exception) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, retry-after seconds or date)."""
    response = getattr(error, "response", None)
    if response is None:
        return None
    headers = response.headers
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is None:
                continue
            seconds = email.utils.mktime_tz(parsed) - time.time()
        return min(max(0.0, seconds), MAX_RETRY_AFTER_S)
    return None


def failure_of(error: Exception) -> Failure:
    if isinstance(error, anthropic.APITimeoutError):
        return Failure("timeout", None, "request timed out")
    if isinstance(error, anthropic.APIConnectionError):
        return Failure("connection", None, "connection failed")
    if isinstance(error, anthropic.APIStatusError):
        kind = "client_error" if error.status_code < FIRST_SERVER_ERROR else "server_error"
        if error.status_code == RATE_LIMITED:
            kind = "rate_limited"
        return Failure(kind, error.status_code, redact(str(error.message))[:MESSAGE_CHARS])
    return Failure("error", None, redact(f"{type(error).__name__}: {error}")[:MESSAGE_CHARS])


@dataclass
class CallStats:
    """What the transport did this run (thread-safe counters)."""

    http_requests: int = 0
    batches: int = 0
    retries: int = 0
    failures: int = 0
    waited_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: float) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


class Pacer:
    """Holds every worker back until the latest retry-after has passed."""

    def __init__(self, sleep: Callable[[float], None]) -> None:
        self._sleep = sleep
        self._lock = threading.Lock()
        self._not_before = 0.0

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._not_before = max(self._not_before, time.monotonic() + seconds)

    def wait(self) -> None:
        with self._lock:
            delay = self._not_before - time.monotonic()
        if delay > 0:
            self._sleep(delay)


class RetryPolicy:
    """Call a function, retrying transient API errors as params say."""

    def __init__(
        self,
        params: EnrichParams,
        stats: CallStats,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ) -> None:
        self.params = params
        self.stats = stats
        self.sleep = sleep
        self.pacer = Pacer(sleep)
        self._random = random.Random(seed)

    def backoff_s(self, attempt: int) -> float:
        base = min(self.params.backoff_max_s, self.params.backoff_initial_s * 2**attempt)
        return base * (1.0 - JITTER * self._random.random())

    def call(self, action: Callable[[], Any]) -> Any:
        """``action()``'s result, or the :class:`Failure` of its last attempt."""
        for attempt in range(self.params.max_retries + 1):
            self.pacer.wait()
            self.stats.add(http_requests=1)
            try:
                return action()
            except anthropic.APIError as error:
                if not is_retryable(error) or attempt == self.params.max_retries:
                    self.stats.add(failures=1)
                    return failure_of(error)
                told = retry_after_s(error)
                delay = told if told is not None else self.backoff_s(attempt)
                if told is not None:
                    self.pacer.hold(told)
                log.debug("retrying after %s (%.2f s)", type(error).__name__, delay)
                self.stats.add(retries=1, waited_s=delay)
                self.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns")


class RealtimeTransport:
    """Messages API calls, at most ``enrich.concurrency`` at a time."""

    mode = "realtime"

    def __init__(self, client: anthropic.Anthropic, params: EnrichParams, policy: RetryPolicy):
        self.client = client
        self.params = params
        self.policy = policy

    def _send(self, request: ApiRequest) -> Outcome:
        known = {k: v for k, v in request.body.items() if k not in EXTRA_BODY_KEYS}
        extra = {k: v for k, v in request.body.items() if k in EXTRA_BODY_KEYS}
        outcome = self.policy.call(
            lambda: self.client.messages.create(**known, extra_body=extra or None)
        )
        return outcome if isinstance(outcome, Failure) else normalise(outcome)

    def execute(self, requests: list[ApiRequest], on_reply: OnReply) -> dict[str, Outcome]:
        """Send every request; store each reply through ``on_reply`` as soon as it arrives.

        After a rejected key (401/403) nothing more is sent: the rest of the round would only
        repeat the refusal (and the key) to the server.
        """
        outcomes: dict[str, Outcome] = {}
        if not requests:
            return outcomes
        refused = threading.Event()

        def send(request: ApiRequest) -> Outcome:
            if refused.is_set():
                return Failure("skipped", None, "not sent: the API refused the credentials")
            outcome = self._send(request)
            if isinstance(outcome, Failure) and outcome.fatal:
                refused.set()
            return outcome

        workers = min(self.params.concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="enrich") as pool:
            futures = {pool.submit(send, request): request for request in requests}
            for future in as_completed(futures):
                request = futures[future]
                outcome = future.result()
                if not isinstance(outcome, Failure):
                    on_reply(request.key, outcome)
                outcomes[request.key] = outcome
        return outcomes
