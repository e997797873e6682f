"""What the offline text says about the photo (issue 11): named dominant colours in CIELAB,
round or boxy, tall or wide, measured from pixels; and the enrich stage putting it in."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import GROCERY_STORE
from PIL import Image, ImageDraw

from vlclip.catalog.schema import QUARANTINE_COLUMNS, QUERY_COLUMNS, Catalog, Manifest, empty_frame
from vlclip.config import EnrichParams
from vlclip.enrich import enrich
from vlclip.enrich.visual import describe_photo, name_colour, srgb_to_lab

BACKGROUND = (238, 238, 236)


def _product(size, box, colour, shape="rectangle", second=None) -> Image.Image:
    image = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    getattr(draw, shape)(box, fill=colour)
    if second:  # the lower half of the product in a second colour
        left, top, right, bottom = box
        draw.rectangle((left, (top + bottom) // 2, right, bottom), fill=second)
    return image


def test_lab_conversion_matches_the_cie_reference_values():
    assert np.allclose(srgb_to_lab([255, 255, 255]), [100, 0, 0], atol=0.1)
    assert np.allclose(srgb_to_lab([255, 0, 0]), [53.24, 80.09, 67.20], atol=0.2)
    assert np.allclose(srgb_to_lab([0, 0, 255]), [32.30, 79.19, -107.86], atol=0.3)


@pytest.mark.parametrize(
    ("rgb", "name"),
    [((200, 20, 35), "red"), ((60, 150, 60), "green"), ((245, 215, 15), "yellow"),
     ((30, 40, 70), "navy"), ((120, 75, 40), "brown"), ((250, 250, 250), "white")],
)
def test_colours_are_named_by_the_nearest_table_entry(rgb, name):
    assert name_colour(srgb_to_lab(rgb)) == name


def test_a_tall_red_box_is_red_boxy_and_tall():
    facts = describe_photo(_product((120, 200), (30, 20, 90, 180), (200, 20, 35)))
    assert facts.colours == ("red",) and facts.outline == "boxy" and facts.aspect == "tall"
    assert facts.sentence() == "looks red, boxy, tall"


def test_a_green_disc_is_round_and_a_flat_tin_is_wide():
    disc = describe_photo(_product((160, 160), (20, 20, 140, 140), (60, 150, 60), "ellipse"))
    assert disc.colours == ("green",) and disc.outline == "round"
    assert disc.aspect == "about as wide as tall"
    tin = describe_photo(_product((220, 120), (10, 30, 210, 90), (30, 40, 70)))
    assert tin.aspect == "wide" and tin.colours == ("navy",)


def test_two_colours_are_both_named_larger_share_first():
    box = (20, 20, 100, 180)
    facts = describe_photo(_product((120, 200), box, (245, 215, 15), second=(30, 90, 170)))
    assert set(facts.colours) == {"yellow", "blue"}


@pytest.mark.skipif(not GROCERY_STORE.is_dir(), reason="GroceryStoreDataset not beside the repo")
def test_real_catalog_photos_get_their_colours():
    iconic = GROCERY_STORE / "dataset" / "iconic-images-and-descriptions"
    granny = describe_photo(Image.open(iconic / "Fruit/Apple/Granny-Smith/Granny-Smith_Iconic.jpg"))
    assert any("green" in colour for colour in granny.colours), granny
    pepper = iconic / "Vegetables/Pepper/Red-Bell-Pepper/Red-Bell-Pepper_Iconic.jpg"
    assert "red" in describe_photo(Image.open(pepper)).colours


def _catalog(root) -> Catalog:
    images = root / "images"
    images.mkdir()
    _product((120, 200), (30, 20, 90, 180), (200, 20, 35)).save(images / "a.png")
    items = pd.DataFrame([{
        "item_id": "sku-1", "title": "SDA CN 12OZ", "description": "", "attributes": "{}",
        "product_type": "soda can", "category": "beverages", "image_path": "a.png",
        "split": "test", "content_hash": "h1",
    }])
    return Catalog(root=root, manifest=Manifest(source="table", image_root="images"),
                   items=items, queries=empty_frame(QUERY_COLUMNS),
                   quarantine=empty_frame(QUARANTINE_COLUMNS))


def test_the_offline_text_says_what_the_photo_shows_only_when_asked(tmp_path):
    catalog = _catalog(tmp_path)
    plain = enrich(catalog, EnrichParams(backend="rule_based"), tmp_path / "plain")
    seen = enrich(catalog, EnrichParams(backend="rule_based", visual_attributes=True),
                  tmp_path / "seen")
    plain_text, seen_text = plain.texts.loc[0, "text"], seen.texts.loc[0, "text"]
    assert "looks" not in plain_text
    assert "looks red, boxy, tall" in seen_text
    assert seen_text.startswith("Soda can (beverages)")  # type and name lead, then the photo
