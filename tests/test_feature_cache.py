"""Cached frozen image features: same weights and embeddings as without them, reused across
runs, and refused where the tower is not the chain of layers the cache assumes."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from helpers import noise_pairs

from vlclip.config import ModelParams, TrainParams, parse_params
from vlclip.embed import embed_images
from vlclip.features import FrozenImageLayers
from vlclip.model import CHECKPOINT_FILE, create_bundle
from vlclip.packaged import PACKAGED
from vlclip.train import Pair, lock_towers, train

NAME = "vlclip-lite-pretrained"
LOCKS = {"lock_image": True, "lock_image_unlocked_groups": 1, "lock_text": True,
         "lock_text_unlocked_layers": 1}


def _pairs(folder, count: int = 8) -> list[Pair]:
    return noise_pairs(folder, count, size=(80, 96), products=4)


def _weights(folder) -> dict[str, torch.Tensor]:
    return torch.load(folder / CHECKPOINT_FILE, map_location="cpu")["state_dict"]


def test_cached_training_gives_the_weights_of_uncached_training(tmp_path, caplog):
    pairs = _pairs(tmp_path / "images")
    common = {"epochs": 2, "batch_size": 4, "warmup_steps": 1, "device": "cpu", "lr": 1e-3,
              "augment": False, "checkpoint_dir": tmp_path / "resume",
              "feature_cache_dir": tmp_path / "features", **LOCKS}
    model = ModelParams(name=NAME, pretrained=PACKAGED)
    train(pairs[:6], pairs[6:], model, TrainParams(**common), tmp_path / "plain")
    with caplog.at_level(logging.INFO, logger="vlclip.features"):
        train(pairs[:6], pairs[6:], model,
              TrainParams(**common, cache_frozen_features=True), tmp_path / "cached")
    assert "computed frozen features of 8 images" in caplog.text
    plain, cached = _weights(tmp_path / "plain"), _weights(tmp_path / "cached")
    moved = [name for name in plain if name.startswith("visual.trunk.conv_head")]
    assert moved and all(torch.allclose(plain[n], cached[n], atol=1e-5) for n in plain)
    stored = list((tmp_path / "features").glob("*/*.npy"))
    assert len(stored) == 8  # one file per image, under the frozen weights' hash

    caplog.clear()  # another seed from the same start reads every feature from disk
    with caplog.at_level(logging.INFO, logger="vlclip.features"):
        train(pairs[:6], pairs[6:], model,
              TrainParams(**{**common, "seed": 1}, cache_frozen_features=True),
              tmp_path / "again")
    assert "computed frozen features" not in caplog.text
    assert "caching the image tower's" in caplog.text


def test_embeddings_from_cached_features_match_the_pixels(tmp_path):
    paths = [pair.image for pair in _pairs(tmp_path / "images", 5)]
    bundle = create_bundle(NAME, PACKAGED, seed=0)
    lock_towers(bundle.model, TrainParams(**LOCKS))
    frozen = FrozenImageLayers.attach(bundle.model, bundle.preprocess_eval, bundle.device,
                                      tmp_path / "features", paths[:2])
    assert frozen is not None and frozen.trainable  # the last blocks run from the cache
    direct = embed_images(bundle, paths, batch_size=2)
    cached = embed_images(bundle, paths, batch_size=2, frozen=frozen)
    np.testing.assert_allclose(cached, direct, atol=1e-5)


def test_a_tower_that_is_not_a_chain_of_layers_is_refused(tmp_path):
    paths = [pair.image for pair in _pairs(tmp_path / "images", 2)]
    bundle = create_bundle("vlclip-tiny", None, seed=0)  # open_clip's ViT: class token etc.
    lock_towers(bundle.model, TrainParams(lock_image=True, lock_image_unlocked_groups=1))
    with pytest.raises(ValueError, match="not a plain chain of layers"):
        FrozenImageLayers.attach(bundle.model, bundle.preprocess_eval, bundle.device,
                                 tmp_path / "features", paths)


def test_the_cache_needs_fixed_pixels_and_a_locked_tower():
    with pytest.raises(ValueError, match="augment: false"):
        parse_params({"train": {"cache_frozen_features": True, "lock_image": True}})
    with pytest.raises(ValueError, match="lock_image: true"):
        parse_params({"train": {"cache_frozen_features": True, "augment": False}})
    assert parse_params({"train": {"cache_frozen_features": True, "augment": False,
                                   "lock_image": True}}).train.cache_frozen_features
