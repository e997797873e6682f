"""Fixes from the probe of bad inputs and faults (issue 10), each reproducing its original
input: photos read upright and 16-bit photos not blown to white, blank titles and empty split
cells, a named params file that is missing, an empty search, unknown models and devices,
group-readable outputs and no staging folders left by killed runs."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import REPO, run_command
from PIL import Image

from vlclip.catalog.ingest import ingest
from vlclip.catalog.schema import load_catalog
from vlclip.catalog.table import hashed_split
from vlclip.config import IngestParams, TableSource
from vlclip.images import load_rgb
from vlclip.io import atomic_dir, atomic_write_text
from vlclip.model import check_model_name, resolve_device

VLCLIP = str(Path(sys.executable).parent / "vlclip")


def _ingest(table_catalog: dict, tmp_path: Path, items: pd.DataFrame):
    path = tmp_path / "edited.csv"
    items.to_csv(path, index=False)
    source = TableSource(kind="table", path=path, image_root=table_catalog["images"],
                         queries_path=table_catalog["queries"])
    ingest(IngestParams(source=source), tmp_path / "catalog")
    return load_catalog(tmp_path / "catalog")


def test_a_photo_with_exif_orientation_is_recorded_and_read_upright(table_catalog, tmp_path):
    stored = np.zeros((64, 128, 3), dtype=np.uint8)  # 128 wide, 64 high as stored
    stored[:, :64] = 255  # left half white: after a 90° turn the white half is on top
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    Image.fromarray(stored).save(table_catalog["images"] / "turned.jpg", exif=exif, quality=95)
    items = pd.read_csv(table_catalog["items"])
    items.loc[0, "image_path"] = "turned.jpg"
    catalog = _ingest(table_catalog, tmp_path, items)
    row = catalog.items.set_index("item_id").loc["sku-0"]
    assert (row["image_width"], row["image_height"]) == (64, 128)
    upright = np.asarray(load_rgb(catalog.image_file("turned.jpg")))
    assert upright.shape == (128, 64, 3)
    assert upright[:60].mean() > 200 and upright[68:].mean() < 55  # white on top


def test_a_16_bit_photo_keeps_its_tones(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (32, 1))
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)  # a 16-bit greyscale PNG (mode I;16)
    assert Image.open(path).mode.startswith("I")
    pixels = np.asarray(load_rgb(path)).astype(float)
    assert 100 < pixels.mean() < 155  # a ramp, not solid white
    assert pixels[:, 0].mean() < 10 and pixels[:, -1].mean() > 245


def test_a_title_of_only_whitespace_is_quarantined(table_catalog, tmp_path):
    items = pd.read_csv(table_catalog["items"])
    items.loc[2, "title"] = "   \t "
    catalog = _ingest(table_catalog, tmp_path, items)
    assert "sku-2" not in set(catalog.items["item_id"])
    reason = catalog.quarantine.set_index("record_id").loc["sku-2", "reason"]
    assert "title" in reason and "missing" in reason
    assert len(catalog.items) == 5


def test_an_empty_split_cell_is_drawn_from_the_id(table_catalog, tmp_path):
    items = pd.read_csv(table_catalog["items"])
    items.loc[1, "split"] = None
    catalog = _ingest(table_catalog, tmp_path, items)
    split = catalog.items.set_index("item_id").loc["sku-1", "split"]
    assert split == hashed_split("sku-1")
    assert catalog.quarantine.empty


def test_a_named_params_file_must_exist(tmp_path):
    result = run_command([VLCLIP, "ingest", "-p", "missing.yaml"], tmp_path, check=False)
    assert result.returncode == 2
    assert "params file missing.yaml not found" in result.stderr
    assert not (tmp_path / "data").exists()  # nothing ran


def test_an_empty_search_is_refused():
    result = run_command([VLCLIP, "search", "  "], REPO, check=False)
    assert result.returncode == 2 and "query is empty" in result.stderr


def test_an_unknown_model_name_names_the_setting():
    with pytest.raises(ValueError, match=r"model.name='vlclip-nano'.*vlclip-tiny"):
        check_model_name("vlclip-nano")
    check_model_name("vlclip-tiny")


def test_a_cuda_device_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"


def test_outputs_follow_the_umask_and_stale_staging_is_removed(tmp_path):
    target = tmp_path / "crops"
    stale = tmp_path / ".crops.k1ll3d00"  # what a SIGKILLed run leaves behind
    stale.mkdir()
    (stale / "half.jpg").write_bytes(b"partial")
    unrelated = tmp_path / ".crops-notes"
    unrelated.mkdir()
    with atomic_dir(target) as staging:
        (staging / "a.txt").write_text("x")
    atomic_write_text(tmp_path / "report.json", "{}")
    umask = _umask_at_import()  # 022 on a usual machine: group- and world-readable outputs
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == 0o666 & ~umask
    assert not stale.exists() and unrelated.exists()
    assert (target / "a.txt").read_text() == "x"


def _umask_at_import() -> int:
    from vlclip.io import UMASK

    return UMASK


def test_embed_never_replaces_what_vlclip_did_not_write(tmp_path):
    from vlclip.embed import ITEM_IMAGE_FILE, check_output_folder

    notes = tmp_path / "mine"
    notes.mkdir()
    (notes / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="did not write.*notes.txt"):
        check_output_folder(notes)
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    with pytest.raises(ValueError, match="input folder"):
        check_output_folder(catalog, [catalog])
    with pytest.raises(ValueError, match="input folder"):
        check_output_folder(tmp_path, [catalog])  # a folder around an input
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="a file is there"):
        check_output_folder(a_file)
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / ITEM_IMAGE_FILE).write_bytes(b"")
    check_output_folder(earlier, [catalog])  # earlier embeddings may be replaced
    check_output_folder(tmp_path / "new", [catalog])
    assert (notes / "notes.txt").read_text() == "keep me" and a_file.read_text() == "x"


def test_a_malformed_json_line_is_named_by_its_number(tmp_path):
    from vlclip.catalog.table import TableError, read_table

    path = tmp_path / "items.jsonl"
    path.write_text('{"item_id": "a"}\n{"item_id": "b"}\n{"item_id": "c",,}\n')
    with pytest.raises(TableError, match=r"items.jsonl, line 3: not valid JSON"):
        read_table(path)


def test_hostile_image_paths_are_quarantined_and_good_rows_survive(table_catalog, tmp_path):
    images = table_catalog["images"]
    (images / "loop").symlink_to(images / "loop")  # a symlink pointing at itself
    items = pd.read_csv(table_catalog["items"])
    items.loc[0, "image_path"] = "loop/photo.png"
    items.loc[1, "image_path"] = "x" * 300 + ".png"
    items.loc[2, "image_path"] = "bad\x00name.png"
    path = tmp_path / "hostile.parquet"  # parquet keeps the NUL byte intact
    items.to_parquet(path)
    source = TableSource(kind="table", path=path, image_root=images,
                         queries_path=table_catalog["queries"])
    ingest(IngestParams(source=source), tmp_path / "catalog")
    catalog = load_catalog(tmp_path / "catalog")
    reasons = catalog.quarantine.set_index("record_id")["reason"]
    assert {"sku-0", "sku-1", "sku-2"} <= set(reasons.index), reasons
    assert "NUL" in reasons["sku-2"]
    assert set(catalog.items["item_id"]) == {"sku-3", "sku-4", "sku-5"}


def test_an_overlong_description_is_named_by_its_item_not_printed(table_catalog, tmp_path):
    from vlclip.config import ValidateParams
    from vlclip.validate import validate_catalog

    items = pd.read_csv(table_catalog["items"])
    items.loc[4, "description"] = "lorem ipsum " * 90_000  # about 1 MB
    catalog = _ingest(table_catalog, tmp_path, items)
    outcome = validate_catalog(catalog, ValidateParams(), tmp_path / "validation")
    assert not outcome.success
    (line,) = [line for line in outcome.failed if "description" in line]
    assert "sku-4: 1080000 characters" in line and len(line) < 300
    report = tmp_path / "validation" / "validation.json"
    assert report.stat().st_size < 100_000 and "lorem ipsum lorem" not in report.read_text()


def test_markup_in_catalog_text_never_reaches_the_data_docs_as_markup(table_catalog, tmp_path):
    from vlclip.config import ValidateParams
    from vlclip.validate import validate_catalog

    items = pd.read_csv(table_catalog["items"])
    items.loc[0:1, "item_id"] = "<script>alert(1)</script>"  # a duplicate id, so it is shown
    items.loc[2, "product_type"] = "<img src=x onerror=alert(2)>"
    catalog = _ingest(table_catalog, tmp_path, items)
    params = ValidateParams(allowed_product_types=["soda can", "cereal box"])
    outcome = validate_catalog(catalog, params, tmp_path / "validation")
    pages = list((tmp_path / "validation").rglob("*.html"))
    assert pages
    for page in pages:
        text = page.read_text()
        assert "<script>alert(1)" not in text and "<img src=x" not in text, page
    assert any("&lt;script&gt;alert(1)" in page.read_text() for page in pages)
    # our own report and console lines keep the text as the catalog has it
    assert any("<script>alert(1)</script>" in line for line in outcome.failed)
    assert any("<img src=x onerror=alert(2)>" in line for line in outcome.failed)
