"""Offline enrichment: expand shop jargon, normalise units, turn attributes into sentences.

Deterministic and free; the default when no LLM is configured. The glossary is a JSON file
(``glossary.json`` beside this module, or ``enrich.glossary_path``) mapping abbreviations to
words, attribute keys to names, and units to their spoken form. The packaged glossary is
hand-written general shop knowledge; nothing here may come from the demo catalog's generator
(DESIGN.md, "Honest evaluation"), so demo titles it cannot read stay partly unread.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DEFAULT_GLOSSARY = Path(__file__).with_name("glossary.json")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# "3.5OZ", "16 fl oz", "500ML", "2 x 1.5 l": a number, optional space, a unit token.
QUANTITY = re.compile(r"(?P<number>\d+(?:[.,]\d+)?)\s*(?P<unit>fl\.?\s?oz|[a-z]+)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Glossary:
    words: dict[str, str]
    attribute_keys: dict[str, str]
    units: dict[str, tuple[str, float | None, str | None]]
    """unit token -> (spoken unit, factor to the metric unit, metric unit)."""
    drop_keys: frozenset[str] = frozenset()
    """Attributes that say nothing a photo shows (barcodes, case packs)."""
    attribute_order: tuple[str, ...] = ()
    """Attribute names that lead the text, in this order (visual ones first)."""

    @classmethod
    def load(cls, path: Path | None = None) -> Glossary:
        return _load_glossary(str(path or DEFAULT_GLOSSARY))


@cache
def _load_glossary(path: str) -> Glossary:
    data = json.loads(Path(path).read_text())
    return Glossary(
        words={k.lower(): v for k, v in data["words"].items()},
        attribute_keys={k.lower(): v for k, v in data["attribute_keys"].items()},
        units={
            k.lower().replace(" ", "").replace(".", ""): (
                v["name"],
                v.get("factor"),
                v.get("metric"),
            )
            for k, v in data["units"].items()
        },
        drop_keys=frozenset(k.lower() for k in data.get("drop_keys", [])),
        attribute_order=tuple(data.get("attribute_order", [])),
    )


def as_text(value: object) -> str:
    """A table cell as text: missing values (None, NaN) become the empty string."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def expand_title(title: str, glossary: Glossary) -> str:
    """Shop jargon and units of a title spelled out: what the agent gets as a reading aid."""
    return normalise_quantity(expand_words(title, glossary), glossary)


def clean_text(text: str, max_chars: int) -> str:
    """Strip control characters, fold white space, cap the length at a word boundary."""
    text = " ".join(CONTROL_CHARACTERS.sub(" ", text).split())
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def _format_number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}" if value < 1 else f"{value:.1f}"


def normalise_quantity(text: str, glossary: Glossary) -> str:
    """Spell out units and add the metric equivalent: ``12OZ`` -> ``12 ounces (340 g)``."""

    def replace(match: re.Match[str]) -> str:
        unit_key = match["unit"].lower().replace(" ", "").replace(".", "")
        if unit_key not in glossary.units:
            return match[0]
        name, factor, metric = glossary.units[unit_key]
        number = match["number"].replace(",", ".")
        spoken = f"{number} {name}"
        if factor and metric:
            spoken += f" ({_format_number(float(number) * factor)} {metric})"
        return spoken

    return QUANTITY.sub(replace, text)


def expand_words(text: str, glossary: Glossary) -> str:
    """Replace each abbreviated token (split on spaces and slashes) by its glossary word."""
    words = []
    for token in re.split(r"(\s+|/)", text):
        key = token.strip().lower().rstrip(".")
        if key in glossary.words:
            words.append(glossary.words[key])
        elif token == "/":
            words.append(" and ")
        elif token.isupper() and len(token) > 1:
            words.append(token.lower())
        else:
            words.append(token)
    return "".join(words)


def attribute_sentence(attributes: dict, glossary: Glossary) -> str:
    """``name: value`` parts, visual attributes first, non-visual codes dropped."""
    parts: list[tuple[int, str]] = []
    for key in sorted(attributes):
        value = attributes[key]
        if value in (None, "") or isinstance(value, dict | list):
            continue
        if key.lower() in glossary.drop_keys:
            continue
        name = glossary.attribute_keys.get(key.lower(), key.replace("_", " "))
        spoken = normalise_quantity(expand_words(str(value), glossary), glossary)
        rank = (
            glossary.attribute_order.index(name)
            if name in glossary.attribute_order
            else len(glossary.attribute_order)
        )
        parts.append((rank, f"{name}: {spoken}"))
    return "; ".join(part for _, part in sorted(parts, key=lambda pair: pair[0]))


def parse_attributes(text: str) -> dict:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def enrich_item(
    title: str,
    product_type: str,
    category: str,
    attributes_json: str,
    glossary: Glossary,
    max_chars: int,
    seen: str = "",
    description: str = "",
) -> str:
    """A short product text: type and name, then what the photo shows (``seen``: words
    measured from the listing's photo, see :mod:`vlclip.enrich.visual`), the attributes (pass
    ``"{}"`` to leave them out) and ``description``, in that order, so the cap trims the
    description first."""
    expanded_title = normalise_quantity(expand_words(title, glossary), glossary)
    sentences = [f"{product_type.strip().capitalize()} ({category.strip()})"]
    sentences.append(expanded_title.strip().lower())
    sentences.append(seen)
    sentences.append(attribute_sentence(parse_attributes(attributes_json), glossary))
    sentences.append(description.strip().rstrip("."))
    return clean_text(". ".join(s for s in sentences if s) + ".", max_chars)
