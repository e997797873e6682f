"""The ablation swaps inputs, not code: each variant sees the images and texts it names."""

from pathlib import Path

from vlclip.ablation import VARIANTS, markdown_table, views_for
from vlclip.embed import CatalogViews


def test_each_variant_gets_its_inputs():
    full = CatalogViews({"a": Path("full.png")}, {"q": Path("fq.png")}, {"a": "enriched"})
    crops = CatalogViews({"a": Path("crop.png")}, {"q": Path("cq.png")}, {"a": "enriched"})
    raw = {"a": "RAW TITLE"}
    seen = {v.name: views_for(v, full, crops, raw) for v in VARIANTS}
    first, *_, last = VARIANTS
    assert seen[first.name].item_images["a"].name == "full.png"
    assert seen[first.name].item_texts["a"] == "RAW TITLE"
    assert seen[last.name].query_images["q"].name == "cq.png"
    assert seen[last.name].item_texts["a"] == "enriched"
    assert [v.weights for v in VARIANTS] == ["baseline", "trained", "trained", "trained"]


def test_markdown_table_lists_every_variant():
    metrics = {"text_to_image": {"hits@5": 0.5, "mrr": 0.25}}
    rows = [{"variant": v.name, "metrics": metrics} for v in VARIANTS]
    table = markdown_table(rows).splitlines()
    assert table[0] == "| variant | text_to_image hits@5 | text_to_image mrr |"
    assert len(table) == 2 + len(VARIANTS)
    assert table[-1].endswith("| 0.500 | 0.250 |")
