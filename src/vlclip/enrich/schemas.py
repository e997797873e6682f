"""What each agent step must return, as pydantic models: the schema sent and the validator.

The same model produces the JSON schema the API gets (a tool's ``input_schema`` or
``output_config.format``) and validates the reply, so the two cannot drift apart. Replies are
cleaned before validation (control characters out, white space folded) and checked for text
lifted from the instructions, which is how a prompt injection that worked would show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vlclip.enrich.rule_based import CONTROL_CHARACTERS

MAX_FACTS = 12
MAX_FACT_CHARS = 80
MAX_PRODUCT_TYPE_CHARS = 80
MAX_PROBLEMS = 8
MAX_PROBLEM_CHARS = 200
LEAK_SHINGLE_WORDS = 8
"""A reply that repeats this many consecutive words of the instructions is a leak."""
ERROR_CHARS = 300


def clean(text: str) -> str:
    """Control characters out, white space folded: what every returned string goes through."""
    return " ".join(CONTROL_CHARACTERS.sub(" ", text).split())


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _clean_strings(cls, value: Any) -> Any:
        if isinstance(value, str):
            return clean(value)
        if isinstance(value, list):
            return [clean(part) if isinstance(part, str) else part for part in value]
        return value


Fact = Annotated[str, Field(min_length=1, max_length=MAX_FACT_CHARS)]
Problem = Annotated[str, Field(min_length=1, max_length=MAX_PROBLEM_CHARS)]


class Draft(Reply):
    """A product text and the visible facts it states (summarise and refine steps)."""

    text: str = Field(min_length=1, description="The product text: one or two sentences.")
    product_type: str = Field(
        min_length=1,
        max_length=MAX_PRODUCT_TYPE_CHARS,
        description="The product type in plain words, as named in the text.",
    )
    visual_facts: list[Fact] = Field(
        max_length=MAX_FACTS,
        description="Each visible fact the text states: colour, shape, size, packaging, "
        "material, pattern or label mark, display.",
    )


class Verdict(Reply):
    """The evaluator's judgement of one draft, criterion by criterion."""

    faithful: bool = Field(description="Every fact is supported by the record or the photo.")
    unambiguous: bool = Field(description="Plain words, no unexpanded jargon, one reading.")
    states_product_type: bool = Field(description="Names the product type in plain words.")
    visual_attributes: bool = Field(
        description="States the visible facts the record gives (colour, packaging, size ...)."
    )
    no_marketing: bool = Field(description="No promotional or encyclopedic content.")
    within_length: bool = Field(description="Within the character limit, one or two sentences.")
    matches_image: bool | None = Field(
        description="The text agrees with the attached photo; null when no photo is attached."
    )
    problems: list[Problem] = Field(
        max_length=MAX_PROBLEMS,
        description="Each problem as a short, concrete instruction to fix it.",
    )
    accepted: bool = Field(description="True only when every criterion holds.")

    @property
    def checks(self) -> dict[str, bool]:
        """Every criterion as pass/fail; no photo counts as a pass of ``matches_image``."""
        return {
            "faithful": self.faithful,
            "unambiguous": self.unambiguous,
            "states_product_type": self.states_product_type,
            "visual_attributes": self.visual_attributes,
            "no_marketing": self.no_marketing,
            "within_length": self.within_length,
            "matches_image": self.matches_image is not False,
        }

    @property
    def passed(self) -> bool:
        """Accepted only when the model says so and no criterion failed."""
        return self.accepted and all(self.checks.values())

    @property
    def score(self) -> int:
        return sum(self.checks.values())


def json_schema(model: type[Reply], max_chars: int) -> dict[str, Any]:
    """The model's JSON schema with the text limit of this run filled in."""
    schema = model.model_json_schema()
    if "text" in schema.get("properties", {}):
        schema["properties"]["text"]["maxLength"] = max_chars
    return schema


@dataclass(frozen=True)
class Checked:
    """A validated reply, or why it was rejected (fed back to the model on the retry)."""

    value: Draft | Verdict | None
    error: str | None = None


def shingles(text: str, size: int = LEAK_SHINGLE_WORDS) -> set[tuple[str, ...]]:
    words = [word.strip(".,;:!?\"'()") for word in text.lower().split()]
    words = [word for word in words if word]
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def strings_of(value: Draft | Verdict) -> list[str]:
    strings: list[str] = []
    for field in value.model_dump().values():
        if isinstance(field, str):
            strings.append(field)
        elif isinstance(field, list):
            strings.extend(part for part in field if isinstance(part, str))
    return strings


def validate_reply(
    payload: Any,
    model: type[Draft] | type[Verdict],
    max_chars: int,
    forbidden: set[tuple[str, ...]],
    markers: tuple[str, ...],
) -> Checked:
    """Validate a decoded reply; reject over-long text, leaked instructions and data markers."""
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except json.JSONDecodeError as error:
            return Checked(None, f"the reply is not valid JSON ({error.msg})")
    if not isinstance(payload, dict):
        return Checked(None, "the reply must be a JSON object")
    try:
        value = model.model_validate(payload)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or 'reply'}: {item['msg']}"
            for item in error.errors()
        )
        return Checked(None, f"the reply does not match the schema ({problems})"[:ERROR_CHARS])
    if isinstance(value, Draft) and len(value.text) > max_chars:
        return Checked(None, f"text has {len(value.text)} characters; the limit is {max_chars}")
    for string in strings_of(value):
        lowered = string.lower()
        if any(marker in lowered for marker in markers):
            return Checked(None, "the reply contains data delimiter tags")
        if shingles(string) & forbidden:
            return Checked(None, "the reply repeats the instructions; describe the product only")
    return Checked(value)
