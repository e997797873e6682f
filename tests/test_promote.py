"""The promotion gate's rule and the champion folder it installs."""

from __future__ import annotations

import json

import pytest

from vlclip.config import PromoteParams, parse_params
from vlclip.promote import FIRST, KEPT, PROMOTED, decide, headline, install_champion

METRICS = {"image_to_catalog": {"mrr": 0.40, "hits@5": 0.5}, "text_to_image": {"mrr": 0.2}}


def test_first_model_is_promoted():
    decision = decide(0.1, None, PromoteParams())
    assert decision.decision == FIRST and decision.promoted


def test_challenger_must_beat_the_champion_by_the_margin():
    params = PromoteParams(min_improvement=0.01)
    assert decide(0.411, 0.40, params).decision == PROMOTED
    kept = decide(0.405, 0.40, params)
    assert kept.decision == KEPT and not kept.promoted
    assert "needs at least +0.0100" in kept.reason
    assert decide(0.30, 0.40, params).decision == KEPT


def test_zero_margin_promotes_a_tie():
    assert decide(0.4, 0.4, PromoteParams(min_improvement=0.0)).promoted


def test_headline_names_the_missing_metric():
    assert headline(METRICS, "image_to_catalog.mrr") == 0.40
    with pytest.raises(ValueError, match="promote.metric='image_to_catalog.ndcg@3'"):
        headline(METRICS, "image_to_catalog.ndcg@3")


def test_metric_key_is_validated_in_params():
    with pytest.raises(ValueError, match="promote.metric"):
        parse_params({"promote": {"metric": "mrr"}})


def test_install_replaces_the_champion_whole(tmp_path):
    models, index = tmp_path / "models", tmp_path / "index"
    models.mkdir()
    index.mkdir()
    (models / "model.pt").write_bytes(b"new weights")
    (index / "catalog.faiss").write_bytes(b"new index")
    champion = tmp_path / "champion"
    (champion / "models").mkdir(parents=True)
    (champion / "models" / "old.pt").write_bytes(b"old")
    install_champion(champion, models, index, METRICS, decide(0.4, None, PromoteParams()))
    assert (champion / "models" / "model.pt").read_bytes() == b"new weights"
    assert not (champion / "models" / "old.pt").exists()
    assert (champion / "index" / "catalog.faiss").is_file()
    assert json.loads((champion / "metrics.json").read_text()) == METRICS
    assert json.loads((champion / "promotion.json").read_text())["promoted"] is True
