"""Small file helpers shared by the stages: atomic outputs and stable hashes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_dir(target: Path | str) -> Iterator[Path]:
    """Yield an empty staging folder that replaces ``target`` only if the block succeeds.

    A stage that fails half-way leaves the previous good output untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    backup = target.with_name(f".{target.name}.old")
    if backup.is_dir() and not target.exists():  # killed between the two renames below
        os.replace(backup, target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o777 & ~UMASK)  # mkdtemp makes it owner-only; outputs follow the umask
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    if target.exists():
        os.replace(target, backup)
    os.replace(staging, target)
    shutil.rmtree(backup, ignore_errors=True)
    _remove_stale_staging(target)


def _read_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


UMASK = _read_umask()
"""Read once at import: ``os.umask`` can only be read by setting it, which is not
thread-safe, and stages write from threads."""


def _remove_stale_staging(target: Path) -> None:
    """Remove staging folders a killed run of this output left behind: ``.<name>.`` plus the
    eight random characters ``mkdtemp`` adds."""
    for stale in target.parent.glob(f".{target.name}.*"):
        if stale.is_dir() and len(stale.name) == len(target.name) + 10:
            shutil.rmtree(stale, ignore_errors=True)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write a file through a temporary sibling and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.chmod(temp, 0o666 & ~UMASK)  # mkstemp makes it owner-only; outputs follow the umask
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_json(path: Path | str, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stable_hash(*parts: Any) -> str:
    """A short hash of JSON-serialisable parts, used to key cached work by content."""
    payload = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:16]
