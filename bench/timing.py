"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def best_time(run: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


MEASURE_COMMAND = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"seconds": time.perf_counter() - started, "returncode": done.returncode,
                  "stdout": done.stdout[-2000:], "stderr": done.stderr[-4000:],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def run_measured(args: list[str], cwd: Path, env: dict[str, str]) -> dict:
    """Run a command under a fresh Python that reports its wall time and the peak RSS of its
    largest descendant (each measurement starts from zero, unlike RUSAGE_CHILDREN here)."""
    output = subprocess.run(
        [sys.executable, "-c", MEASURE_COMMAND, *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    measured = json.loads(output.strip().splitlines()[-1])
    if measured["returncode"]:
        raise RuntimeError(f"{args} failed:\n{measured['stderr']}")
    return measured
