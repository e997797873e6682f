"""The validate stage: a Great Expectations gate between ingest and every later stage.

Three tables are checked, each by its own expectation suite built in code from
:class:`~vlclip.config.ValidateParams`:

- ``items``: the catalog contract (columns, ids, splits, text lengths, taxonomy, image sizes,
  duplicate photos, attributes as JSON objects, a minimum size);
- ``queries``: unique ids that all point at a catalog item;
- ``ingest_summary``: one row from the manifest, so the share of quarantined rows is gated too.

Each table has a pandas dataframe asset, a whole-dataframe batch definition, a validation
definition and a checkpoint whose ``UpdateDataDocsAction`` renders the results into a Data Docs
site. The GX project lives in ``report_dir/gx`` and is rebuilt on every call, so the docs show
this run only. A failed expectation never raises: :func:`validate_catalog` returns
``success=False`` with one readable line per failure, and the CLI decides the exit code.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import pandas as pd

from vlclip.catalog.schema import ITEM_COLUMNS, QUERY_COLUMNS, SPLITS, Catalog
from vlclip.config import ValidateParams
from vlclip.io import write_json

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.expectations import Expectation

log = logging.getLogger(__name__)

SUMMARY_FILE = "validation.json"
GX_PROJECT_DIR = "gx"
"""File-mode GX creates its project folder under this name inside ``project_root_dir``."""
DATASOURCE_NAME = "vlclip_catalog"
DOCS_ACTION_NAME = "update_data_docs"
DOCS_INDEX = "index.html"

ITEMS, QUERIES, INGEST_SUMMARY = "items", "queries", "ingest_summary"

# Derived columns: null where the row is fine, the offending value where it is not. Checking
# them with "values to be null" makes GX list the offending values themselves, and keeps the
# suite small (a value set of every catalog id would bloat the suite and its Data Docs page).
INVALID_ATTRIBUTES = "invalid_attributes"
UNKNOWN_ITEM_ID = "unknown_item_id"
OVERLONG_DESCRIPTION = "overlong_description"
DERIVED_SHOWN_AS = {
    INVALID_ATTRIBUTES: "attributes",
    UNKNOWN_ITEM_ID: "item_id",
    OVERLONG_DESCRIPTION: "description",
}
DERIVED_VALUE_CHARS = 80
"""Offending attribute texts are cut to this length in the derived column."""

SAMPLE_VALUES = 5
"""Distinct unexpected values kept per expectation in the summary and the failure lines."""
ERROR_CHARS = 200
"""GX error messages (e.g. a missing column) are cut to their first line and this length."""
PARTIAL_UNEXPECTED = 20
"""Unexpected values GX collects per expectation; the distinct sample is drawn from these."""
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": PARTIAL_UNEXPECTED}

ITEM_REQUIRED = ("item_id", "title", "product_type", "category", "image_path", "split")
QUERY_REQUIRED = ("query_id", "item_id")
GX_LOGGERS = ("great_expectations",)


@dataclass
class ValidationOutcome:
    """What the gate decided; ``summary`` is exactly what ``validation.json`` holds."""

    success: bool
    failed: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- GX set-up


def _import_gx() -> ModuleType:
    """Import great_expectations quietly (it takes seconds, so only when a run needs it).

    GX logs "Skipping registering function ..." at import time, so the logger levels must be set
    before the first import. Analytics default to off through the environment.
    """
    for name in GX_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    return gx


def _file_context(gx: ModuleType, report_dir: Path) -> AbstractDataContext:
    """A fresh file-mode context in ``report_dir/gx`` with progress bars and analytics off."""
    from great_expectations.data_context.types.base import ProgressBarsConfig

    shutil.rmtree(report_dir / GX_PROJECT_DIR, ignore_errors=True)
    context = gx.get_context(mode="file", project_root_dir=str(report_dir))
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.variables.analytics_enabled = False
    context.variables.save()
    return context


# --------------------------------------------------------------------------- suites


def allowed_product_types(catalog: Catalog, params: ValidateParams) -> list[str] | None:
    """The params list if set, else the manifest's taxonomy; None means "do not check"."""
    allowed = params.allowed_product_types or list(catalog.manifest.product_types)
    return sorted(set(allowed)) or None


def item_expectations(
    gx: ModuleType, params: ValidateParams, product_types: list[str] | None
) -> list[Expectation]:
    """The catalog contract for ``items``, one expectation per rule."""
    ex = gx.expectations
    rules: list[Expectation] = [ex.ExpectColumnToExist(column=name) for name in ITEM_COLUMNS]
    rules += [
        ex.ExpectTableRowCountToBeBetween(min_value=params.min_items),
        ex.ExpectColumnValuesToBeUnique(column="item_id"),
        *(ex.ExpectColumnValuesToNotBeNull(column=name) for name in ITEM_REQUIRED),
        ex.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
        ex.ExpectColumnValueLengthsToBeBetween(
            column="title", min_value=params.min_title_chars, max_value=params.max_title_chars
        ),
        ex.ExpectColumnValuesToBeNull(
            column=OVERLONG_DESCRIPTION,
            description=f"descriptions must have at most {params.max_description_chars} "
            "characters",
            notes="Derived column: the item id and length of each overlong description (the "
            "text itself would flood the report).",
        ),
        *(
            ex.ExpectColumnValuesToBeBetween(
                column=name, min_value=params.min_image_side, max_value=params.max_image_side
            )
            for name in ("image_width", "image_height")
        ),
        ex.ExpectColumnValuesToBeUnique(
            column="image_sha256",
            notes="Two listings with the same photo are usually a duplicate listing.",
        ),
        ex.ExpectColumnValuesToBeNull(
            column=INVALID_ATTRIBUTES,
            description="attributes must parse as a JSON object",
            notes="Derived column: the attributes text where it is not a JSON object.",
        ),
    ]
    if product_types:
        rules.append(ex.ExpectColumnValuesToBeInSet(column="product_type",
                                                    value_set=product_types))
    return rules


def query_expectations(gx: ModuleType) -> list[Expectation]:
    """Query photos: unique ids, known splits, and every one points at a catalog item."""
    ex = gx.expectations
    return [
        *(ex.ExpectColumnToExist(column=name) for name in QUERY_COLUMNS),
        ex.ExpectColumnValuesToBeUnique(column="query_id"),
        *(ex.ExpectColumnValuesToNotBeNull(column=name) for name in QUERY_REQUIRED),
        ex.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
        ex.ExpectColumnValuesToBeNull(
            column=UNKNOWN_ITEM_ID,
            description="every query's item_id must be a catalog item_id",
            notes="Derived column: the query's item_id where no catalog item has it.",
        ),
    ]


def ingest_expectations(gx: ModuleType, params: ValidateParams) -> list[Expectation]:
    """Gate on how much of the source ingest had to quarantine."""
    return [
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="quarantine_share", min_value=0.0, max_value=params.max_quarantine_share
        )
    ]


# --------------------------------------------------------------------------- frames


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _not_json_object(value: object) -> str | None:
    """None for a JSON object (or a missing value), else the offending text, shortened."""
    if _is_missing(value) or isinstance(value, dict):
        return None
    try:
        parsed = json.loads(value) if isinstance(value, str | bytes) else value
    except ValueError:
        parsed = None
    return None if isinstance(parsed, dict) else str(value)[:DERIVED_VALUE_CHARS]


def items_frame(items: pd.DataFrame, max_description_chars: int) -> pd.DataFrame:
    """The items table plus the derived check columns (attributes, overlong descriptions)."""
    frame = items.copy()
    if "attributes" in frame.columns:
        frame[INVALID_ATTRIBUTES] = frame["attributes"].map(_not_json_object).astype(object)
    if "description" in frame.columns:
        lengths = frame["description"].fillna("").astype(str).str.len()
        ids = frame["item_id"].astype(str) if "item_id" in frame.columns else frame.index
        named = [f"{item}: {length} characters" for item, length in zip(ids, lengths, strict=True)]
        frame[OVERLONG_DESCRIPTION] = pd.Series(named, index=frame.index, dtype=object).where(
            lengths > max_description_chars, None
        )
    return frame


def queries_frame(queries: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """The queries table plus the derived column of item ids the catalog does not have."""
    frame = queries.copy()
    if "item_id" in frame.columns:
        known = set(items["item_id"]) if "item_id" in items.columns else set()
        unknown = ~frame["item_id"].isin(known) & frame["item_id"].notna()
        frame[UNKNOWN_ITEM_ID] = frame["item_id"].where(unknown, None).astype(object)
    return frame


def html_safe(value: Any) -> Any:
    """``<`` and ``>`` as entities: catalog text reaches the Data Docs HTML that Great
    Expectations renders without escaping (an id like ``<script>`` would run there)."""
    return value.replace("<", "&lt;").replace(">", "&gt;") if isinstance(value, str) else value


def html_plain(value: Any) -> Any:
    """The reverse of :func:`html_safe`, for our own JSON report and console lines."""
    return value.replace("&lt;", "<").replace("&gt;", ">") if isinstance(value, str) else value


def html_safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object:
            safe[column] = safe[column].map(html_safe)
    return safe


def ingest_summary_frame(catalog: Catalog) -> pd.DataFrame:
    manifest = catalog.manifest
    return pd.DataFrame(
        {
            "num_rows_seen": [manifest.num_rows_seen],
            "num_quarantined": [manifest.num_quarantined],
            "quarantine_share": [manifest.quarantine_share],
        }
    )


# --------------------------------------------------------------------------- results


def _plain(value: Any) -> Any:
    """Numpy scalars and nested containers as plain JSON values."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(item) for item in value]
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _error_message(exception_info: dict | None) -> str | None:
    """GX nests exception info per metric when a metric failed; find the first message."""
    if not exception_info:
        return None
    infos = [exception_info] if "raised_exception" in exception_info else list(
        exception_info.values())
    for info in infos:
        if isinstance(info, dict) and info.get("raised_exception"):
            message = str(info.get("exception_message") or "exception").strip()
            return message.splitlines()[0][:ERROR_CHARS] if message else "exception"
    return None


def _sample(result: dict) -> tuple[list[Any], bool]:
    """A few distinct unexpected values, most frequent first, and whether there are more."""
    partial = result.get("partial_unexpected_list") or []
    counts = result.get("partial_unexpected_counts")
    values = [entry["value"] for entry in counts] if counts else list(
        dict.fromkeys(map(str, partial)))
    more = len(values) > SAMPLE_VALUES or result.get("unexpected_count", 0) > len(partial)
    return [html_plain(value) for value in _plain(values[:SAMPLE_VALUES])], more


def describe_result(table: str, outcome: ExpectationValidationResult) -> dict:
    """One expectation's result as a flat, JSON-ready record."""
    config = outcome.expectation_config
    kwargs = {key: value for key, value in config.kwargs.items() if key != "batch_id"}
    column = kwargs.pop("column", None)
    result = outcome.result or {}
    record: dict[str, Any] = {
        "table": table,
        "column": DERIVED_SHOWN_AS.get(column, column),
        "expectation": config.type,
        "success": bool(outcome.success),
        "kwargs": _plain(kwargs),
    }
    if column in DERIVED_SHOWN_AS:
        record["derived_column"] = column
        record["description"] = config.description
    for key in ("element_count", "unexpected_count", "unexpected_percent", "observed_value"):
        if key in result:
            record[key] = _plain(result[key])
    if result.get("unexpected_count"):
        record["unexpected_values"], record["more_unexpected"] = _sample(result)
    error = _error_message(outcome.exception_info)
    if error:
        record["error"] = error
    return record


def failure_line(record: dict) -> str:
    """E.g. ``items.item_id: expect_column_values_to_be_unique (2 unexpected: demo-1)``."""
    where = record["table"] + (f".{record['column']}" if record["column"] else "")
    if record.get("error"):
        detail = f"error: {record['error']}"
    elif record["expectation"] == "expect_column_to_exist":
        detail = "column missing"
    elif record.get("unexpected_count"):
        values = record.get("unexpected_values", [])
        shown = ", ".join(str(value) for value in values)
        more = ", ..." if record.get("more_unexpected") else ""
        detail = f"{record['unexpected_count']} unexpected: {shown}{more}"
    elif "observed_value" in record:
        detail = f"observed {record['observed_value']}, expected {record['kwargs']}"
    else:
        detail = f"expected {record['kwargs']}"
    check = record["expectation"]
    if record.get("derived_column"):
        check += f" on derived {record['derived_column']}: {record['description']}"
    return f"{where}: {check} ({detail})"


def _records(
    table: str, suite_result: ExpectationSuiteValidationResult, order: dict[str, int]
) -> list[dict]:
    """Records in the order the suite lists its expectations (GX reorders its results)."""
    outcomes = sorted(
        suite_result.results, key=lambda item: order.get(item.expectation_config.id, len(order))
    )
    return [describe_result(table, outcome) for outcome in outcomes]


def _docs_index(context: AbstractDataContext, report_dir: Path) -> Path:
    """Path of the Data Docs index, building the site if an action did not."""

    def locate() -> Path | None:
        for site in context.get_docs_sites_urls():
            url = site.get("site_url")
            if url:
                path = Path(url2pathname(urlparse(url).path))
                if path.is_file():
                    return path
        return None

    index = locate()
    if index is None:
        context.build_data_docs()
        index = locate()
    if index is None:
        raise RuntimeError(f"Great Expectations built no Data Docs {DOCS_INDEX} under "
                           f"{report_dir / GX_PROJECT_DIR}")
    try:
        return report_dir / index.resolve().relative_to(report_dir.resolve())
    except ValueError:
        return index


# --------------------------------------------------------------------------- the gate


def validate_catalog(
    catalog: Catalog, params: ValidateParams, report_dir: Path
) -> ValidationOutcome:
    """Run the suites over ``catalog``; write ``validation.json`` and Data Docs to report_dir.

    Never raises on a failed expectation (nor on a missing column, which fails its
    expectations): the outcome says what failed, the caller decides what to do about it.
    """
    gx = _import_gx()
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    context = _file_context(gx, report_dir)
    datasource = context.data_sources.add_pandas(DATASOURCE_NAME)
    allowed = allowed_product_types(catalog, params)
    product_types = [html_safe(name) for name in allowed] if allowed else allowed
    tables = {
        ITEMS: (
            html_safe_frame(items_frame(catalog.items, params.max_description_chars)),
            item_expectations(gx, params, product_types),
        ),
        QUERIES: (
            html_safe_frame(queries_frame(catalog.queries, catalog.items)),
            query_expectations(gx),
        ),
        INGEST_SUMMARY: (ingest_summary_frame(catalog), ingest_expectations(gx, params)),
    }

    records: list[dict] = []
    for name, (frame, expectations) in tables.items():
        batch = datasource.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        order = {expectation.id: position for position, expectation in
                 enumerate(suite.expectations)}
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"{name}_gate",
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name=DOCS_ACTION_NAME)],
                result_format=RESULT_FORMAT,
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": frame})
        for suite_result in result.run_results.values():
            records += _records(name, suite_result, order)

    failed = [failure_line(record) for record in records if not record["success"]]
    docs = _docs_index(context, report_dir)
    summary = {
        "success": not failed,
        "failed": failed,
        "statistics": {
            "evaluated_expectations": len(records),
            "successful_expectations": len(records) - len(failed),
            "unsuccessful_expectations": len(failed),
        },
        "row_counts": {
            ITEMS: len(catalog.items),
            QUERIES: len(catalog.queries),
            "quarantined": catalog.manifest.num_quarantined,
            "rows_seen": catalog.manifest.num_rows_seen,
        },
        "quarantine_share": round(catalog.manifest.quarantine_share, 6),
        "allowed_product_types": product_types,
        "params": params.model_dump(),
        "data_docs": str(docs),
        "expectations": records,
    }
    write_json(report_dir / SUMMARY_FILE, summary)
    for line in failed:
        log.warning("validation failed: %s", line)
    log.info("validation %s: %d of %d expectations met; Data Docs at %s",
             "passed" if not failed else "FAILED", len(records) - len(failed), len(records), docs)
    return ValidationOutcome(success=not failed, failed=failed, summary=summary)
