"""The Great Expectations gate: a good catalog passes, each kind of defect fails by name.

A GX run takes about a second (mostly Data Docs rendering) on top of a slow first import, so
the defects share one broken catalog, each on its own row, and the runs are module-scoped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from vlclip.catalog.schema import (
    ITEM_COLUMNS,
    QUARANTINE_COLUMNS,
    QUERY_COLUMNS,
    Catalog,
    Manifest,
    empty_frame,
)
from vlclip.config import ValidateParams
from vlclip.validate import (
    SUMMARY_FILE,
    ValidationOutcome,
    allowed_product_types,
    failure_line,
    validate_catalog,
)

NUM_ITEMS = 6
PRODUCT_TYPES = ["cereal", "juice", "milk"]
IMAGE_SIDE = 128
PARAMS = ValidateParams()


def _items(count: int = NUM_ITEMS) -> pd.DataFrame:
    rows = []
    for index in range(count):
        rows.append(
            {
                "item_id": f"demo-{index}",
                "title": f"Oat flakes {index}",
                "description": "Crunchy oat flakes in a yellow box.",
                "attributes": json.dumps({"weight": "500 g", "colour": "yellow"}),
                "product_type": PRODUCT_TYPES[index % len(PRODUCT_TYPES)],
                "category": "food",
                "image_path": f"items/{index}.png",
                "split": ("train", "val", "test")[index % 3],
                "box_x0": 4.0,
                "box_y0": 4.0,
                "box_x1": 100.0,
                "box_y1": 100.0,
                "image_width": IMAGE_SIDE,
                "image_height": IMAGE_SIDE,
                "image_sha256": f"{index:064x}",
                "content_hash": f"content-{index}",
            }
        )
    return pd.DataFrame(rows, columns=list(ITEM_COLUMNS))


def _queries(items: pd.DataFrame) -> pd.DataFrame:
    queries = pd.DataFrame(
        {
            "query_id": [f"q-{index}" for index in range(len(items))],
            "item_id": list(items["item_id"]),
            "image_path": [f"queries/{index}.png" for index in range(len(items))],
            "split": list(items["split"]),
            "image_width": IMAGE_SIDE,
            "image_height": IMAGE_SIDE,
            "image_sha256": [f"{index + 1000:064x}" for index in range(len(items))],
        }
    )
    for name in ("box_x0", "box_y0", "box_x1", "box_y1"):
        queries[name] = float("nan")
    return queries[list(QUERY_COLUMNS)]


def make_catalog(
    root: Path,
    items: pd.DataFrame | None = None,
    queries: pd.DataFrame | None = None,
    num_quarantined: int = 0,
) -> Catalog:
    """A small valid catalog; pass frames or a quarantine count to break one thing."""
    items = _items() if items is None else items
    queries = _queries(items) if queries is None else queries
    manifest = Manifest(
        source="synthetic",
        image_root="images",
        product_types=list(PRODUCT_TYPES),
        num_items=len(items),
        num_queries=len(queries),
        num_quarantined=num_quarantined,
        num_rows_seen=len(items) + len(queries) + num_quarantined,
    )
    return Catalog(root, manifest, items, queries, empty_frame(QUARANTINE_COLUMNS))


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ValidationOutcome, Path]:
    """Validate a good catalog twice into one folder, as a re-run of the stage would."""
    root = tmp_path_factory.mktemp("good")
    catalog = make_catalog(root)
    validate_catalog(catalog, PARAMS, root / "report")
    return validate_catalog(catalog, PARAMS, root / "report"), root / "report"


# Each defect on its own row, so every failed expectation has exactly one cause.
DUPLICATE_ID_ROW, ALIEN_TYPE_ROW, SHORT_TITLE_ROW, SMALL_IMAGE_ROW, SAME_PHOTO_ROW = 1, 2, 3, 4, 5
BAD_ATTRIBUTES_ROW = 0
ALIEN_TYPE = "spaceship"
UNKNOWN_ITEM = "ghost-item"
SMALL_SIDE = 8
QUARANTINED = 3  # of 6 + 6 + 3 rows seen: 20%, well above the 5% default


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory: pytest.TempPathFactory) -> ValidationOutcome:
    root = tmp_path_factory.mktemp("broken")
    items = _items()
    queries = _queries(items)
    duplicate = items.iloc[[DUPLICATE_ID_ROW]].copy()
    duplicate["image_sha256"] = "f" * 64
    items.loc[ALIEN_TYPE_ROW, "product_type"] = ALIEN_TYPE
    items.loc[SHORT_TITLE_ROW, "title"] = "x"
    items.loc[SMALL_IMAGE_ROW, "image_width"] = SMALL_SIDE
    items.loc[SAME_PHOTO_ROW, "image_sha256"] = items.loc[0, "image_sha256"]
    items.loc[BAD_ATTRIBUTES_ROW, "attributes"] = "weight=500g"
    items = pd.concat([items, duplicate], ignore_index=True)
    queries.loc[0, "item_id"] = UNKNOWN_ITEM
    catalog = make_catalog(root, items, queries, num_quarantined=QUARANTINED)
    return validate_catalog(catalog, PARAMS, root / "report")


def _failed_with(outcome: ValidationOutcome, prefix: str) -> str:
    matches = [line for line in outcome.failed if line.startswith(prefix)]
    assert matches, f"no failure starting with {prefix!r} in {outcome.failed}"
    return matches[0]


def test_good_catalog_passes_and_writes_reports(good_run: tuple[ValidationOutcome, Path]) -> None:
    outcome, report = good_run
    assert outcome.success, outcome.failed
    assert outcome.failed == []
    summary = json.loads((report / SUMMARY_FILE).read_text())
    assert summary["success"] is True
    assert summary["row_counts"]["items"] == NUM_ITEMS
    assert summary["statistics"]["unsuccessful_expectations"] == 0
    assert summary["allowed_product_types"] == PRODUCT_TYPES
    docs = Path(summary["data_docs"])
    assert docs.name == "index.html" and docs.is_file()
    assert report.resolve() in docs.resolve().parents
    html = docs.read_text()
    for suite in ("items", "queries", "ingest_summary"):
        assert suite in html


def test_broken_catalog_fails_exactly_the_expected_checks(broken_run: ValidationOutcome) -> None:
    assert not broken_run.success
    assert broken_run.summary["success"] is False
    failing = {
        (record["table"], record["column"], record["expectation"])
        for record in broken_run.summary["expectations"]
        if not record["success"]
    }
    assert failing == {
        ("items", "item_id", "expect_column_values_to_be_unique"),
        ("items", "product_type", "expect_column_values_to_be_in_set"),
        ("items", "title", "expect_column_value_lengths_to_be_between"),
        ("items", "image_width", "expect_column_values_to_be_between"),
        ("items", "image_sha256", "expect_column_values_to_be_unique"),
        ("items", "attributes", "expect_column_values_to_be_null"),
        ("queries", "item_id", "expect_column_values_to_be_null"),
        ("ingest_summary", "quarantine_share", "expect_column_values_to_be_between"),
    }
    assert len(broken_run.failed) == len(failing)


def test_duplicate_item_ids_fail(broken_run: ValidationOutcome) -> None:
    line = _failed_with(broken_run, "items.item_id: expect_column_values_to_be_unique")
    assert f"demo-{DUPLICATE_ID_ROW}" in line


def test_unknown_product_type_fails(broken_run: ValidationOutcome) -> None:
    line = _failed_with(broken_run, "items.product_type: expect_column_values_to_be_in_set")
    assert "1 unexpected" in line and ALIEN_TYPE in line


def test_too_short_title_fails(broken_run: ValidationOutcome) -> None:
    _failed_with(broken_run, "items.title: expect_column_value_lengths_to_be_between (1 unexp")


def test_too_small_image_fails(broken_run: ValidationOutcome) -> None:
    line = _failed_with(broken_run, "items.image_width: expect_column_values_to_be_between")
    assert str(SMALL_SIDE) in line


def test_duplicate_image_hashes_fail(broken_run: ValidationOutcome) -> None:
    _failed_with(broken_run, "items.image_sha256: expect_column_values_to_be_unique (2 unexp")


def test_attributes_that_are_not_a_json_object_fail(broken_run: ValidationOutcome) -> None:
    line = _failed_with(broken_run, "items.attributes:")
    assert "weight=500g" in line


def test_query_for_unknown_item_fails(broken_run: ValidationOutcome) -> None:
    line = _failed_with(broken_run, "queries.item_id:")
    assert UNKNOWN_ITEM in line


def test_quarantine_share_above_threshold_fails(broken_run: ValidationOutcome) -> None:
    _failed_with(broken_run, "ingest_summary.quarantine_share: expect_column_values_to_be_betw")
    assert broken_run.summary["quarantine_share"] > PARAMS.max_quarantine_share


def test_summary_records_counts_and_samples(broken_run: ValidationOutcome) -> None:
    records = {
        (record["table"], record["column"], record["expectation"]): record
        for record in broken_run.summary["expectations"]
    }
    record = records[("items", "product_type", "expect_column_values_to_be_in_set")]
    assert record["unexpected_count"] == 1
    assert record["unexpected_values"] == [ALIEN_TYPE]
    assert record["element_count"] == NUM_ITEMS + 1


def test_missing_column_fails_without_crashing(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, items=_items().drop(columns=["image_sha256"]))
    outcome = validate_catalog(catalog, PARAMS, tmp_path / "report")
    assert not outcome.success
    assert "items.image_sha256: expect_column_to_exist (column missing)" in outcome.failed
    assert (tmp_path / "report" / SUMMARY_FILE).is_file()
    assert Path(outcome.summary["data_docs"]).is_file()


def test_allowed_product_types_prefers_params_then_manifest(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path)
    assert allowed_product_types(catalog, PARAMS) == PRODUCT_TYPES
    custom = ValidateParams(allowed_product_types=["tea", "coffee"])
    assert allowed_product_types(catalog, custom) == ["coffee", "tea"]
    bare = Catalog(tmp_path, Manifest(source="table", image_root="."), catalog.items,
                   catalog.queries, catalog.quarantine)
    assert allowed_product_types(bare, PARAMS) is None


def test_failure_line_for_a_table_level_expectation() -> None:
    record = {
        "table": "items",
        "column": None,
        "expectation": "expect_table_row_count_to_be_between",
        "success": False,
        "kwargs": {"min_value": 2},
        "observed_value": 1,
    }
    assert failure_line(record) == (
        "items: expect_table_row_count_to_be_between (observed 1, expected {'min_value': 2})"
    )
