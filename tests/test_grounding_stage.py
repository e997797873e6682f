"""The ground stage: detector quality on the demo catalog, the content-hash cache, resuming a
killed run, bad images, and the grounding report."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from vlclip.catalog.ingest import ingest
from vlclip.catalog.schema import Catalog, load_catalog
from vlclip.config import GroundParams, IngestParams, ParamsError, SyntheticSource, parse_params
from vlclip.ground import BOXES_FILE, DETECTORS, ground, make_detector, write_grounding_report
from vlclip.ground.detectors import FullImageDetector
from vlclip.ground.saliency import SaliencyDetector
from vlclip.ground.stage import records_of

# The saliency detector's stated quality (README, "Grounding"), checked on a demo catalog with a
# seed its constants were not tuned on. Measured there: items 0.99; query photos prompted with
# the whole vocabulary (no label) 0.49, with their true type (oracle) 0.68; full photo 0.07.
MIN_ITEM_IOU = 0.95
MIN_QUERY_IOU = 0.4
MIN_GAIN_OVER_FULL_IMAGE = 5.0


def _demo(folder: Path, products: int, queries: int, size: int, seed: int) -> Catalog:
    source = SyntheticSource(
        seed=seed, num_products=products, queries_per_product=queries, image_size=size
    )
    ingest(IngestParams(source=source), folder)
    return load_catalog(folder)


@pytest.fixture(scope="module")
def quality_catalog(tmp_path_factory) -> Catalog:
    return _demo(tmp_path_factory.mktemp("quality"), products=40, queries=3, size=128, seed=11)


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory) -> Catalog:
    """8 products with 2 query photos each: 24 photos at 64 px."""
    return _demo(tmp_path_factory.mktemp("small"), products=8, queries=2, size=64, seed=5)


def _params(tmp_path: Path, **changes) -> GroundParams:
    return GroundParams(cache_dir=tmp_path / "cache", batch_size=4, **changes)


class Counting:
    """Wraps a detector and counts what it is asked to detect; can die after N batches."""

    def __init__(self, inner, interrupt_after: int | None = None):
        self.inner = inner
        self.name = inner.name
        self.calls = 0
        self.photos = 0
        self.prompts: list[tuple[str, ...]] = []
        self.interrupt_after = interrupt_after

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def format_prompt(self, product_type: str) -> str:
        return self.inner.format_prompt(product_type)

    def detect(self, images, prompts):
        if self.interrupt_after is not None and self.calls >= self.interrupt_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        self.photos += len(images)
        self.prompts += prompts
        return self.inner.detect(images, prompts)


class CountingExemplars(Counting):
    def fit_exemplars(self, exemplars) -> None:
        self.inner.fit_exemplars(exemplars)


# ----------------------------------------------------------------------- detectors and params


def test_saliency_is_the_default_and_every_backend_is_registered():
    assert GroundParams().detector == "saliency"
    assert isinstance(make_detector(GroundParams()), SaliencyDetector)
    assert set(DETECTORS) == {"saliency", "grounding_dino", "owlv2", "full_image"}


def test_unknown_detector_is_a_params_error():
    with pytest.raises(ParamsError, match="ground.detector"):
        parse_params({"ground": {"detector": "yolo"}})


def test_saliency_finds_the_product_on_the_demo_catalog(quality_catalog, tmp_path):
    boxes = ground(quality_catalog, _params(tmp_path), tmp_path / "crops")
    metrics = write_grounding_report(
        quality_catalog, boxes, _params(tmp_path), tmp_path / "crops", tmp_path / "reports"
    )
    items, queries = metrics["items"], metrics["queries"]
    assert items["mean_iou"] >= MIN_ITEM_IOU
    assert queries["mean_iou"] >= MIN_QUERY_IOU
    assert queries["mean_iou"] >= MIN_GAIN_OVER_FULL_IMAGE * queries["full_image_iou"]
    assert queries["recall_iou50"] > queries["full_image_recall_iou50"]
    assert queries["prompt_source"] == "vocabulary"


# ----------------------------------------------------------------------- no label at inference


def test_query_photos_are_prompted_with_the_vocabulary_not_their_label(small_catalog, tmp_path):
    counting = Counting(FullImageDetector())
    boxes = ground(small_catalog, _params(tmp_path), tmp_path / "crops", detector=counting)
    vocabulary = tuple(sorted(set(small_catalog.items["product_type"].str.lower())))
    assert len(vocabulary) > 1
    query_prompts = [p for p in counting.prompts if len(p) > 1]
    assert len(query_prompts) == len(small_catalog.queries)
    assert set(query_prompts) == {vocabulary}
    listing_prompts = [p for p in counting.prompts if len(p) == 1]
    assert sorted(listing_prompts) == sorted(
        (t.lower(),) for t in small_catalog.items["product_type"]
    )
    queries = boxes[boxes["table"] == "queries"]
    assert (queries["prompt_source"] == "vocabulary").all()


def test_relabelling_query_photos_changes_none_of_their_crops(small_catalog, tmp_path):
    """A query photo's box must not depend on which product it belongs to."""
    boxes = ground(small_catalog, _params(tmp_path / "a"), tmp_path / "a-crops")
    queries = small_catalog.queries.copy()
    queries["item_id"] = list(reversed(queries["item_id"].tolist()))  # every label moves
    assert (queries["item_id"] != small_catalog.queries["item_id"]).any()
    relabelled = dataclasses.replace(small_catalog, queries=queries)
    again = ground(relabelled, _params(tmp_path / "b"), tmp_path / "b-crops")
    columns = ["record_id", "box_x0", "box_y0", "box_x1", "box_y1", "score", "phrase", "prompt"]
    before = boxes[boxes["table"] == "queries"][columns].sort_values("record_id")
    after = again[again["table"] == "queries"][columns].sort_values("record_id")
    pd.testing.assert_frame_equal(before.reset_index(drop=True), after.reset_index(drop=True))


def test_oracle_prompt_is_the_true_type_and_is_named_as_such(small_catalog, tmp_path):
    counting = Counting(FullImageDetector())
    params = _params(tmp_path, query_prompt="oracle")
    boxes = ground(small_catalog, params, tmp_path / "crops", detector=counting)
    assert all(len(prompt) == 1 for prompt in counting.prompts)
    queries = boxes[boxes["table"] == "queries"].merge(
        small_catalog.items[["item_id", "product_type"]], on="item_id"
    )
    assert (queries["prompt"] == queries["product_type"].str.lower()).all()
    assert (queries["prompt_source"] == "oracle").all()


def test_full_image_detector_scores_as_the_no_grounding_baseline(small_catalog, tmp_path):
    params = _params(tmp_path, detector="full_image")
    boxes = ground(small_catalog, params, tmp_path / "crops")
    metrics = write_grounding_report(
        small_catalog, boxes, params, tmp_path / "crops", tmp_path / "reports"
    )
    for table in ("items", "queries"):
        assert metrics[table]["mean_iou"] == pytest.approx(metrics[table]["full_image_iou"])
    assert not boxes["fallback"].any()
    assert (boxes["box_x1"] == boxes["image_width"]).all()


# ----------------------------------------------------------------------- cache and resume


def test_second_run_detects_nothing_and_reuses_every_crop(small_catalog, tmp_path):
    params = _params(tmp_path)
    first = CountingExemplars(SaliencyDetector())
    boxes = ground(small_catalog, params, tmp_path / "crops", detector=first)
    assert first.photos == len(records_of(small_catalog))
    crop_bytes = {path: (tmp_path / "crops" / path).read_bytes() for path in boxes["crop_path"]}

    second = CountingExemplars(SaliencyDetector())
    again = ground(small_catalog, params, tmp_path / "crops", detector=second)
    assert second.calls == 0
    pd.testing.assert_frame_equal(boxes, again)
    assert all((tmp_path / "crops" / p).read_bytes() == data for p, data in crop_bytes.items())


def test_changed_type_redetects_its_listing_and_the_vocabulary_prompts_only(
    small_catalog, tmp_path
):
    params = _params(tmp_path)
    ground(small_catalog, params, tmp_path / "crops", detector=Counting(FullImageDetector()))
    items = small_catalog.items.copy()
    changed = items["item_id"].iloc[0]
    items.loc[0, "product_type"] = "mystery product"
    renamed = dataclasses.replace(small_catalog, items=items)

    counting = Counting(FullImageDetector())
    boxes = ground(renamed, params, tmp_path / "crops", detector=counting)
    # the listing itself, and every query photo: the vocabulary they are prompted with changed
    assert counting.photos == 1 + len(small_catalog.queries)
    assert ("mystery product",) in counting.prompts
    assert all("mystery product" in prompt for prompt in counting.prompts)
    listing = boxes[(boxes["table"] == "items") & (boxes["item_id"] == changed)]
    assert (listing["prompt"] == "mystery product").all()


def test_exemplar_detector_redetects_only_the_prompts_whose_exemplars_changed(
    small_catalog, tmp_path
):
    params = _params(tmp_path)
    ground(
        small_catalog, params, tmp_path / "crops", detector=CountingExemplars(SaliencyDetector())
    )
    items = small_catalog.items.copy()
    old_type = items.loc[0, "product_type"]
    items.loc[0, "product_type"] = "mystery product"
    counting = CountingExemplars(SaliencyDetector())
    ground(
        dataclasses.replace(small_catalog, items=items),
        params,
        tmp_path / "crops",
        detector=counting,
    )
    affected = {"mystery product", old_type}
    expected = sum(
        1
        for record in records_of(dataclasses.replace(small_catalog, items=items))
        if affected & set(record.phrases)  # query photos see every type, so all of them
    )
    assert counting.photos == expected < len(records_of(small_catalog))


def test_new_crop_settings_recrop_without_detecting_again(small_catalog, tmp_path):
    params = _params(tmp_path)
    first = ground(small_catalog, params, tmp_path / "crops")
    counting = CountingExemplars(SaliencyDetector())
    wider = ground(
        small_catalog, _params(tmp_path, margin=0.3), tmp_path / "crops", detector=counting
    )
    assert counting.calls == 0
    kept = ~first["fallback"]
    assert (
        (wider["box_x1"] - wider["box_x0"])[kept] >= (first["box_x1"] - first["box_x0"])[kept]
    ).all()
    assert (
        (wider["box_x1"] - wider["box_x0"])[kept] > (first["box_x1"] - first["box_x0"])[kept]
    ).any()


def test_killed_run_resumes_without_redoing_finished_batches(small_catalog, tmp_path):
    params = _params(tmp_path)
    total = len(records_of(small_catalog))
    dying = CountingExemplars(SaliencyDetector(), interrupt_after=3)
    with pytest.raises(KeyboardInterrupt):
        ground(small_catalog, params, tmp_path / "crops", detector=dying)
    assert not (tmp_path / "crops").exists()  # nothing half-written is published
    finished = dying.photos
    assert finished == 3 * params.batch_size

    resumed = CountingExemplars(SaliencyDetector())
    boxes = ground(small_catalog, params, tmp_path / "crops", detector=resumed)
    assert resumed.photos == total - finished
    clean = ground(small_catalog, _params(tmp_path / "fresh"), tmp_path / "fresh-crops")
    pd.testing.assert_frame_equal(boxes, clean)


def test_torn_last_line_of_the_cache_is_ignored(small_catalog, tmp_path):
    params = _params(tmp_path, detector="full_image")
    ground(small_catalog, params, tmp_path / "crops")
    (cache_file,) = (tmp_path / "cache").glob("*.jsonl")
    with cache_file.open("a") as handle:
        handle.write('{"key": "abc", "box": [1, 2')
    counting = Counting(FullImageDetector())
    ground(small_catalog, params, tmp_path / "crops", detector=counting)
    assert counting.calls == 0
    assert all(json.loads(line) for line in cache_file.read_text().splitlines())


# ----------------------------------------------------------------------- bad input


def _with_broken_query(catalog: Catalog, folder: Path) -> tuple[Catalog, str]:
    """A copy of the catalog whose first query photo no longer decodes."""
    shutil.copytree(catalog.root, folder)
    copy = load_catalog(folder)
    broken = copy.queries.iloc[0]
    copy.image_file(broken["image_path"]).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return copy, broken["query_id"]


def test_undecodable_photo_falls_back_and_is_reported(small_catalog, tmp_path):
    catalog, broken = _with_broken_query(small_catalog, tmp_path / "catalog")
    params = _params(tmp_path)
    boxes = ground(catalog, params, tmp_path / "crops")
    row = boxes.set_index("record_id").loc[broken]
    assert row["fallback"] and "could not be decoded" in row["error"]
    with Image.open(tmp_path / "crops" / row["crop_path"]) as placeholder:
        placeholder.load()  # downstream stages can still read a crop for every photo
    assert (boxes["error"] == "").sum() == len(boxes) - 1
    metrics = write_grounding_report(catalog, boxes, params, tmp_path / "crops", tmp_path / "r")
    assert metrics["queries"]["errors"] == 1
    assert "could not be decoded" in (tmp_path / "r" / "grounding.html").read_text()


class FailsOnWidePhotos(FullImageDetector):
    """A detector that raises on some inputs, as a model can on odd images."""

    def detect(self, images, prompts):
        if any(image.width > image.height for image in images):
            raise ValueError("cannot handle landscape photos")
        return super().detect(images, prompts)


def test_detector_error_on_one_photo_does_not_stop_the_stage(small_catalog, tmp_path):
    catalog, _ = _with_broken_query(small_catalog, tmp_path / "catalog")
    target = catalog.image_file(catalog.items["image_path"].iloc[1])
    Image.new("RGB", (80, 40), (200, 10, 10)).save(target)
    boxes = ground(catalog, _params(tmp_path), tmp_path / "crops", detector=FailsOnWidePhotos())
    failed = boxes[boxes["error"].str.startswith("detector failed")]
    assert list(failed["record_id"]) == [catalog.items["item_id"].iloc[1]]
    assert failed["fallback"].all()
    assert (tmp_path / "crops" / BOXES_FILE).is_file()


class AlwaysFails(FullImageDetector):
    def detect(self, images, prompts):
        raise RuntimeError("broken model")


def test_a_detector_that_fails_on_every_photo_stops_the_stage(small_catalog, tmp_path):
    with pytest.raises(RuntimeError, match="every photo"):
        ground(small_catalog, _params(tmp_path), tmp_path / "crops", detector=AlwaysFails())
    assert not (tmp_path / "crops").exists()


# ----------------------------------------------------------------------- report


def test_report_is_a_metric_file_and_a_self_contained_contact_sheet(small_catalog, tmp_path):
    params = _params(tmp_path, report_samples=5)
    boxes = ground(small_catalog, params, tmp_path / "crops")
    write_grounding_report(small_catalog, boxes, params, tmp_path / "crops", tmp_path / "reports")
    metrics = json.loads((tmp_path / "reports" / "grounding.json").read_text())
    assert metrics["detector"] == "saliency" and metrics["has_boxes"]
    for table in ("items", "queries"):
        keys = {"mean_iou", "recall_iou50", "fallback_rate", "full_image_iou", "mean_iou_crop"}
        assert keys <= set(metrics[table])
        assert 0.0 <= metrics[table]["mean_iou"] <= 1.0
    page = (tmp_path / "reports" / "grounding.html").read_text()
    assert page.count('<figure class="tile">') == 2 * 5
    assert page.count("data:image/png;base64,") == 2 * 2 * 5  # photo and crop per tile
    assert "http://" not in page and "https://" not in page


def test_report_without_true_boxes_has_no_iou(small_catalog, tmp_path):
    manifest = dataclasses.replace(small_catalog.manifest, has_boxes=False)
    catalog = dataclasses.replace(small_catalog, manifest=manifest)
    params = _params(tmp_path, detector="full_image")
    boxes = ground(catalog, params, tmp_path / "crops")
    metrics = write_grounding_report(catalog, boxes, params, tmp_path / "crops", tmp_path / "r")
    assert "mean_iou" not in metrics["queries"] and metrics["queries"]["fallback_rate"] == 0.0
