"""Grounding DINO and OWLv2 through the real loading and detection code, against tiny random
checkpoints saved to a temporary folder (no network: the hub is never asked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlclip.catalog.ingest import ingest
from vlclip.catalog.schema import Catalog, load_catalog
from vlclip.config import GroundParams, IngestParams, SyntheticSource
from vlclip.ground import ground, make_detector
from vlclip.ground.detectors import DetectorUnavailable
from vlclip.ground.hf import HF_BACKENDS, HFDetector
from vlclip.ground.tiny_models import build_grounding_dino, build_owlv2

BUILDERS = {"grounding_dino": build_grounding_dino, "owlv2": build_owlv2}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Catalog:
    """4 products with 1 query photo each: 8 photos at 64 px."""
    folder = tmp_path_factory.mktemp("catalog")
    source = SyntheticSource(seed=2, num_products=8, queries_per_product=1, image_size=64)
    ingest(IngestParams(source=source), folder)
    full = load_catalog(folder)
    keep = full.items["item_id"].iloc[:4]
    return Catalog(
        full.root,
        full.manifest,
        full.items[full.items["item_id"].isin(keep)],
        full.queries[full.queries["item_id"].isin(keep)],
        full.quarantine,
    )


def _params(name: str, checkpoint: Path, tmp_path: Path, **changes) -> GroundParams:
    # random weights score every prompt token low: a zero text threshold keeps their boxes
    return GroundParams(
        detector=name,
        checkpoint=str(checkpoint),
        text_threshold=0.0,
        device="cpu",
        cache_dir=tmp_path / "cache",
        batch_size=3,
        box_threshold=0.0,
        **changes,
    )


def test_both_models_are_one_class_configured_by_a_record():
    assert HF_BACKENDS["grounding_dino"].default_checkpoint == "IDEA-Research/grounding-dino-tiny"
    assert HF_BACKENDS["owlv2"].default_checkpoint == "google/owlv2-base-patch16-ensemble"
    for name in HF_BACKENDS:
        detector = make_detector(GroundParams(detector=name))
        assert isinstance(detector, HFDetector) and detector.name == name
        assert detector.checkpoint == HF_BACKENDS[name].default_checkpoint


def test_prompts_follow_each_model_convention():
    dino = make_detector(GroundParams(detector="grounding_dino"))
    owl = make_detector(GroundParams(detector="owlv2"))
    assert dino.format_prompt("  Olive Oil  Bottle") == "olive oil bottle."
    assert dino.format_prompt("soda can.") == "soda can."
    assert owl.format_prompt("Olive Oil Bottle") == "a photo of a olive oil bottle"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_detector_loads_a_local_checkpoint_and_returns_boxes_inside_the_image(
    name, checkpoints, tmp_path
):
    detector = make_detector(_params(name, checkpoints[name], tmp_path))
    images = [
        Image.fromarray(
            np.random.default_rng(seed).integers(0, 255, (48 + 8 * seed, 64, 3), dtype=np.uint8)
        )
        for seed in range(3)
    ]
    prompts = [(detector.format_prompt(text),) for text in ("soda can", "cereal box", "jar")]
    prompts[-1] = tuple(detector.format_prompt(t) for t in ("soda can", "cereal box", "jar"))
    found = detector.detect(images, prompts)
    assert len(found) == len(images)
    for image, detection in zip(images, found, strict=True):
        assert detection is not None and 0.0 <= detection.score <= 1.0
        x0, y0, x1, y1 = detection.box
        assert 0 <= x0 <= x1 <= image.width and 0 <= y0 <= y1 <= image.height


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_ground_stage_runs_with_the_model_and_then_needs_no_model(
    name, checkpoints, catalog, tmp_path
):
    params = _params(name, checkpoints[name], tmp_path)
    boxes = ground(catalog, params, tmp_path / "crops")
    assert len(boxes) == len(catalog.items) + len(catalog.queries)
    assert (boxes["detector"] == name).all() and (boxes["error"] == "").all()
    suffix = "." if name == "grounding_dino" else ""
    assert boxes["prompt"].str.endswith(suffix).all()
    assert boxes["score"].between(0.0, 1.0).all()
    assert (boxes["box_x1"] <= boxes["image_width"]).all()

    cached = make_detector(params)
    again = ground(catalog, params, tmp_path / "crops", detector=cached)
    assert cached._loaded is None  # every detection came from the cache: no model was loaded
    assert again.equals(boxes)


def test_missing_local_checkpoint_stops_with_a_clear_message(catalog, tmp_path):
    params = _params("grounding_dino", tmp_path / "no-such-model", tmp_path)
    with pytest.raises(DetectorUnavailable, match="ground.checkpoint"):
        ground(catalog, params, tmp_path / "crops")


def test_fingerprint_follows_weights_and_thresholds(checkpoints, tmp_path):
    dino = _params("grounding_dino", checkpoints["grounding_dino"], tmp_path)
    base = make_detector(dino).fingerprint()
    assert make_detector(dino.model_copy(update={"text_threshold": 0.3})).fingerprint() != base
    assert make_detector(dino.model_copy(update={"box_threshold": 0.5})).fingerprint() == base
    owl = _params("owlv2", checkpoints["owlv2"], tmp_path)
    assert make_detector(owl.model_copy(update={"text_threshold": 0.3})).fingerprint() == (
        make_detector(owl).fingerprint()
    )
    copy = tmp_path / "copy"
    build_owlv2(copy, seed=1)
    first = make_detector(owl.model_copy(update={"checkpoint": str(copy)})).fingerprint()
    build_owlv2(copy, seed=2)  # new weights in the same folder
    assert make_detector(owl.model_copy(update={"checkpoint": str(copy)})).fingerprint() != first


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_vocabulary_longer_than_the_text_encoder_reads_is_chunked(name, checkpoints, tmp_path):
    detector = make_detector(_params(name, checkpoints[name], tmp_path))
    vocabulary = tuple(detector.format_prompt(f"soda can {i}") for i in range(40))
    chunks = detector._chunks(vocabulary)
    assert sum(chunks, ()) == vocabulary  # every phrase asked, once, in order
    processor, model, _ = detector.load()
    limit = getattr(model.config, "max_text_len", None)
    if HF_BACKENDS[name].token_grounded:
        assert len(chunks) > 1
        assert all(detector._tokens(processor, list(chunk)) <= limit for chunk in chunks)
    image = Image.fromarray(np.zeros((48, 64, 3), dtype=np.uint8))
    (found,) = detector.detect([image], [vocabulary])
    assert found is not None and found.phrase
