"""`vlclip experiment CONFIG`: params.yaml plus a config, in a workspace of its own; and the
GroceryStore config it is documented with."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import GROCERY_STORE, REPO, TINY, make_workspace, run_command

from vlclip.config import ParamsError, load_params
from vlclip.orchestration import merged, start_experiment

GROCERY_CONFIG = REPO / "configs" / "grocery_store.yaml"


def test_merging_replaces_leaves_and_keeps_the_rest():
    base = {"train": {"epochs": 12, "lr": 0.1}, "index": {"kind": "hnsw"}, "ks": [1, 5]}
    result = merged(base, {"train": {"epochs": 3}, "ks": [10]})
    assert result == {"train": {"epochs": 3, "lr": 0.1}, "index": {"kind": "hnsw"}, "ks": [10]}
    assert base["train"]["epochs"] == 12  # the base is not changed
    source = {"source": {"kind": "synthetic", "seed": 7}}
    assert merged(source, {"source": {"kind": "table", "path": "x.csv"}}) == {
        "source": {"kind": "table", "path": "x.csv"}  # another kind: nothing of the old one
    }
    assert merged(source, {"source": {"seed": 8}}) == {"source": {"kind": "synthetic", "seed": 8}}


@pytest.mark.skipif(not GROCERY_STORE.is_dir(), reason="GroceryStoreDataset not beside the repo")
def test_the_grocery_store_experiment_gets_its_own_workspace(tmp_path):
    repo = make_workspace(tmp_path / "repo", TINY)
    (repo / "configs").mkdir(exist_ok=True)
    # the test's repository is not beside ../shared: point at the dataset where it is
    text = GROCERY_CONFIG.read_text().replace("root: ../shared/datasets/grocery-store",
                                              f"root: {GROCERY_STORE}")
    (repo / "configs" / "grocery_store.yaml").write_text(text)
    result = run_command(["vlclip", "experiment", "configs/grocery_store.yaml", "--no-run"], repo)
    folder = repo / ".vlclip-runs" / "grocery_store"
    assert str(folder) in result.stdout
    params = load_params(folder / "params.yaml")
    source = params.ingest.source
    assert source.kind == "grocery_store"
    assert source.root.is_absolute() and (source.root / "dataset" / "classes.csv").is_file()
    assert params.model.name == "vlclip-lite-pretrained" and params.model.pretrained == "packaged"
    assert params.train.epochs == 8 and params.embed.batch_size == 32  # the rest: params.yaml
    assert yaml.safe_load((repo / "params.yaml").read_text())["ingest"]["source"]["kind"] == (
        "synthetic"
    )  # the repository's own settings are untouched


@pytest.mark.skipif(not GROCERY_STORE.is_dir(), reason="GroceryStoreDataset not beside the repo")
def test_the_held_out_products_are_real_classes_picked_by_the_documented_rule():
    config = yaml.safe_load(GROCERY_CONFIG.read_text())
    unseen = config["ingest"]["source"]["unseen_products"]
    classes = pd.read_csv(GROCERY_STORE / "dataset" / "classes.csv", skipinitialspace=True)
    names = classes.iloc[:, 0].tolist()
    ids = dict(zip(names, classes.iloc[:, 1], strict=True))
    assert len(unseen) >= 15 and set(unseen) <= set(names)
    assert sorted(unseen, key=ids.get) == [n for n in names if ids[n] % 5 == 2]


def test_an_experiment_config_with_an_unknown_key_is_refused_before_any_work(tmp_path):
    repo = make_workspace(tmp_path / "repo", TINY)
    (repo / "bad.yaml").write_text("train:\n  epoch: 3\n")
    with pytest.raises(ParamsError, match="epoch"):
        start_experiment(repo, tmp_path / "runs", "bad", repo / "bad.yaml")
    assert not (tmp_path / "runs").exists()


def test_catalog_paths_are_anchored_at_the_repository_not_the_workspace(tmp_path):
    from vlclip.orchestration import anchor_source_paths

    raw = {"ingest": {"source": {"kind": "table", "path": "my/items.csv",
                                 "image_root": "../shared/images", "queries_path": None}},
           "enrich": {"cache_dir": ".vlclip-cache/enrich"}}
    anchored = anchor_source_paths(raw, tmp_path / "repo")
    source = anchored["ingest"]["source"]
    assert source["path"] == str(tmp_path / "repo" / "my" / "items.csv")
    assert source["image_root"] == str(tmp_path / "shared" / "images")
    assert source["queries_path"] is None
    assert anchored["enrich"]["cache_dir"] == ".vlclip-cache/enrich"  # workspace-local stays


def test_an_experiment_runs_the_whole_pipeline_without_an_activated_venv(tmp_path):
    import os
    import sys

    repo = make_workspace(tmp_path / "repo", TINY)
    (repo / "fewer.yaml").write_text("ingest:\n  source:\n    num_products: 16\n")
    bare_path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                if Path(p) != Path(sys.executable).parent)
    run_command([str(Path(sys.executable).parent / "vlclip"), "experiment", "fewer.yaml"], repo,
                timeout=1200, PATH=bare_path)
    folder = repo / ".vlclip-runs" / "fewer"
    assert (folder / "reports" / "metrics.json").is_file()
    assert yaml.safe_load((folder / "params.yaml").read_text())["ingest"]["source"][
        "num_products"] == 16
    assert not (repo / "reports" / "metrics.json").exists()  # the repository's stay untouched


def test_a_second_experiment_runs_the_repositorys_new_code(tmp_path):
    """A workspace left at an earlier commit moves to HEAD and keeps its dvc.lock."""
    repo = make_workspace(tmp_path / "repo", TINY)
    config = repo / "small.yaml"
    config.write_text("train: {epochs: 1}\n")
    folder = start_experiment(repo, repo / ".vlclip-runs", "small", config)
    (folder / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")  # as a finished run left
    (repo / "NEWS.md").write_text("new code\n")
    run_command(["git", "add", "NEWS.md"], repo)
    run_command(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "new"],
                repo)
    config.write_text("train: {epochs: 2}\n")
    start_experiment(repo, repo / ".vlclip-runs", "small", config)
    assert (folder / "NEWS.md").read_text() == "new code\n"
    assert (folder / "dvc.lock").read_text() == "schema: '2.0'\nstages: {}\n"
    assert load_params(folder / "params.yaml").train.epochs == 2
