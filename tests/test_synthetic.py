"""The embedded demo catalog: deterministic, well-formed, and hard in the intended ways."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vlclip.catalog import synthetic
from vlclip.catalog.schema import BOX_COLUMNS, ITEM_SOURCE_COLUMNS, QUERY_SOURCE_COLUMNS
from vlclip.catalog.sources import SourceTables
from vlclip.config import SyntheticSource

SMALL = SyntheticSource(seed=3, num_products=48, queries_per_product=2, image_size=96)
BACKGROUND_TOLERANCE = 10  # 8-bit levels; catalog backgrounds are a smooth vertical sweep
MIN_SHORTENED_TITLE_SHARE = 0.8  # titles with at least one shortened word: jargon, not prose
MIN_VARIED_SHARE = 0.7  # words of the default catalog written in two forms or more
MIN_UNIT_SPELLINGS = 2  # spellings of each unit across the default catalog, case aside


def _generate(source: SyntheticSource, folder: Path, workers: int = 1) -> SourceTables:
    return synthetic.generate_synthetic(source, folder, workers=workers)


def _image_bytes(folder: Path) -> dict[str, bytes]:
    images = folder / synthetic.IMAGE_ROOT
    return {path.relative_to(images).as_posix(): path.read_bytes()
            for path in sorted(images.rglob("*.png"))}


def _load(folder: Path, tables: SourceTables, relative: str) -> np.ndarray:
    return np.asarray(Image.open(folder / tables.image_root / relative).convert("RGB"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SourceTables]:
    folder = tmp_path_factory.mktemp("demo")
    return folder, _generate(SMALL, folder)


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_tables_and_image_bytes(demo, tmp_path):
    folder, tables = demo
    again = _generate(SMALL, tmp_path)
    pd.testing.assert_frame_equal(tables.items, again.items)
    pd.testing.assert_frame_equal(tables.queries, again.queries)
    assert tables.product_types == again.product_types
    assert _image_bytes(folder) == _image_bytes(tmp_path)


def test_worker_processes_render_the_same_bytes(tmp_path):
    source = SyntheticSource(seed=5, num_products=12, queries_per_product=1, image_size=64)
    alone = _generate(source, tmp_path / "one", workers=1)
    pooled = _generate(source, tmp_path / "two", workers=2)
    pd.testing.assert_frame_equal(alone.items, pooled.items)
    pd.testing.assert_frame_equal(alone.queries, pooled.queries)
    assert _image_bytes(tmp_path / "one") == _image_bytes(tmp_path / "two")


def test_another_seed_gives_another_catalog(demo, tmp_path):
    folder, tables = demo
    other = _generate(SMALL.model_copy(update={"seed": 4}), tmp_path)
    assert not tables.items["title"].equals(other.items["title"])
    assert not tables.items["product_type"].equals(other.items["product_type"])
    first, second = _image_bytes(folder), _image_bytes(tmp_path)
    assert first.keys() == second.keys()
    assert sum(first[name] == second[name] for name in first) == 0


# --------------------------------------------------------------------------- taxonomy


def test_taxonomy_is_large_and_consistent():
    names = [ptype.name for ptype in synthetic.PRODUCT_TYPES]
    assert len(names) >= 40
    assert len(set(names)) == len(names)
    assert all(name == name.lower() for name in names)
    assert len(synthetic.CATEGORIES) >= 8
    assert {ptype.silhouette for ptype in synthetic.PRODUCT_TYPES} <= set(synthetic.SILHOUETTES)
    assert all(ptype.accent in synthetic.ACCENT_COLORS for ptype in synthetic.PRODUCT_TYPES)


def test_types_sharing_a_silhouette_are_drawn_differently():
    by_silhouette: dict[str, list] = {}
    for ptype in synthetic.PRODUCT_TYPES:
        by_silhouette.setdefault(ptype.silhouette, []).append(ptype)
    for group in by_silhouette.values():
        shapes = {(ptype.aspect, ptype.variant, ptype.accent) for ptype in group}
        assert len(shapes) == len(group)


def test_default_catalog_uses_every_type_and_unique_looks():
    looks = synthetic._assign_looks(SyntheticSource().num_products, np.random.default_rng(0))
    assert {ptype.name for ptype, *_ in looks} == {t.name for t in synthetic.PRODUCT_TYPES}
    assert len(set(looks)) == len(looks)
    assert all(primary != secondary for _, primary, secondary, _ in looks)
    many = synthetic._assign_looks(3000, np.random.default_rng(1))
    assert len(set(many)) == len(many)


def _is_subsequence(form: str, word: str) -> bool:
    letters = iter(word)
    return all(letter in letters for letter in form)


def test_short_forms_are_made_by_rules_not_tables():
    """Every shortened form keeps its word's first letter and the order of its letters."""
    for word in synthetic.VOCABULARY:
        forms = synthetic.spellings(word)
        assert word in forms
        for form in forms - {word}:
            if form.isdigit():  # "two" -> "2"
                continue
            assert form[0] == word[0] and _is_subsequence(form, word), (word, form)
            assert len(form) < len(word)


# --------------------------------------------------------------------------- tables


def test_tables_have_the_contract_columns(demo):
    _, tables = demo
    assert list(tables.items.columns) == [*ITEM_SOURCE_COLUMNS, *BOX_COLUMNS]
    assert list(tables.queries.columns) == [*QUERY_SOURCE_COLUMNS, *BOX_COLUMNS]
    assert tables.image_root == "images"
    assert tables.product_types == sorted(set(tables.items["product_type"]))
    # 48 products over more than 48 types: the balanced assignment gives each its own type
    assert len(tables.product_types) == SMALL.num_products


def test_ids_are_unique_and_queries_point_at_items(demo):
    _, tables = demo
    items, queries = tables.items, tables.queries
    assert items["item_id"].is_unique
    assert items["item_id"].str.fullmatch(r"demo-\d{5}").all()
    assert queries["query_id"].is_unique
    assert set(queries["item_id"]) == set(items["item_id"])
    assert (queries.groupby("item_id").size() == SMALL.queries_per_product).all()
    assert queries["query_id"].str.fullmatch(r"demo-\d{5}-q\d+").all()
    inherited = queries["item_id"].map(items.set_index("item_id")["split"])
    assert (queries["split"] == inherited).all()


def test_split_sizes_follow_the_fractions(demo):
    _, tables = demo
    counts = tables.items["split"].value_counts()
    n = SMALL.num_products
    assert counts["test"] == round(SMALL.test_fraction * n)
    assert counts.get("val", 0) == round(SMALL.val_fraction * n)
    assert counts["train"] == n - counts["test"] - counts.get("val", 0)


def test_fractions_that_leave_no_training_data_are_refused(tmp_path):
    source = SyntheticSource(num_products=8, val_fraction=0.49, test_fraction=0.49)
    with pytest.raises(ValueError, match="no train products"):
        _generate(source, tmp_path)


def _words(text: str) -> list[str]:
    """Lower-case word pieces of a title: split on spaces, joiners and periods."""
    return [piece for piece in re.split(r"[\s/,&.\-]+", text.lower()) if piece]


def test_titles_are_shop_jargon_typed_inconsistently(demo):
    _, tables = demo
    titles = list(tables.items["title"])
    shortened = [any(piece not in synthetic.VOCABULARY and piece.isalpha()
                     for piece in _words(title))
                 for title in titles]
    assert np.mean(shortened) >= MIN_SHORTENED_TITLE_SHARE
    assert any(title == title.upper() for title in titles)
    assert any(title != title.upper() for title in titles)  # case varies between listings
    assert tables.items["description"].str.len().gt(0).all()


def test_attributes_are_json_with_coded_values(demo):
    _, tables = demo
    colour_forms = {form for colour in synthetic.COLORS for form in synthetic.spellings(colour)}
    for text in tables.items["attributes"]:
        attributes = json.loads(text)
        assert text == json.dumps(attributes, sort_keys=True)
        colour = next(attributes[key] for key in ("clr", "color", "colour") if key in attributes)
        assert colour in colour_forms
        size = next(attributes[key] for key in ("sz", "size", "vol", "net_wt", "qty", "count")
                    if key in attributes)
        amount, unit = size.split(" ", 1)
        assert float(amount) > 0 and unit in synthetic.UNITS


# --------------------------------------------------------------------------- inconsistent jargon


def test_listing_text_is_deterministic_from_the_seed(demo):
    _, tables = demo
    products, texts = synthetic._plan(SMALL)
    again = synthetic._plan(SMALL)[1]
    assert texts == again
    assert [title for title, _, _ in texts] == list(tables.items["title"])
    assert [text for _, _, text in texts] == list(tables.items["attributes"])
    other = synthetic._plan(SMALL.model_copy(update={"seed": SMALL.seed + 1}))[1]
    assert [title for title, _, _ in texts] != [title for title, _, _ in other]


def _forms_by_word(source: SyntheticSource) -> dict[str, set[str]]:
    """For each vocabulary word, the forms it was written in across the catalog's titles.

    A piece of a title counts for a word of that product only when it cannot be a spelling of
    any other word the product's title might contain, so no form is credited to the wrong word.
    """
    forms: dict[str, set[str]] = {}
    claims = [word for modifier in synthetic.MODIFIERS for word in modifier.split()]
    for product, (title, _, _) in zip(*synthetic._plan(source), strict=True):
        phrases = (product.ptype.name, product.primary, product.secondary, product.pattern)
        words = {w for phrase in phrases for w in phrase.replace("-", " ").split()}
        candidates = {w: synthetic.spellings(w) for w in {*words, *claims}}
        for piece in _words(title):
            owners = [w for w, spelled in candidates.items() if piece in spelled]
            if len(owners) == 1 and owners[0] in words:
                forms.setdefault(owners[0], set()).add(piece)
    return forms


def test_the_same_word_is_written_in_several_forms():
    forms = _forms_by_word(SyntheticSource())
    varied = [word for word, seen in forms.items() if len(seen) >= 2]
    assert len(varied) >= MIN_VARIED_SHARE * len(forms)
    for colour in synthetic.COLORS:  # every colour appears often enough to show its variety
        assert len(forms[colour]) >= 2, (colour, forms[colour])
    assert {"bottle", "btl"} <= forms["bottle"]


def test_units_are_typed_in_mixed_forms():
    """The unit after a title's amount is spelled differently across listings of one unit."""
    spelled: dict[str, set[str]] = {}
    for title, _, attributes in synthetic._plan(SyntheticSource())[1]:
        size = next(value for key, value in json.loads(attributes).items()
                    if key in ("sz", "size", "vol", "net_wt", "qty", "count"))
        amount, unit = size.split(" ", 1)
        typed = re.escape(amount).replace(r"\.", "[.,]")
        match = re.search(rf"(?<![\d.,]){typed}\s?(fl\.? ?oz|[a-z]+\.?)", title, re.IGNORECASE)
        assert match, (title, size)
        spelled.setdefault(unit, set()).add(match.group(1).lower().rstrip("."))
    assert set(spelled) == set(synthetic.UNITS)
    for unit, forms in spelled.items():
        assert len(forms) >= MIN_UNIT_SPELLINGS, (unit, forms)


# --------------------------------------------------------------------------- images and boxes


def test_every_image_exists_with_the_stated_size(demo):
    folder, tables = demo
    for relative in [*tables.items["image_path"], *tables.queries["image_path"]]:
        assert not Path(relative).is_absolute() and "\\" not in relative
        with Image.open(folder / tables.image_root / relative) as image:
            assert image.format == "PNG"
            assert image.size == (SMALL.image_size, SMALL.image_size)


@pytest.mark.parametrize("table", ["items", "queries"])
def test_boxes_lie_inside_the_image_and_have_area(demo, table):
    _, tables = demo
    frame = getattr(tables, table)
    x0, y0, x1, y1 = (frame[column] for column in BOX_COLUMNS)
    assert (x0 >= 0).all() and (y0 >= 0).all()
    assert (x1 <= SMALL.image_size).all() and (y1 <= SMALL.image_size).all()
    assert ((x1 - x0) >= 2).all() and ((y1 - y0) >= 2).all()


def test_query_products_are_small_and_catalog_products_large(demo):
    _, tables = demo

    def longest_side(frame: pd.DataFrame) -> pd.Series:
        side = np.maximum(frame["box_x1"] - frame["box_x0"], frame["box_y1"] - frame["box_y0"])
        return side / SMALL.image_size

    assert longest_side(tables.items).min() > 0.5
    assert longest_side(tables.queries).max() < 0.6  # 45% plus rotation


def _differs(pixels: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Pixels further from the background colour of their row than the tolerance."""
    return np.abs(pixels - background).max(axis=-1) > BACKGROUND_TOLERANCE


def test_catalog_boxes_are_tight(demo):
    """Inside, the first and last rows and columns show product; just outside is background."""
    folder, tables = demo
    for row in tables.items.itertuples():
        pixels = _load(folder, tables, row.image_path).astype(int)
        background = pixels[:, :1, :]  # the sweep only changes from top to bottom
        x0, y0, x1, y1 = (int(getattr(row, column)) for column in BOX_COLUMNS)
        inside = slice(y0, y1)
        for column in (x0, x1 - 1):
            edge = pixels[inside, column : column + 1]
            assert _differs(edge, background[inside]).any(), row.item_id
        for line in (y0, y1 - 1):
            edge = pixels[line : line + 1, x0:x1]
            assert _differs(edge, background[line : line + 1]).any(), row.item_id
        for column in (x0 - 1, x1):  # the shadow sits under the product, never beside it
            beside = pixels[inside, column : column + 1]
            assert not _differs(beside, background[inside]).any(), row.item_id
        above = pixels[y0 - 1 : y0, x0:x1]
        assert not _differs(above, background[y0 - 1 : y0]).any(), row.item_id


def test_query_product_is_drawn_over_the_clutter(demo):
    """The box holds a real object: its pixels vary and its border rows are not all clutter."""
    folder, tables = demo
    for row in tables.queries.itertuples():
        pixels = _load(folder, tables, row.image_path)
        x0, y0, x1, y1 = (int(getattr(row, column)) for column in BOX_COLUMNS)
        assert pixels[y0:y1, x0:x1].std() > 5, row.query_id
