"""Kill and resume every long stage (issue 10): each of ground, enrich, train, embed and index
is SIGKILLed at several points of a run and started again, as `dvc repro` or an Airflow retry
would. After every kill a downstream stage must find either no output or a complete one; the
run that finishes must write exactly what an uninterrupted run writes (file bytes; the model's
tensors, and its card without the wall time), and work already paid for (detections, API
replies, finished epochs) must be reused, not redone or duplicated.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from fake_anthropic import SECRET, FakeAnthropic, fake_anthropic
from helpers import command_env, copy_workspace, merge, run_command

POLL_S = 0.02
KILL_TIMEOUT_S = 600


@dataclass
class Killed:
    """One interrupted run: whether the kill landed before the stage finished, and its log."""

    killed: bool
    log: str


def run_until(args: list[str], cwd: Path, when: Callable[[float], bool], **env: str) -> Killed:
    """Run ``args``; SIGKILL it (and its children) as soon as ``when(seconds since start)``."""
    log_path = cwd / ".stage.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            args, cwd=cwd, env=command_env(**env), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started = time.monotonic()
        killed = False
        while process.poll() is None:
            elapsed = time.monotonic() - started
            if when(elapsed) or elapsed > KILL_TIMEOUT_S:
                os.killpg(process.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(POLL_S)
        process.wait()
    text = log_path.read_text()
    if not killed:
        assert process.returncode == 0, text[-3000:]
    return Killed(killed and process.returncode == -signal.SIGKILL, text)


def fingerprint(paths: list[Path]) -> dict[str, object]:
    """What a downstream stage would read: every file's bytes, except the model, whose tensors
    are compared with a float tolerance and whose card loses its wall time."""
    found: dict[str, object] = {}
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            if path.suffix == ".pt":
                found[str(path)] = torch.load(path, map_location="cpu")["state_dict"]
            elif path.name == "model.json":
                card = json.loads(path.read_text())
                card["result"].pop("seconds")
                found[str(path)] = card
            else:
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def same_outputs(found: dict[str, object], expected: dict[str, object]) -> bool:
    if found.keys() != expected.keys():
        return False
    for name, value in found.items():
        if isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values()):
            other = expected[name]
            if value.keys() != other.keys() or not all(
                torch.allclose(value[k], other[k], atol=1e-6, rtol=1e-5) for k in value
            ):
                return False
        elif value != expected[name]:
            return False
    return True


# --------------------------------------------------------------------------- the workspace


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAnthropic]:
    with fake_anthropic() as state:
        state.delay_s = 0.03  # enough for kills to land between replies
        yield state


@pytest.fixture(scope="module")
def workspace(trained_pipeline, tmp_path_factory, api) -> Path:
    """The trained demo workspace with a 3-epoch training and the Claude backend."""
    repo = copy_workspace(trained_pipeline, tmp_path_factory.mktemp("resume") / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    override = {
        "train": {"epochs": 3},
        "enrich": {"backend": "anthropic", "base_url": api.url, "concurrency": 2,
                   "backoff_initial_s": 0.01, "backoff_max_s": 0.05},
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(merge(params, override)))
    return repo


def _ground_cache_lines(repo: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in (repo / ".vlclip-cache/ground").glob("*"))


def _train_checkpoint(repo: Path) -> Path | None:
    found = list((repo / ".vlclip-cache/train").glob("*/resume.pt"))
    return found[0] if found else None


def _after_checkpoint_changes(repo: Path) -> Callable[[float], bool]:
    """True once a training epoch newer than the one present at the start was saved."""
    start = _train_checkpoint(repo)
    mtime = start.stat().st_mtime_ns if start else None

    def saved(_: float) -> bool:
        current = _train_checkpoint(repo)
        return current is not None and current.stat().st_mtime_ns != mtime

    return saved


@dataclass
class Stage:
    name: str
    outputs: tuple[str, ...]
    caches: tuple[str, ...]
    # Each kill point builds its condition from the workspace, the fake API and the duration of
    # the uninterrupted run, just before its own run starts.
    kill_points: tuple[Callable[[Path, FakeAnthropic, float], Callable[[float], bool]], ...]
    must_land: bool  # progress-based points always land before the end; time-based may not


def _at_share(share: float) -> Callable[[Path, FakeAnthropic, float], Callable[[float], bool]]:
    return lambda repo, api, duration: lambda elapsed: elapsed >= share * duration


def _after_api_calls(count: int):
    def point(repo: Path, api: FakeAnthropic, duration: float) -> Callable[[float], bool]:
        start = len(api.messages())
        return lambda elapsed: len(api.messages()) >= start + count

    return point


STAGES = [
    Stage(
        "ground",
        ("data/crops",),
        (".vlclip-cache/ground",),
        (
            lambda repo, api, d: lambda e: _ground_cache_lines(repo) >= 1,
            lambda repo, api, d: lambda e: _ground_cache_lines(repo) >= 64,
        ),
        must_land=True,
    ),
    Stage(
        "enrich",
        ("data/enriched",),
        (".vlclip-cache/enrich",),
        (_after_api_calls(3), _after_api_calls(40)),
        must_land=True,
    ),
    Stage(
        "train",
        ("models",),
        (".vlclip-cache/train",),
        (
            lambda repo, api, d: lambda e: _train_checkpoint(repo) is not None,  # epoch 1 saved
            lambda repo, api, d: _after_checkpoint_changes(repo),  # epoch 2 saved
        ),
        must_land=True,
    ),
    Stage("embed", ("data/embeddings",), (), (_at_share(0.5), _at_share(0.85)), must_land=False),
    Stage("index", ("index",), (), (_at_share(0.5), _at_share(0.85)), must_land=False),
]


def _clear(repo: Path, paths: tuple[str, ...]) -> None:
    for name in paths:
        shutil.rmtree(repo / name, ignore_errors=True)


@pytest.mark.parametrize("stage", STAGES, ids=[s.name for s in STAGES])
def test_a_killed_stage_resumes_to_the_uninterrupted_result(stage, workspace, api):
    repo, env = workspace, {"ANTHROPIC_API_KEY": SECRET}
    outputs = [repo / name for name in stage.outputs]
    command = ["vlclip", stage.name]

    _clear(repo, stage.outputs + stage.caches)
    calls_before = len(api.messages())
    started = time.monotonic()
    run_command(command, repo, **env)
    duration = time.monotonic() - started
    uninterrupted_calls = len(api.messages()) - calls_before
    expected = fingerprint(outputs)
    assert expected, f"{stage.name} wrote nothing"

    _clear(repo, stage.outputs + stage.caches)
    calls_before = len(api.messages())
    kills = 0
    for point in stage.kill_points:
        run = run_until(command, repo, point(repo, api, duration), **env)
        kills += run.killed
        assert run.killed or not stage.must_land, f"{stage.name} finished before the kill"
        for output in outputs:  # downstream sees nothing, or a whole output
            if output.exists():
                assert same_outputs(fingerprint([output]), fingerprint_of(expected, output))
    assert kills or not stage.must_land

    final = run_command(command, repo, **env)
    assert same_outputs(fingerprint(outputs), expected)
    for output in outputs:  # staging folders of the killed runs are gone
        assert not [p.name for p in output.parent.glob(f".{output.name}.*")]
    assert "Traceback" not in final.stderr

    if stage.name == "ground":
        lines = [json.loads(line)["key"] for line in
                 (repo / ".vlclip-cache/ground").glob("*").__next__().read_text().splitlines()
                 if line.endswith("}")]
        assert len(lines) == len(set(lines)), "a detection was cached twice"
        from_cache = re.search(r"(\d+) from the cache", final.stderr)
        assert from_cache and int(from_cache.group(1)) >= 64  # the killed runs' detections
    if stage.name == "enrich":  # replies paid for before a kill are not asked for again
        paid = len(api.messages()) - calls_before
        assert paid <= uninterrupted_calls + kills * 2, (paid, uninterrupted_calls)
        with sqlite3.connect(repo / ".vlclip-cache/enrich/replies.sqlite") as db:
            assert db.execute("SELECT COUNT(*) FROM replies").fetchone()[0] > 0
    if stage.name == "train":
        assert "resuming from epoch 2/3" in final.stderr
        assert _train_checkpoint(repo) is None  # removed when the run ended


def fingerprint_of(expected: dict[str, object], output: Path) -> dict[str, object]:
    return {name: value for name, value in expected.items() if Path(name).is_relative_to(output)}
