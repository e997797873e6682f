"""The retrained ablation's bookkeeping: inputs per variant, intervals, relative changes."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from vlclip.ablation import (
    METHOD,
    REFERENCE,
    UNTRAINED,
    VARIANTS,
    interval,
    markdown_table,
    select,
    summarise,
)
from vlclip.catalog.schema import Catalog, Manifest
from vlclip.config import AblationParams, parse_params
from vlclip.enrich.stage import TEXTS_FILE
from vlclip.ground import BOXES_FILE
from vlclip.stages import Layout, ablation_views


def test_t_interval_matches_scipy_and_shrinks_with_more_seeds():
    values = [0.61, 0.64, 0.58]
    result = interval(values, 0.95)
    low, high = stats.t.interval(0.95, 2, loc=sum(values) / 3, scale=stats.sem(values))
    assert result["low"] == pytest.approx(low) and result["high"] == pytest.approx(high)
    assert result["sd"] == pytest.approx(stats.tstd(values))
    wider = interval([0.61, 0.64, 0.58] * 3, 0.95)
    assert wider["high"] - wider["low"] < result["high"] - result["low"]


def test_one_seed_has_no_interval():
    result = interval([0.5], 0.95)
    assert result["mean"] == 0.5 and math.isnan(result["low"]) and result["n"] == 1


def _run(variant: str, seed: int, hits: float, untrained: float = 0.05) -> dict:
    block = {"image_to_catalog": {"hits@5": hits, "mrr": hits / 2, "queries": 10}}
    return {
        "variant": variant,
        "seed": seed,
        "model": "vlclip-small",
        "pretrained": None,
        "epochs": 6,
        "split": "test",
        "train_seconds": 100.0 + seed,
        "metrics": block,
        "untrained": {"image_to_catalog": {"hits@5": untrained, "mrr": untrained / 2}},
    }


def test_summary_has_every_variant_the_untrained_start_and_changes_vs_reference():
    runs = [_run(REFERENCE, s, 0.40 + 0.01 * s) for s in range(3)]
    runs += [_run(METHOD, s, 0.60 + 0.01 * s) for s in range(3)]
    summary = summarise(runs)
    rows = summary["rows"]
    assert list(rows) == [REFERENCE, METHOD, UNTRAINED]
    method = rows[METHOD]["metrics"]["image_to_catalog"]["hits@5"]
    assert method["mean"] == pytest.approx(0.61) and method["n"] == 3
    assert method["vs_reference"] == pytest.approx(0.61 / 0.41 - 1)
    assert rows[REFERENCE]["metrics"]["image_to_catalog"]["hits@5"]["vs_reference"] == 0.0
    assert rows[UNTRAINED]["metrics"]["image_to_catalog"]["hits@5"]["mean"] == pytest.approx(0.05)
    assert rows[METHOD]["seeds"] == [0, 1, 2]


def test_markdown_table_shows_intervals_and_relative_changes():
    runs = [_run(REFERENCE, s, 0.40 + 0.01 * s) for s in range(3)]
    runs += [_run(METHOD, s, 0.60 + 0.01 * s) for s in range(3)]
    table = markdown_table(summarise(runs))
    assert "seeds [0, 1, 2]" in table and "95% t-interval" in table
    method_rows = [line for line in table.splitlines() if line.startswith("| VL-CLIP")]
    assert len(method_rows) == 2  # the values, then the change against full_raw
    assert "0.610 [" in method_rows[0]
    assert f"{100 * (0.61 / 0.41 - 1):+.0f}%" in method_rows[1]


def test_each_variant_trains_on_its_own_images_and_texts(tmp_path):
    layout = Layout(crops=tmp_path / "crops", enriched=tmp_path / "enriched")
    (tmp_path / "crops").mkdir()
    (tmp_path / "enriched").mkdir()
    pd.DataFrame(
        [
            {"table": "items", "record_id": "a", "crop_path": "images/items/a.jpg"},
            {"table": "queries", "record_id": "q", "crop_path": "images/queries/q.jpg"},
        ]
    ).to_parquet(tmp_path / "crops" / BOXES_FILE)
    pd.DataFrame(
        [{"item_id": "a", "text": "enriched text", "raw_text": "RAW TITLE. soda can"}]
    ).to_parquet(tmp_path / "enriched" / TEXTS_FILE)
    catalog = Catalog(
        root=tmp_path / "catalog",
        manifest=Manifest(source="table", image_root="images"),
        items=pd.DataFrame([{"item_id": "a", "title": "RAW", "image_path": "a.png"}]),
        queries=pd.DataFrame([{"query_id": "q", "item_id": "a", "image_path": "q.png"}]),
        quarantine=pd.DataFrame(),
    )
    seen = {name: ablation_views(catalog, layout, name) for name in VARIANTS}
    assert seen["full_raw"].item_images["a"].name == "a.png"
    assert seen["full_raw"].query_images["q"].name == "q.png"
    assert seen["full_raw"].item_texts["a"] == "RAW TITLE. soda can"
    assert seen["crops_raw"].query_images["q"] == tmp_path / "crops/images/queries/q.jpg"
    assert seen["full_enriched"].item_images["a"].name == "a.png"
    assert seen["full_enriched"].item_texts["a"] == "enriched text"
    assert seen["crops_enriched"].item_images["a"] == Path(tmp_path / "crops/images/items/a.jpg")
    assert seen["crops_enriched"].item_texts["a"] == "enriched text"


def test_ablation_params_are_validated():
    assert AblationParams().seeds == [0, 1, 2] and len(AblationParams().variants) == 4
    with pytest.raises(ValueError, match="ablation.variants"):
        parse_params({"ablation": {"variants": ["crops_only"]}})


GROCERY_LIKE = {
    "train": {"lock_image": True, "lock_image_unlocked_groups": 1},
    "ablation": {
        "variants": ["frozen", "tuned", "names"],
        "reference": "frozen",
        "untrained_of": "tuned",
        "columns": ["image_to_catalog.mrr"],
        "definitions": {
            "frozen": {"label": "frozen: crops", "train": {"lock_image_unlocked_groups": 0}},
            "tuned": {"label": "tuned: crops", "model": {"name": "vlclip-tiny"}},
            "names": {"label": "names only", "enrich": {"attributes": False}},
        },
    },
}


def test_defined_variants_change_only_what_they_name():
    params = parse_params(GROCERY_LIKE)
    spec, model, train, enrich = params.ablation_variant("frozen", seed=4)
    assert train.lock_image and train.lock_image_unlocked_groups == 0 and train.seed == 4
    assert train.epochs == params.ablation.epochs and model == params.ablation.model
    _, model, train, _ = params.ablation_variant("tuned", seed=0)
    assert model.name == "vlclip-tiny" and train.lock_image_unlocked_groups == 1
    _, _, _, enrich = params.ablation_variant("names", seed=0)
    assert not enrich.attributes and params.enrich.attributes
    bad = {**GROCERY_LIKE, "ablation": {**GROCERY_LIKE["ablation"], "definitions": {
        **GROCERY_LIKE["ablation"]["definitions"], "frozen": {"label": "x", "train": {"lrr": 1}}}}}
    with pytest.raises(ValueError, match="ablation.definitions.frozen"):
        parse_params(bad)


def test_summary_of_defined_variants_uses_their_reference_and_columns():
    settings = parse_params(GROCERY_LIKE).ablation
    runs = [{**_run("frozen", s, 0.40), "label": "frozen: crops", "images": "crops",
             "texts": "enriched"} for s in range(2)]
    runs += [{**_run("tuned", s, 0.50 + 0.02 * s, untrained=0.1), "label": "tuned: crops",
              "images": "crops", "texts": "enriched"} for s in range(2)]
    summary = summarise(runs, settings)
    assert list(summary["rows"]) == ["frozen", "tuned", UNTRAINED]
    tuned = summary["rows"]["tuned"]["metrics"]["image_to_catalog"]["mrr"]
    assert tuned["vs_reference"] == pytest.approx(0.255 / 0.2 - 1)
    assert summary["rows"][UNTRAINED]["metrics"]["image_to_catalog"]["mrr"]["mean"] == 0.05
    table = markdown_table(summary)
    assert "image_to_catalog mrr" in table and "image_to_catalog hits@5" not in table
    assert "against `frozen` (frozen: crops)" in table


def test_a_report_can_show_some_rows_and_columns():
    settings = parse_params(GROCERY_LIKE).ablation
    runs = [{**_run(name, s, 0.4 + 0.1 * s), "label": f"{name} row", "images": "crops",
             "texts": "enriched"} for name in ("frozen", "tuned") for s in range(2)]
    summary = summarise(runs, settings)
    table = markdown_table(select(summary, ["tuned", UNTRAINED], ["image_to_catalog.hits@5"]))
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in lines] == [
        "| variant", "| tuned row", "| untrained start, vlclip-small (tuned row)"
    ]
    assert "image_to_catalog hits@5" in table and "mrr" not in table
    assert "Relative change" not in table  # the reference row is not shown
    with pytest.raises(ValueError, match="no runs for"):
        select(summary, ["frozen_twice"])
