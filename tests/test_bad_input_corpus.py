"""The bad-input corpus (tests/bad_inputs.py) through ingest -> validate -> ground -> enrich,
as a user runs them (`vlclip <stage>`): every case ends in a quarantine with its reason or one
clear error, the good rows come through every stage undamaged, and no stage prints a
traceback."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from bad_inputs import FILE_CASES, GOOD_ITEMS, ROW_CASES, FileCase, RowCase, good_row, photo
from helpers import BIN, run_command
from PIL import Image

STAGES = ("ingest", "validate", "ground", "enrich")
MAX_ERROR_BYTES = 4000  # one clear message, not a dump of the offending value


def _params(folder: Path, items_file: str, queries_file: str | None) -> None:
    params = {
        "ingest": {"source": {"kind": "table", "path": items_file, "image_root": "images",
                              "queries_path": queries_file}},
        # most rows of the corpus are bad on purpose: let the gate through to test the rest
        "validate": {"max_quarantine_share": 0.9},
        "ground": {"exemplars_per_prompt": 2},
        "enrich": {"backend": "rule_based"},
    }
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


def _run(folder: Path, stage: str) -> subprocess.CompletedProcess:
    return run_command([str(BIN / "vlclip"), stage], folder, check=False, timeout=600)


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory) -> dict:
    from bad_inputs import write_row_corpus

    folder = tmp_path_factory.mktemp("corpus")
    ids = write_row_corpus(folder)
    _params(folder, "items.parquet", "queries.csv")
    runs = {stage: _run(folder, stage) for stage in STAGES}
    return {"folder": folder, "ids": ids, "runs": runs}


def _tables(folder: Path) -> dict[str, pd.DataFrame]:
    return {
        "items": pd.read_parquet(folder / "data/validated/items.parquet"),
        "queries": pd.read_parquet(folder / "data/validated/queries.parquet"),
        "quarantine": pd.read_parquet(folder / "data/validated/quarantine.parquet"),
        "boxes": pd.read_parquet(folder / "data/crops/boxes.parquet"),
        "texts": pd.read_parquet(folder / "data/enriched/texts.parquet"),
        "source": pd.read_parquet(folder / "items.parquet"),
    }


def _check_stages_ran_cleanly(runs: dict[str, subprocess.CompletedProcess]) -> None:
    for stage, run in runs.items():
        assert run.returncode == 0, f"{stage} failed:\n{run.stderr[-3000:]}"
        assert "Traceback" not in run.stderr + run.stdout, f"{stage} printed a traceback"


def _check_item_came_through(folder: Path, tables: dict, item_id: str) -> None:
    """Present in every stage's output with its text as the catalog has it, a crop that
    decodes and shows something, and a product text."""
    items = tables["items"].set_index("item_id")
    source = tables["source"].set_index("item_id").loc[item_id]
    assert item_id in items.index, f"{item_id} did not survive ingest and the gate"
    assert items.loc[item_id, "title"] == source["title"]
    assert items.loc[item_id, "description"] == source["description"]
    boxes = tables["boxes"].set_index(["table", "record_id"])
    crop = Image.open(folder / "data/crops" / boxes.loc[("items", item_id), "crop_path"])
    assert crop.mode == "RGB" and min(crop.size) > 8
    assert np.asarray(crop).std() > 3, f"the crop of {item_id} is a flat colour"
    texts = tables["texts"].set_index("item_id")
    assert texts.loc[item_id, "text"].strip()


def _good_rows_came_through(folder: Path, tables: dict) -> None:
    for index in range(GOOD_ITEMS):
        _check_item_came_through(folder, tables, f"item-g{index}")
    queries = set(tables["queries"]["query_id"])
    assert {f"q-g{index}" for index in range(GOOD_ITEMS)} <= queries
    query_crops = tables["boxes"].query("table == 'queries'")["record_id"]
    assert {f"q-g{index}" for index in range(GOOD_ITEMS)} <= set(query_crops)


CASES = [*ROW_CASES, *FILE_CASES]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input(case, corpus_run, tmp_path, good_catalog):
    if isinstance(case, FileCase):
        _check_file_case(case, tmp_path, good_catalog)
        return
    folder, runs = corpus_run["folder"], corpus_run["runs"]
    _check_stages_ran_cleanly(runs)
    tables = _tables(folder)
    _good_rows_came_through(folder, tables)
    record_id = corpus_run["ids"][case.name]
    quarantine = tables["quarantine"]
    if case.reason is None:
        assert record_id not in set(quarantine["record_id"]), quarantine
        _check_item_came_through(folder, tables, record_id)
        _check_special(case, folder, tables, record_id)
    else:
        rows = quarantine[(quarantine["table"] == case.table)
                          & (quarantine["record_id"] == record_id)]
        assert len(rows) == 1, f"{record_id} is not quarantined once: {quarantine}"
        assert case.reason in rows["reason"].iloc[0], rows["reason"].iloc[0]
        kept = tables["items" if case.table == "items" else "queries"]
        assert record_id not in set(kept[kept.columns[0]])


def _check_special(case: RowCase, folder: Path, tables: dict, item_id: str) -> None:
    """What "undamaged" means beyond surviving, for the cases where it can go subtly wrong."""
    items = tables["items"].set_index("item_id")
    crop_path = tables["boxes"].set_index(["table", "record_id"]).loc[("items", item_id),
                                                                      "crop_path"]
    crop = np.asarray(Image.open(folder / "data/crops" / crop_path)).astype(float)
    if case.name == "exif-rotated-jpeg":  # stored 64x48, seen upright as 48x64
        assert (items.loc[item_id, "image_width"], items.loc[item_id, "image_height"]) == (48, 64)
    if case.name == "transparent-png":  # a transparent background reads as white, not black
        corners = crop[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert corners.min() > 200, corners
    if case.name == "sixteen-bit-png":  # a ramp, not clipped to white
        assert crop.mean() < 200 and crop.std() > 30
    if case.name == "empty-split-cell":
        from vlclip.catalog.table import hashed_split

        assert items.loc[item_id, "split"] == hashed_split(item_id)
    if case.name in ("html-in-text", "markup-in-id"):  # published HTML shows it as text
        for page in (folder / "reports").rglob("*.html"):
            text = page.read_text(errors="replace")
            assert "<script>alert" not in text and "<img src=x" not in text, page


# --------------------------------------------------------------------------- file cases


@pytest.fixture(scope="module")
def good_catalog(tmp_path_factory) -> Path:
    """A folder where a good catalog went through ingest and the gate: the last good run
    that a bad file must leave as it is."""
    folder = tmp_path_factory.mktemp("good")
    items = pd.DataFrame([good_row(folder / "images", f"g{i}", i) for i in range(GOOD_ITEMS)])
    items.to_csv(folder / "good.csv", index=False)
    photo(folder / "images" / "unused.png", 1)
    _params(folder, "good.csv", None)
    for stage in ("ingest", "validate"):
        run = _run(folder, stage)
        assert run.returncode == 0, run.stderr[-3000:]
    return folder


def _digest(folder: Path) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


def _check_file_case(case: FileCase, tmp_path: Path, good_catalog: Path) -> None:
    folder = tmp_path / "workspace"
    shutil.copytree(good_catalog, folder, symlinks=True)
    before = {name: _digest(folder / name) for name in ("data/catalog", "data/validated")}
    good = pd.read_csv(folder / "good.csv", dtype=str)
    _params(folder, case.write(folder, good), None)
    stages = STAGES[: STAGES.index(case.stage) + 1]
    for stage in stages:
        run = _run(folder, stage)
        output = run.stdout + run.stderr
        assert "Traceback" not in output, output[-3000:]
        if stage != case.stage:
            assert run.returncode == 0, output[-3000:]
            continue
        assert run.returncode != 0, f"{stage} accepted {case.name}"
        assert case.message in run.stderr, run.stderr[-3000:]
        assert len(run.stderr.encode()) < MAX_ERROR_BYTES, f"{len(run.stderr)} bytes of error"
    # the last good run's outputs are where downstream stages read them, unchanged
    assert _digest(folder / "data/validated") == before["data/validated"]
    if case.stage == "ingest":
        assert _digest(folder / "data/catalog") == before["data/catalog"]
