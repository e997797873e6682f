"""The enrichment agent (VL-CLIP step 2): summarise -> evaluate -> refine, until accepted.

Items advance in lock-step rounds: every round sends one request per unfinished item (its next
step), through a transport that is either concurrent realtime calls or one Message Batch. Each
reply is validated against its step's schema; a malformed reply is asked again (with the
reason) up to ``enrich.max_invalid_replies`` times, then the item keeps its offline rule-based
text and is flagged. An item whose drafts are never accepted within ``enrich.max_rounds`` keeps
the best-judged draft, flagged for review. Nothing here raises for one bad item.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from vlclip.config import EnrichParams
from vlclip.enrich.anthropic_backend import (
    DEFAULT_ENDPOINT,
    ApiRequest,
    EnrichConfigError,
    Failure,
    OnReply,
    Outcome,
    Reply,
)
from vlclip.enrich.cache import ReplyCache, request_key
from vlclip.enrich.prompts import (
    DRAFT_TOOL,
    MARKERS,
    VERDICT_TOOL,
    ItemInput,
    PromptSet,
    Step,
    encode_image,
)
from vlclip.enrich.rule_based import clean_text
from vlclip.enrich.schemas import Checked, Draft, Verdict, validate_reply

ACCEPTED = "accepted"
UNACCEPTED = "unaccepted"
FALLBACK = "fallback"
CLIENT_ERROR = "client_error"
log = logging.getLogger(__name__)


class Transport(Protocol):
    mode: str

    def execute(self, requests: list[ApiRequest], on_reply: OnReply) -> dict[str, Outcome]: ...


@dataclass(frozen=True)
class ItemResult:
    text: str
    status: str
    """accepted, unaccepted (best draft after max_rounds) or fallback (offline text)."""
    rounds: int
    reason: str = ""

    @property
    def flagged(self) -> bool:
        return self.status != ACCEPTED

    @property
    def backend(self) -> str:
        return "rule_based" if self.status == FALLBACK else "anthropic"


@dataclass
class ItemState:
    """Where one item is in the loop: its step, draft round, retries and best draft so far."""

    item: ItemInput
    fallback: str
    step: Step = Step.SUMMARIZE
    round: int = 1
    attempt: int = 0
    invalid: str | None = None
    draft: Draft | None = None
    problems: list[str] = field(default_factory=list)
    best: tuple[int, Draft] | None = None
    result: ItemResult | None = None


@dataclass
class Usage:
    """Tokens of the replies that came from the API in this run (cache hits are free)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def add(self, usage: dict[str, Any]) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + int(usage.get(name) or 0))


@dataclass
class AgentStats:
    rounds: int = 0
    api_replies: int = 0
    cache_hits: int = 0
    invalid_replies: int = 0
    failed_calls: int = 0


def failed_criteria(verdict: Verdict) -> list[str]:
    return [f"fix the failed criterion: {name}" for name, ok in verdict.checks.items() if not ok]


class EnrichAgent:
    """Runs the loop for a list of items over one transport and one reply cache."""

    def __init__(self, params: EnrichParams, transport: Transport, cache: ReplyCache) -> None:
        self.params = params
        self.transport = transport
        self.cache = cache
        self.prompts = PromptSet(params.max_chars, params.structured_output)
        self._forbidden = self.prompts.forbidden_shingles
        self._meta: dict[str, dict[str, str]] = {}
        self.usage = Usage()
        self.stats = AgentStats()

    # ----------------------------------------------------------------- requests

    def _with_photo(self, state: ItemState) -> bool:
        path = state.item.image_path
        if path is None or not path.is_file() or self.params.image_input == "none":
            return False
        return self.params.image_input == "all" or state.step is Step.EVALUATE

    def request_for(self, state: ItemState) -> ApiRequest:
        """The next request of an item; its key hashes everything that decides the reply."""
        with_photo = self._with_photo(state)
        text = self.prompts.user_text(
            state.step, state.item, state.draft, state.problems, with_photo, state.invalid
        )
        image, image_hash = None, None
        if with_photo and state.item.image_path is not None:
            media_type, data, image_hash = encode_image(state.item.image_path)
            image = (media_type, data)
        key = request_key(
            self.params.model,
            self.params.prompt_version,
            self.prompts.fingerprint,
            str(state.step),
            state.attempt,
            text,
            image_hash,
        )
        body = self.prompts.body(
            state.step,
            text,
            image,
            self.params.model,
            self.params.max_tokens,
            self.params.temperature,
        )
        meta = {
            "model": self.params.model,
            "prompt_version": self.params.prompt_version,
            "step": str(state.step),
            "item_id": state.item.item_id,
        }
        return ApiRequest(key, body, meta)

    # ----------------------------------------------------------------- replies

    def _on_reply(self, key: str, reply: Reply) -> None:
        """Every reply from the API: cache it at once and count its tokens."""
        self.cache.put(key, reply, self._meta.get(key))
        self.usage.add(reply.get("usage", {}))
        self.stats.api_replies += 1

    def parse(self, step: Step, reply: Reply) -> Checked:
        """Decode and validate one reply for ``step``; say why when it is unusable."""
        stop = reply.get("stop_reason")
        if stop == "max_tokens":
            return Checked(None, "the answer was cut off at max_tokens; answer more briefly")
        if stop == "refusal":
            return Checked(None, "the request was refused")
        model = Verdict if step is Step.EVALUATE else Draft
        blocks = reply.get("content", [])
        if self.params.structured_output == "tool":
            tool = VERDICT_TOOL if step is Step.EVALUATE else DRAFT_TOOL
            calls = [b for b in blocks if b.get("type") == "tool_use"]
            chosen = [b for b in calls if b.get("name") == tool]
            if not chosen:
                return Checked(None, f"no call of the tool {tool}")
            payload: Any = chosen[0].get("input")
        else:
            payload = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
        return validate_reply(payload, model, self.params.max_chars, self._forbidden, MARKERS)

    # ----------------------------------------------------------------- the loop

    def _finish(self, state: ItemState, status: str, text: str, reason: str = "") -> None:
        cleaned = clean_text(text, self.params.max_chars) or state.fallback
        state.result = ItemResult(cleaned, status, state.round, reason)

    def _fall_back(self, state: ItemState, reason: str) -> None:
        log.debug("item %s falls back to the offline text: %s", state.item.item_id, reason)
        self._finish(state, FALLBACK, state.fallback, reason)

    def advance(self, state: ItemState, outcome: Outcome) -> None:
        """Move one item one step on, given the reply (or failure) of its current step."""
        if isinstance(outcome, Failure):
            self.stats.failed_calls += 1
            self._fall_back(state, f"{outcome.kind}: {outcome.message}")
            return
        checked = self.parse(state.step, outcome)
        if checked.error is not None or checked.value is None:
            self.stats.invalid_replies += 1
            state.attempt += 1
            state.invalid = checked.error
            if state.attempt > self.params.max_invalid_replies:
                self._fall_back(state, f"invalid reply: {checked.error}")
            return
        state.attempt, state.invalid = 0, None
        if isinstance(checked.value, Draft):
            state.draft = checked.value
            state.step = Step.EVALUATE
            return
        verdict = checked.value
        assert isinstance(verdict, Verdict) and state.draft is not None
        if state.best is None or verdict.score >= state.best[0]:
            state.best = (verdict.score, state.draft)
        if verdict.passed:
            self._finish(state, ACCEPTED, state.draft.text)
        elif state.round >= self.params.max_rounds:
            self._finish(state, UNACCEPTED, state.best[1].text, "; ".join(verdict.problems))
        else:
            state.round += 1
            state.problems = list(verdict.problems) or failed_criteria(verdict)
            state.step = Step.REFINE

    def _stop_on_configuration_errors(self, outcomes: dict[str, Outcome]) -> None:
        """A rejected key, or every call of a round refused as a bad request: stop the run."""
        failures = [o for o in outcomes.values() if isinstance(o, Failure)]
        fatal = [f for f in failures if f.fatal]
        if fatal:
            raise EnrichConfigError(
                f"the API refused the credentials ({fatal[0].status}): {fatal[0].message}"
            )
        unreachable = [f for f in failures if f.kind in ("connection", "timeout")]
        if outcomes and len(unreachable) * 2 > len(outcomes):
            endpoint = self.params.base_url or DEFAULT_ENDPOINT
            raise EnrichConfigError(
                f"cannot reach the Claude API at {endpoint}: {len(unreachable)} of "
                f"{len(outcomes)} requests of the round failed to connect or timed out; check "
                "enrich.base_url and the network (enrich.backend: rule_based runs offline)"
            )
        if outcomes and len(failures) == len(outcomes) and all(
            f.kind == CLIENT_ERROR for f in failures
        ):
            raise EnrichConfigError(
                f"every request of the round was rejected ({failures[0].status}): "
                f"{failures[0].message}. Check enrich.model, enrich.temperature and "
                "enrich.structured_output for this model"
            )

    def run(self, items: list[ItemInput], fallbacks: dict[str, str]) -> dict[str, ItemResult]:
        states = [ItemState(item, fallbacks[item.item_id]) for item in items]
        while active := [state for state in states if state.result is None]:
            self.stats.rounds += 1
            planned = [(state, self.request_for(state)) for state in active]
            replies: dict[str, Outcome] = {}
            missing: dict[str, ApiRequest] = {}
            for _, request in planned:
                cached = self.cache.get(request.key)
                if cached is not None:
                    replies[request.key] = cached
                    self.stats.cache_hits += 1
                else:
                    missing.setdefault(request.key, request)
            log.info(
                "round %d: %d items, %d replies from the cache, %d requests to the API (%s)",
                self.stats.rounds,
                len(active),
                len(planned) - len(missing),
                len(missing),
                self.transport.mode,
            )
            if missing:
                self._meta = {key: request.meta for key, request in missing.items()}
                outcomes = self.transport.execute(list(missing.values()), self._on_reply)
                self._stop_on_configuration_errors(outcomes)
                replies.update(outcomes)
            for state, request in planned:
                self.advance(state, replies[request.key])
        return {state.item.item_id: state.result for state in states if state.result}
