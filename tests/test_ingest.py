"""Catalog sources and ingest: table files, quarantine of bad images, path escapes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import GROCERY_STORE, write_image
from PIL import Image

from vlclip.catalog.grocery_store import parse_information, read_grocery_store
from vlclip.catalog.ingest import ingest
from vlclip.catalog.schema import ITEM_COLUMNS, QUERY_COLUMNS, load_catalog
from vlclip.catalog.table import TableError, hashed_split
from vlclip.config import GroceryStoreSource, IngestParams, TableSource
from vlclip.images import ImageProblem, inspect_image, resolve_inside


def _params(catalog: dict[str, Path], **source) -> IngestParams:
    return IngestParams(
        source=TableSource(
            kind="table",
            path=source.get("path", catalog["items"]),
            image_root=catalog["images"],
            queries_path=source.get("queries_path", catalog["queries"]),
        )
    )


def test_csv_catalog_round_trip(table_catalog, tmp_path):
    out = tmp_path / "catalog"
    manifest = ingest(_params(table_catalog), out)
    catalog = load_catalog(out)
    assert manifest.num_items == 6 and manifest.num_queries == 6
    assert manifest.num_quarantined == 0
    assert list(catalog.items.columns) == list(ITEM_COLUMNS)
    assert list(catalog.queries.columns) == list(QUERY_COLUMNS)
    assert (catalog.items["image_width"] == 64).all()
    assert catalog.items["image_sha256"].str.len().eq(64).all()
    assert catalog.items["content_hash"].nunique() == 6
    assert catalog.image_file(catalog.items["image_path"][0]).is_file()


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_parquet_and_jsonl_catalogs(table_catalog, tmp_path, suffix):
    frame = pd.read_csv(table_catalog["items"])
    frame["attributes"] = [json.loads(value) for value in frame["attributes"]]
    frame = frame.drop(columns=["split", "description"])
    path = tmp_path / f"items{suffix}"
    if suffix == ".parquet":
        frame["attributes"] = frame["attributes"].map(json.dumps)
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    manifest = ingest(_params(table_catalog, path=path), tmp_path / "catalog")
    catalog = load_catalog(tmp_path / "catalog")
    assert manifest.num_items == 6
    assert catalog.items["description"].eq("").all()
    assert json.loads(catalog.items["attributes"][0]) == {"clr": "rd"}
    assert catalog.items["split"].tolist() == [hashed_split(i) for i in catalog.items["item_id"]]


def test_table_without_required_column_is_a_clear_error(table_catalog, tmp_path):
    frame = pd.read_csv(table_catalog["items"]).drop(columns=["product_type"])
    path = tmp_path / "broken.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(TableError, match="product_type"):
        ingest(_params(table_catalog, path=path), tmp_path / "catalog")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _bomb(path: Path) -> None:
    """A tiny PNG whose header claims 20000 x 20000 pixels."""
    Image.new("L", (20000, 20000)).save(path, optimize=True)


def test_bad_images_and_rows_are_quarantined_with_reasons(table_catalog, tmp_path):
    images = table_catalog["images"]
    (images / "item1.png").write_bytes(b"this is not an image")
    _truncate(images / "item2.png")
    _bomb(images / "item3.png")
    (images / "item4.png").unlink()
    frame = pd.read_csv(table_catalog["items"])
    frame.loc[5, "image_path"] = "../../etc/passwd"
    extra = frame.iloc[[0]].assign(item_id="sku-untitled", title=None)
    path = tmp_path / "items_bad.csv"
    pd.concat([frame, extra]).to_csv(path, index=False)

    out = tmp_path / "catalog"
    manifest = ingest(_params(table_catalog, path=path), out)
    catalog = load_catalog(out)
    reasons = dict(zip(catalog.quarantine["record_id"], catalog.quarantine["reason"], strict=True))
    assert catalog.items["item_id"].tolist() == ["sku-0"]
    assert "not a recognised image" in reasons["sku-1"]
    assert "truncated" in reasons["sku-2"]
    assert "decompression bomb" in reasons["sku-3"]
    assert "not found" in reasons["sku-4"]
    assert "escapes the catalog root" in reasons["sku-5"]
    assert "title" in reasons["sku-untitled"]
    # query photos of quarantined items are quarantined too, naming the item
    assert "sku-1" in reasons["q-1"]
    assert manifest.num_quarantined == len(catalog.quarantine)
    assert manifest.quarantine_share == pytest.approx(len(catalog.quarantine) / 13)


def test_failed_ingest_keeps_previous_output(table_catalog, tmp_path):
    out = tmp_path / "catalog"
    ingest(_params(table_catalog), out)
    before = (out / "items.parquet").read_bytes()
    broken = tmp_path / "broken.csv"
    broken.write_text("item_id,title\nx,y\n")
    with pytest.raises(TableError):
        ingest(_params(table_catalog, path=broken), out)
    assert (out / "items.parquet").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".catalog.")]


def test_path_escape_and_absolute_paths_are_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    write_image(tmp_path / "outside.png")
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    for bad in ("../outside.png", str(tmp_path / "outside.png"), "link.png", ""):
        with pytest.raises(ImageProblem):
            resolve_inside(root, bad)
    write_image(root / "sub" / "ok.png")
    assert resolve_inside(root, "sub/../sub/ok.png") == (root / "sub" / "ok.png").resolve()


def test_inspect_image_limits(tmp_path):
    path = write_image(tmp_path / "small.png", size=(10, 40))
    with pytest.raises(ImageProblem, match="too small"):
        inspect_image(path, max_pixels=10**6, min_side=16)
    path = write_image(tmp_path / "big.png", size=(200, 200))
    with pytest.raises(ImageProblem, match="decompression bomb"):
        inspect_image(path, max_pixels=1000, min_side=1)
    assert inspect_image(path, max_pixels=10**6, min_side=1).width == 200


def test_information_parsing_keeps_top_level_lines():
    text = (
        "\ufeffTitle: Apple Juice \nManufacturer and volume: BRAVO , 2l\nNutrition: \n"
        "   fett ca 0 gram\nURL: https://example.invalid\nDescription: dup\n"
    )
    assert parse_information(text.lstrip("\ufeff")) == {
        "title": "Apple Juice",
        "manufacturer and volume": "BRAVO , 2l",
    }


def _fake_grocery_store(root: Path) -> Path:
    """The published layout in miniature: 2 classes, iconic images, descriptions, splits."""
    dataset = root / "dataset"
    lines = [
        "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),"
        "Iconic Image Path (str),Product Description Path (str)"
    ]
    for class_id, (name, coarse, group) in enumerate(
        [("Granny-Smith", "Apple", "Fruit"), ("Oatly-Oat-Milk", "Oat-Milk", "Packages")]
    ):
        folder = f"iconic-images-and-descriptions/{group}/{coarse}/{name}"
        write_image(dataset / folder / f"{name}_Iconic.jpg", seed=class_id)
        (dataset / folder / f"{name}_Description.txt").write_text(f"{name} description.")
        (dataset / folder / f"{name}_Information.txt").write_text(
            f"Title: {name}\nCountry and volume: Sweden, 1l\n"
        )
        lines.append(
            f"{name},{class_id},{coarse},{class_id},/{folder}/{name}_Iconic.jpg,"
            f"/{folder}/{name}_Description.txt"
        )
        for split in ("train", "val", "test"):
            photo = f"{split}/{group}/{coarse}/{name}/{name}_001.jpg"
            write_image(dataset / photo, seed=10 + class_id)
            with (dataset / f"{split}.txt").open("a") as handle:
                handle.write(f"{photo}, {class_id}, {class_id}\n")
    (dataset / "classes.csv").write_text("\n".join(lines) + "\n")
    return root


def test_grocery_store_adapter_on_its_layout(tmp_path):
    root = _fake_grocery_store(tmp_path / "gs")
    tables = read_grocery_store(GroceryStoreSource(kind="grocery_store", root=root))
    items = tables.items.set_index("item_id")
    assert items.loc["gs-granny-smith", "title"] == "Granny Smith"
    assert items.loc["gs-oatly-oat-milk", "product_type"] == "oat milk"
    assert items.loc["gs-oatly-oat-milk", "category"] == "packages"
    attributes = json.loads(items.loc["gs-granny-smith", "attributes"])
    assert attributes["country and volume"] == "Sweden, 1l"
    assert sorted(tables.queries["split"].unique()) == ["test", "train", "val"]
    assert tables.queries["query_id"].is_unique
    manifest = ingest(
        IngestParams(source=GroceryStoreSource(kind="grocery_store", root=root)),
        tmp_path / "catalog",
    )
    assert (manifest.num_items, manifest.num_queries, manifest.num_quarantined) == (2, 6, 0)
    assert manifest.product_types == ["apple", "oat milk"]


def test_unseen_products_keep_only_their_test_photos_and_a_test_listing(tmp_path):
    root = _fake_grocery_store(tmp_path / "gs")
    source = GroceryStoreSource(kind="grocery_store", root=root, unseen_products=["Granny-Smith"])
    tables = read_grocery_store(source)
    items = tables.items.set_index("item_id")
    assert items.loc["gs-granny-smith", "split"] == "test"
    assert items.loc["gs-oatly-oat-milk", "split"] == "train"
    granny = tables.queries[tables.queries["item_id"] == "gs-granny-smith"]
    assert len(granny) and set(granny["split"]) == {"test"}
    oat = tables.queries[tables.queries["item_id"] == "gs-oatly-oat-milk"]
    assert sorted(oat["split"].unique()) == ["test", "train", "val"]
    with pytest.raises(ValueError, match="not GroceryStore class names"):
        read_grocery_store(GroceryStoreSource(kind="grocery_store", root=root,
                                              unseen_products=["Granny Smith"]))


@pytest.mark.skipif(not GROCERY_STORE.is_dir(), reason="GroceryStoreDataset not beside the repo")
def test_grocery_store_dataset_ingests_and_validates(tmp_path):
    from vlclip.config import ValidateParams
    from vlclip.validate import validate_catalog

    source = GroceryStoreSource(kind="grocery_store", root=GROCERY_STORE)
    manifest = ingest(IngestParams(source=source), tmp_path / "catalog")
    assert manifest.num_items == 81
    assert manifest.num_queries + manifest.num_quarantined >= 5125
    assert len(manifest.product_types) == 43
    catalog = load_catalog(tmp_path / "catalog")
    assert catalog.queries.groupby("split").size().to_dict()["test"] >= 2400
    outcome = validate_catalog(catalog, ValidateParams(), tmp_path / "reports")
    assert outcome.success, outcome.failed
