"""The whole `dvc repro` on a small demo catalog, in a temporary copy of the repository."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import make_workspace
from helpers import run_command as _run

from vlclip.pipeline import load_stages

pytestmark = pytest.mark.e2e
SMALL = {
    "ingest": {
        "source": {
            "kind": "synthetic",
            "seed": 3,
            "num_products": 48,
            "queries_per_product": 3,
            "image_size": 64,
        }
    },
    "model": {"name": "vlclip-small"},
    "train": {"epochs": 40, "batch_size": 32, "warmup_steps": 2, "lr": 0.002},
    "embed": {"batch_size": 32},
    # scored on the products the model trained on: 48 drawn products are too few for a model
    # trained from scratch to generalise (the ablation measures unseen products, with intervals)
    "evaluate": {"split": "train"},
    "promote": {"metric": "text_to_image.mrr"},  # the task training moves most here
    "ablation": {
        "seeds": [0, 1],
        "epochs": 1,
        "batch_size": 32,
        "model": {"name": "vlclip-micro"},
    },
}
# The trained model must beat its untrained start by these margins (absolute HITS@5) on the
# tasks training is for: proof that training, embedding and evaluation are wired to the same
# ids and inputs. Measured here (31 train products, 93 photos; training is deterministic):
# text -> image 0.16 -> 0.81, image -> catalog 0.33 -> 0.43 (whole catalog of 48 listings).
MIN_GAIN_HITS5 = {"text_to_image": 0.3, "image_to_catalog": 0.05}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("repo"), SMALL)


def test_dvc_repro_runs_every_stage(workspace):
    result = _run(["dvc", "repro"], workspace)
    for stage in load_stages(workspace):
        assert f"Running stage '{stage}'" in result.stdout
    metrics = json.loads((workspace / "reports/metrics.json").read_text())
    for variant in ("model", "baseline"):
        for task in ("text_to_image", "image_to_catalog", "image_to_image", "zero_shot"):
            values = metrics[variant][task]
            assert 0.0 <= values["hits@1"] <= values["hits@5"] <= values["hits@10"] <= 1.0
            assert 0.0 < values["mrr"] <= 1.0
            assert values["queries"] > 0
    for task, margin in MIN_GAIN_HITS5.items():
        gain = metrics["model"][task]["hits@5"] - metrics["baseline"][task]["hits@5"]
        assert gain >= margin, (task, metrics["model"][task], metrics["baseline"][task])
    # image -> catalog searches the whole catalog: more listings than test products
    catalog_size = len(pd.read_parquet(workspace / "data/validated/items.parquet"))
    assert (
        metrics["model"]["image_to_catalog"]["queries"]
        == (metrics["model"]["image_to_catalog_test_items"]["queries"])
    )
    assert catalog_size > metrics["model"]["text_to_image"]["queries"]
    assert not (workspace / "reports/ablation.md").exists()  # `make run` trains no ablation
    assert (workspace / "models/model.pt").is_file()
    assert (workspace / "index/catalog.faiss").is_file()
    promotion = json.loads((workspace / "reports/promotion.json").read_text())
    assert promotion["promoted"] and promotion["champion"] is None  # the first model
    champion = workspace / "champion"
    assert (champion / "models/model.pt").read_bytes() == (
        workspace / "models/model.pt"
    ).read_bytes()
    assert (workspace / "reports/validation/validation.json").is_file()
    assert (workspace / "reports/train/metrics.json").is_file()
    assert (workspace / "reports/plots/hits_at_k.csv").is_file()


def test_retrained_ablation_runs_every_variant_and_seed_and_is_cached(workspace):
    result = _run(["dvc", "repro", "ablation/dvc.yaml"], workspace)
    runs = sorted((workspace / "reports/ablation/runs").glob("*.json"))
    assert len(runs) == 4 * 2  # four input variants x two seeds, each a training run
    assert result.stdout.count("Running stage 'ablation/dvc.yaml:run@") == 8
    records = [json.loads(path.read_text()) for path in runs]
    assert {(r["images"], r["texts"]) for r in records} == {
        ("full", "raw"),
        ("crops", "raw"),
        ("full", "enriched"),
        ("crops", "enriched"),
    }
    by_seed = {r["seed"]: r for r in records if r["variant"] == "crops_enriched"}
    assert by_seed[0]["metrics"] != by_seed[1]["metrics"]  # seeds differ: an interval exists
    summary = json.loads((workspace / "reports/ablation.json").read_text())
    assert set(summary["rows"]) == {
        "full_raw",
        "crops_raw",
        "full_enriched",
        "crops_enriched",
        "untrained",
    }
    hits = summary["rows"]["crops_enriched"]["metrics"]["image_to_catalog"]["hits@5"]
    assert hits["n"] == 2 and hits["low"] <= hits["mean"] <= hits["high"]
    assert sorted(hits["values"]) == sorted(
        by_seed[s]["metrics"]["image_to_catalog"]["hits@5"] for s in (0, 1)
    )
    table = (workspace / "reports/ablation.md").read_text()
    assert "VL-CLIP: crops, enriched text" in table and "Relative change" in table

    again = _run(["dvc", "repro", "ablation/dvc.yaml"], workspace)
    assert "Running stage" not in again.stdout  # every run comes from the cache


def test_same_seed_gives_the_same_ablation_run(workspace, tmp_path):
    """Training is reproducible: one run repeated with its seed gives identical metrics."""
    first = json.loads((workspace / "reports/ablation/runs/crops_raw-0.json").read_text())
    _run(["vlclip", "ablation", "run", "crops_raw", "--seed", "0"], workspace)
    second = json.loads((workspace / "reports/ablation/runs/crops_raw-0.json").read_text())
    assert second["metrics"] == first["metrics"]
    assert second["untrained"] == first["untrained"]
    _run(["dvc", "checkout", "--force", "ablation/dvc.yaml"], workspace)


def test_second_repro_does_no_work(workspace):
    result = _run(["dvc", "repro"], workspace)
    assert "Running stage" not in result.stdout
    assert "up to date" in result.stdout


def test_recommend_and_search_use_the_index(workspace):
    result = _run(["vlclip", "recommend", "demo-00000", "-k", "3"], workspace)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 3
    assert all("demo-00000 " not in line for line in lines)
    result = _run(["vlclip", "search", "red soda can", "-k", "2"], workspace)
    assert len([line for line in result.stdout.splitlines() if "demo-" in line]) == 2
    missing = _run(["vlclip", "recommend", "no-such-item"], workspace, check=False)
    assert missing.returncode == 1 and "no-such-item" in missing.stderr


def test_embed_any_catalog_folder(workspace, tmp_path):
    out = tmp_path / "vectors"
    _run(["vlclip", "embed", "--catalog", "data/catalog", "--out", str(out)], workspace)
    items = pd.read_parquet(out / "items_image.parquet")
    queries = pd.read_parquet(out / "queries_image.parquet")
    catalog = pd.read_parquet(workspace / "data/catalog/items.parquet")
    assert items["item_id"].tolist() == catalog["item_id"].tolist()
    assert len(items["vector"][0]) == 96  # vlclip-small's embed_dim
    assert len(queries) > 0


def test_outputs_are_cached_and_pushed_to_the_local_remote(workspace):
    status = _run(["dvc", "status"], workspace)
    assert "up to date" in status.stdout
    _run(["dvc", "push"], workspace)
    remote = workspace / ".dvc-storage"
    assert remote.is_dir() and any(remote.rglob("*"))


def test_a_worse_model_does_not_replace_the_champion(workspace):
    champion = (workspace / "champion/models/model.pt").read_bytes()
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["train"]["epochs"] = 1  # a model that learned almost nothing
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    result = _run(["dvc", "repro"], workspace)
    assert "Running stage 'promote'" in result.stdout
    promotion = json.loads((workspace / "reports/promotion.json").read_text())
    assert not promotion["promoted"] and promotion["decision"] == "kept"
    assert promotion["champion"] > promotion["challenger"]
    assert (workspace / "champion/models/model.pt").read_bytes() == champion
    # recommendations keep coming from the champion's index
    result = _run(["vlclip", "recommend", "demo-00000", "-k", "2"], workspace)
    assert len([line for line in result.stdout.splitlines() if "demo-" in line]) == 2


def test_failed_gate_stops_the_pipeline_and_keeps_good_outputs(workspace):
    validated = (workspace / "data/validated/items.parquet").read_bytes()
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["validate"]["allowed_product_types"] = ["only this type"]
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    result = _run(["dvc", "repro"], workspace, check=False)
    assert result.returncode != 0
    assert "product_type" in result.stdout + result.stderr
    assert "Running stage 'ground'" not in result.stdout
    assert (workspace / "data/validated/items.parquet").read_bytes() == validated
