"""Shared fixtures: small catalogs written to temp folders."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import TINY, make_workspace, merge, run_command, write_image

MONITORED = merge(TINY, {"ingest": {"source": {"num_products": 60}}})


@pytest.fixture
def table_catalog(tmp_path: Path) -> dict[str, Path]:
    """A CSV catalog of 6 good items with one query photo each."""
    images = tmp_path / "images"
    rows, queries = [], []
    for index in range(6):
        write_image(images / f"item{index}.png", seed=index)
        write_image(images / f"photo{index}.png", seed=100 + index)
        rows.append(
            {
                "item_id": f"sku-{index}",
                "title": f"PRODUCT {index} 12OZ",
                "description": "supplier text",
                "attributes": json.dumps({"clr": "rd"}),
                "product_type": "soda can" if index % 2 else "cereal box",
                "image_path": f"item{index}.png",
                "split": ["train", "val", "test"][index % 3],
            }
        )
        queries.append({"query_id": f"q-{index}", "item_id": f"sku-{index}",
                        "image_path": f"photo{index}.png", "split": "test"})
    items_csv = tmp_path / "items.csv"
    pd.DataFrame(rows).to_csv(items_csv, index=False)
    queries_csv = tmp_path / "queries.csv"
    pd.DataFrame(queries).to_csv(queries_csv, index=False)
    return {"items": items_csv, "queries": queries_csv, "images": images, "root": tmp_path}


@pytest.fixture(scope="session")
def trained_pipeline(tmp_path_factory) -> Path:
    """A workspace whose whole pipeline ran (``dvc repro``): a champion with its reference
    snapshot. Tests that write into it take a copy (:func:`copy_of_trained_pipeline`)."""
    repo = make_workspace(tmp_path_factory.mktemp("trained"), MONITORED)
    run_command(["dvc", "repro", "--quiet"], repo, timeout=1200)
    assert (repo / "champion/reference/snapshot.json").is_file()
    return repo
