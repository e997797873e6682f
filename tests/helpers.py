"""Helpers shared by the tests (imported as ``helpers``; pytest puts tests/ on the path)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
GROCERY_STORE = REPO.parent / "shared" / "datasets" / "grocery-store"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_image(path: Path, size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    """A small random RGB image; different seeds give different bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


BIN = Path(sys.executable).parent

# The smallest pipeline that exercises every stage: a 24-product synthetic catalog, micro model.
TINY = {
    "ingest": {
        "source": {
            "kind": "synthetic",
            "seed": 5,
            "num_products": 24,
            "queries_per_product": 2,
            "image_size": 64,
        }
    },
    "model": {"name": "vlclip-micro"},
    "train": {"epochs": 1, "batch_size": 16, "warmup_steps": 1},
    "embed": {"batch_size": 32},
}


def merge(base: dict, override: dict) -> dict:
    """``base`` with ``override``'s keys replaced, as ``vlclip experiment`` merges configs."""
    from vlclip.orchestration import merged

    return merged(base, override)


def command_env(**extra: str) -> dict[str, str]:
    """The environment commands run with in tests: our venv first, no real API key."""
    inherited = {
        k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")
    }
    return {
        **inherited,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GX_ANALYTICS_ENABLED": "False",
        **extra,
    }


def run_command(
    args: list[str], cwd: Path, check: bool = True, timeout: float = 900, **env: str
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        args, cwd=cwd, env=command_env(**env), capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def make_workspace(target: Path, params_override: dict) -> Path:
    """A copy of the repository's files (tracked and not ignored) as a fresh git + DVC
    checkout, with ``params_override`` merged into its params.yaml and committed."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listed:
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    params = yaml.safe_load((target / "params.yaml").read_text())
    (target / "params.yaml").write_text(yaml.safe_dump(merge(params, params_override)))
    identity = ["-c", "user.name=vlclip-tests", "-c", "user.email=tests@vlclip.invalid"]
    run_command(["git", "init", "-q"], target)
    run_command(["git", "add", "-A"], target)
    run_command(["git", *identity, "commit", "-qm", "workspace"], target)
    return target


def copy_workspace(source: Path, target: Path) -> Path:
    """A copy of a workspace with its git history, DVC cache and outputs."""
    shutil.copytree(source, target, symlinks=True)
    return target


def airflow_env(home: Path) -> dict[str, str]:
    """Settings of a throwaway Airflow (SQLite) in ``home``."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "VLCLIP_RUNS_DIR": str(home / "runs"),
    }


DAG_TEST = textwrap.dedent(
    """
    import json, sys
    from airflow.models import DagBag
    dag = DagBag("dags").get_dag(sys.argv[1])
    run = dag.test(run_conf=json.loads(sys.argv[2]))
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    print(json.dumps({"state": str(run.state), "tasks": states}))
    """
)


def run_dag_test(repo: Path, dag_id: str, conf: dict, env: dict[str, str]) -> dict:
    """``dag.test(run_conf=conf)`` in a child process (Airflow is configured per process by
    its environment); the run's state, each task's state and the log."""
    result = run_command(
        [sys.executable, "-c", DAG_TEST, dag_id, json.dumps(conf)], repo, timeout=1500, **env
    )
    return {
        **json.loads(result.stdout.strip().splitlines()[-1]),
        "log": result.stdout + result.stderr,
    }


def noise_pairs(folder: Path, count: int, size=(96, 96), products: int | None = None) -> list:
    """Training pairs of random-noise PNGs with made-up texts: ``products`` items (default
    one per photo), so tests can train a real model in seconds."""
    from vlclip.train import Pair

    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for index in range(count):
        product = index % (products or count)
        pixels = np.random.default_rng(index).integers(0, 255, (*size, 3), dtype=np.uint8)
        path = folder / f"{index}.png"
        Image.fromarray(pixels).save(path)
        pairs.append(Pair(path, f"product number {product}", f"sku-{product}"))
    return pairs
