"""The pipeline as ``dvc.yaml`` declares it: stage names, commands, deps, outs, params, edges.

The Airflow DAGs and the tests read the stage list from here instead of repeating it, so the
DAG cannot drift from ``dvc.yaml``. Only the standard library and PyYAML are imported: a DAG
file that imports this module parses in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

DVC_FILE = "dvc.yaml"


@dataclass(frozen=True)
class Stage:
    """One stage of ``dvc.yaml``: what it runs, reads and writes."""

    name: str
    cmd: str
    deps: tuple[str, ...] = ()
    outs: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    """Dotted params.yaml keys (a section name stands for every key under it)."""
    upstream: tuple[str, ...] = field(default=())
    """Stages whose outputs this stage reads, in ``dvc.yaml`` order."""


def _paths(entries: list | None) -> tuple[str, ...]:
    """``outs``/``metrics``/``plots`` entries are a path or a one-key mapping ``{path: opts}``."""
    paths = []
    for entry in entries or []:
        paths.extend([entry] if isinstance(entry, str) else list(entry))
    return tuple(str(PurePosixPath(path)) for path in paths)


def _params(entries: list | None) -> tuple[str, ...]:
    keys: list[str] = []
    for entry in entries or []:
        if isinstance(entry, str):
            keys.append(entry)
        else:  # {params_file: [keys]}
            for values in entry.values():
                keys.extend(values or [])
    return tuple(keys)


def _inside(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` or lies under it (POSIX paths relative to the repo)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def load_stages(repo: Path | str = ".") -> dict[str, Stage]:
    """The stages of ``repo/dvc.yaml`` in file order, with their upstream stages resolved.

    A stage is upstream of another when one of its outputs (or metrics, plots) is, contains, or
    lies inside one of the other's dependencies: the edges DVC itself draws.
    """
    spec = yaml.safe_load((Path(repo) / DVC_FILE).read_text()) or {}
    raw = spec.get("stages", {})
    written: dict[str, tuple[str, ...]] = {
        name: _paths(body.get("outs")) + _paths(body.get("metrics")) + _paths(body.get("plots"))
        for name, body in raw.items()
    }
    stages: dict[str, Stage] = {}
    for name, body in raw.items():
        if "foreach" in body or "matrix" in body:
            raise ValueError(f"{DVC_FILE}: stage {name!r} is templated; list stages explicitly")
        deps = _paths(body.get("deps"))
        upstream = tuple(
            other
            for other, outs in written.items()
            if other != name
            and any(_inside(dep, out) or _inside(out, dep) for dep in deps for out in outs)
        )
        stages[name] = Stage(
            name=name,
            cmd=str(body["cmd"]),
            deps=deps,
            outs=written[name],
            params=_params(body.get("params")),
            upstream=upstream,
        )
    return stages


def edges(stages: dict[str, Stage]) -> set[tuple[str, str]]:
    """(upstream, downstream) pairs of the stage graph."""
    return {(before, stage.name) for stage in stages.values() for before in stage.upstream}
