"""The offline enrichment backend: glossary expansion, units, attribute sentences."""

import json

import pytest

from vlclip.enrich.rule_based import (
    Glossary,
    attribute_sentence,
    clean_text,
    enrich_item,
    expand_title,
    expand_words,
    normalise_quantity,
)

# Abbreviations any retail merchandising team reads at sight; the glossary must know them.
COMMON_RETAIL_ABBREVIATIONS = {
    "ORG": "organic", "BTL": "bottle", "PK": "pack", "CTN": "carton", "LRG": "large",
    "SM": "small", "BLK": "black", "WHT": "white", "ASST": "assorted", "EA": "each",
}


@pytest.fixture(scope="module")
def glossary() -> Glossary:
    return Glossary.load()


def test_glossary_reads_common_retail_abbreviations(glossary):
    for abbreviation, word in COMMON_RETAIL_ABBREVIATIONS.items():
        assert expand_words(abbreviation, glossary) == word
        assert expand_words(abbreviation.capitalize() + ".", glossary) == word  # "Org."


def test_glossary_words_never_hide_a_unit(glossary):
    """Words are expanded before units are read: no word may turn "2 LTR" into "2 litter"."""
    for unit in glossary.units:
        typed = f"2 {unit.upper()}"
        assert expand_title(typed, glossary) == normalise_quantity(f"2 {unit}", glossary), unit


def test_words_and_units_are_expanded(glossary):
    assert (
        expand_words("ORG OLV OIL BTL RD/WHT", glossary) == "organic olive oil bottle red and white"
    )
    assert normalise_quantity("12OZ", glossary) == "12 ounces (340 g)"
    assert normalise_quantity("16.9 fl oz", glossary) == "16.9 fluid ounces (500 ml)"
    assert normalise_quantity("2L", glossary) == "2 litres (2000 ml)"
    assert normalise_quantity("model 7X", glossary) == "model 7X"  # unknown unit left alone


def test_attributes_lead_with_visual_facts_and_drop_codes(glossary):
    attributes = {
        "upc": "012345678905",
        "sz": "500 ml",
        "clr": "rd",
        "pattern": "strp",
        "case_pack": 12,
    }
    sentence = attribute_sentence(attributes, glossary)
    assert sentence == "colour: red; pattern: stripes; size: 500 ml"


def test_enriched_text_is_capped_and_clean(glossary):
    text = enrich_item(
        "SDA CN 12OZ\x07",
        "soda can",
        "beverages",
        json.dumps({"clr": "blu"}),
        glossary,
        max_chars=300,
    )
    assert text.startswith("Soda can (beverages). soda can 12 ounces (340 g)")
    assert "colour: blue" in text
    assert "\x07" not in text
    long = clean_text("word " * 200, 50)
    assert len(long) <= 50 and long.endswith("…")


def test_enrichment_is_deterministic_and_tolerates_bad_attributes(glossary):
    first = enrich_item("GRN TEA TIN", "tea tin", "pantry", "not json", glossary, 300)
    assert first == enrich_item("GRN TEA TIN", "tea tin", "pantry", "not json", glossary, 300)
    assert first == "Tea tin (pantry). green tea tin."


def test_offline_text_parts_follow_the_settings(tmp_path):
    """Type + name always; attributes and description only when asked, description last."""
    import pandas as pd

    from vlclip.catalog.schema import Catalog, Manifest
    from vlclip.config import EnrichParams
    from vlclip.enrich import enrich

    catalog = Catalog(
        root=tmp_path,
        manifest=Manifest(source="table", image_root="images"),
        items=pd.DataFrame([{
            "item_id": "a", "title": "Granny-Smith", "product_type": "apple",
            "category": "fruit", "attributes": json.dumps({"country": "Italy"}),
            "description": "A green apple with white, firm pulp.", "image_path": "a.png",
            "content_hash": "h",
        }]),
        queries=pd.DataFrame(columns=["query_id", "item_id", "image_path"]),
        quarantine=pd.DataFrame(),
    )

    def text(**parts) -> str:
        params = EnrichParams(backend="rule_based", **parts)
        return enrich(catalog, params, tmp_path / "out").texts.set_index("item_id").text["a"]

    name_only = text(attributes=False)
    assert name_only.startswith("Apple (fruit). granny-smith")
    assert "Italy" not in name_only and "green apple" not in name_only
    assert "Italy" in text() and "green apple" not in text()
    both = text(description=True)
    assert both.index("Italy") < both.index("A green apple with white, firm pulp")
    assert both.endswith("pulp.")
