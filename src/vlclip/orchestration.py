"""What the Airflow DAGs need beyond ``dvc.yaml``: the trigger form and per-run workspaces.

- :func:`form_fields` turns the pydantic models of ``config.py`` into one JSON-schema field per
  ``params.yaml`` key (``train.epochs``), with the repository's ``params.yaml`` as defaults and
  the section as form group, so the Airflow trigger form refuses what the schema refuses.
- :func:`overrides` keeps the values a user changed, as ``section.key=value`` pairs (the same
  strings ``dvc exp run -S`` takes), and :func:`apply_overrides` writes them into a params file,
  validated by the same models every stage uses.
- :func:`prepare_workspace` gives each DAG run a ``git worktree`` of its own that shares the
  DVC cache, so a run never edits the user's checked-in ``params.yaml`` and two runs never
  write into one workspace.

Only pydantic, PyYAML and the standard library are imported: DAG files stay fast to parse.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vlclip.config import DEFAULT_PARAMS, Params, ParamsError, load_params, parse_params

log = logging.getLogger(__name__)

POOL = "vlclip_dvc"
"""One slot: DVC holds a repository lock, so DVC tasks never overlap."""
ALERTS_CONNECTION = "vlclip_alerts"
"""Airflow connection (type apprise) that failure and promotion notices go to."""
RUNS_ENV = "VLCLIP_RUNS_DIR"
MODEL_ASSET = "vlclip://champion/model"
"""Updated by every successful retrain (the promotion decision in its extra)."""
METRICS_ASSET = "vlclip://reports/metrics"
CATALOG_ASSET = "vlclip://catalog"
"""Post an event on it (REST ``POST /api/v2/assets/events``) when a new catalog drop lands."""
LAST_GOOD = "last-good"
CURRENT = "current"

SCHEMA_KEYS = (
    "type",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "items",
    "prefixItems",
    "minLength",
    "maxLength",
)
"""JSON-schema keywords carried from pydantic's schema into a form field."""


@dataclass(frozen=True)
class FormField:
    """One ``params.yaml`` key as a trigger-form field."""

    key: str
    """Dotted path, e.g. ``train.epochs``; also the Airflow param name."""
    section: str
    default: Any
    schema: dict[str, Any]
    description: str


def _resolve(schema: dict, defs: dict) -> dict:
    ref = schema.get("$ref")
    return defs[ref.rsplit("/", 1)[-1]] if ref else schema


def _leaf_schema(schema: dict, defs: dict) -> dict[str, Any]:
    """The form's JSON schema for one value: nullable unions become ``[type, "null"]``, model
    unions (a catalog source) a JSON object checked by our validation when the run starts."""
    if "oneOf" in schema or "$ref" in schema:
        return {"type": "object"}
    branches = schema.get("anyOf")
    if branches:
        concrete = [_resolve(b, defs) for b in branches if b.get("type") != "null"]
        nullable = len(concrete) < len(branches)
        if len(concrete) != 1 or "properties" in concrete[0]:
            return {"type": ["object", "null"] if nullable else "object"}
        leaf = _leaf_schema(concrete[0], defs)
        if nullable:
            types = leaf.get("type", "string")
            leaf["type"] = [*(types if isinstance(types, list) else [types]), "null"]
            if "enum" in leaf:
                leaf["enum"] = [*leaf["enum"], None]
        return leaf
    return {key: copy.deepcopy(schema[key]) for key in SCHEMA_KEYS if key in schema}


def _walk(schema: dict, defs: dict, prefix: str, values: dict, section: str) -> list[FormField]:
    fields: list[FormField] = []
    for name, prop in schema.get("properties", {}).items():
        key = f"{prefix}.{name}" if prefix else name
        target = _resolve(prop, defs)
        value = values.get(name) if isinstance(values, dict) else None
        if "properties" in target and "oneOf" not in prop:
            fields += _walk(target, defs, key, value or {}, section or name)
            continue
        fields.append(
            FormField(
                key=key,
                section=section or name,
                default=value,
                schema=_leaf_schema(prop, defs),
                description=prop.get("description") or target.get("description") or "",
            )
        )
    return fields


def current_values(params_file: Path | str = DEFAULT_PARAMS) -> dict[str, Any]:
    """``params.yaml`` with every default filled in, as plain JSON values."""
    return json.loads(load_params(params_file).model_dump_json(by_alias=True))


def form_fields(params_file: Path | str = DEFAULT_PARAMS) -> list[FormField]:
    """One field per ``params.yaml`` key, defaults from ``params_file``, in file order."""
    schema = Params.model_json_schema(by_alias=True)
    return _walk(schema, schema.get("$defs", {}), "", current_values(params_file), "")


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value


def _get(tree: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def overrides(conf: dict[str, Any], params_file: Path | str = DEFAULT_PARAMS) -> dict[str, Any]:
    """The form values that differ from ``params_file``, by dotted key.

    Unknown keys are an error, named, so a typo in a REST or CLI ``conf`` fails the run's first
    task instead of being ignored.
    """
    known = {field.key: field.default for field in form_fields(params_file)}
    unknown = sorted(set(conf) - set(known))
    if unknown:
        raise ParamsError(
            "unknown parameters in the run's conf: " + ", ".join(unknown) + " (use params.yaml "
            "paths such as train.epochs)"
        )
    return {key: value for key, value in conf.items() if value != known[key]}


def as_cli_overrides(changed: dict[str, Any]) -> list[str]:
    """``section.key=value`` strings, as ``dvc exp run -S`` takes them (values as YAML)."""
    def as_yaml(value: Any) -> str:
        return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()

    return [f"{key}={as_yaml(value)}" for key, value in sorted(changed.items())]


def apply_overrides(params_file: Path, changed: dict[str, Any]) -> Params:
    """Write ``changed`` into ``params_file`` and validate the result; nothing is written when
    validation fails (the error names the key)."""
    raw = yaml.safe_load(params_file.read_text()) or {} if params_file.exists() else {}
    for key, value in changed.items():
        _set(raw, key, value)
    validated = parse_params(raw, f"{params_file} with the run's parameters")
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    return validated


def prepare_workspace(repo: Path, workspace: Path, changed: dict[str, Any]) -> Params:
    """A git worktree of ``repo``'s HEAD at ``workspace`` with ``changed`` applied.

    The worktree shares ``repo``'s DVC cache (``.dvc/config.local``), so unchanged stages are
    restored from DVC's run cache instead of running again, and outputs are stored once.
    An existing workspace (a retried task) is reused as it is.
    """
    repo, workspace = repo.resolve(), workspace.resolve()
    if not (workspace / ".git").exists():
        workspace.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "add", "--detach", str(workspace), "HEAD"],
            check=True,
            capture_output=True,
            text=True,
        )
        cache = repo / ".dvc" / "cache"
        (workspace / ".dvc" / "config.local").write_text(f"[cache]\n    dir = {cache}\n")
        for name in ("params.yaml",):  # uncommitted edits of the repository's params count
            source = repo / name
            if source.is_file():
                raw = anchor_source_paths(yaml.safe_load(source.read_text()) or {}, repo)
                (workspace / name).write_text(yaml.safe_dump(raw, sort_keys=False))
    return apply_overrides(workspace / "params.yaml", changed)


def workspace_root(repo: Path) -> Path:
    """Where run workspaces live: ``$VLCLIP_RUNS_DIR``, else ``.vlclip-runs`` in the repo."""
    return Path(os.environ.get(RUNS_ENV) or Path(repo) / ".vlclip-runs")


def _dvc(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    dvc = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
    return subprocess.run([dvc, *args], cwd=cwd, capture_output=True, text=True, check=check)


def _share_remotes(repo: Path, workspace: Path) -> None:
    """Point the worktree's DVC remotes with relative URLs at the repository's locations."""
    listed = _dvc(["remote", "list"], repo, check=False).stdout
    for line in listed.splitlines():
        name, _, url = line.partition("\t")
        url = url.strip()
        if name and url and "://" not in url and not Path(url).is_absolute():
            absolute = (repo / ".dvc" / url).resolve()
            _dvc(["remote", "modify", "--local", name.strip(), "url", str(absolute)], workspace)


def run_folder(runs: Path, run_id: str) -> Path:
    """The workspace of the DAG run ``run_id`` (its id made safe as a folder name)."""
    return Path(runs) / re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)


def start_run(repo: Path, runs: Path, run_id: str, conf: dict[str, Any]) -> Path:
    """Validate a run's parameters and set up its workspace with the last good outputs.

    The last successful run's ``dvc.lock`` (or the repository's) is copied in and checked out
    from the shared cache, so stages whose inputs did not change are skipped by DVC.
    """
    repo = Path(repo).resolve()
    changed = overrides(conf, repo / DEFAULT_PARAMS)
    folder = run_folder(runs, run_id)
    prepare_workspace(repo, folder, changed)
    _share_remotes(repo, folder.resolve())
    for lock in (Path(runs) / LAST_GOOD / "dvc.lock", repo / "dvc.lock"):
        if lock.is_file() and not (folder / "dvc.lock").exists():
            shutil.copy2(lock, folder / "dvc.lock")
            checkout = _dvc(["checkout", "--quiet"], folder, check=False)
            if checkout.returncode:
                log.warning("restoring outputs from %s: %s", lock, checkout.stderr.strip())
            break
    log.info("run %s: workspace %s, parameters changed: %s", run_id, folder, changed or "none")
    return folder.resolve()


SOURCE_PATH_KEYS = ("root", "path", "image_root", "queries_path")
"""Catalog source settings that name files outside the repository's tracked tree."""


def anchor_source_paths(raw: dict[str, Any], repo: Path) -> dict[str, Any]:
    """The catalog source's relative paths made absolute against ``repo``: a workspace lives
    in another folder, where ``../shared/...`` would point elsewhere."""
    source = (raw.get("ingest") or {}).get("source") or {}
    for key in SOURCE_PATH_KEYS:
        value = source.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            source[key] = str((Path(repo) / value).resolve())
    return raw


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override``'s keys replaced, section by section (nested mappings merge;
    anything else, lists included, is replaced whole, and so is a mapping of another ``kind``:
    a GroceryStore source takes none of the synthetic source's settings)."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        current = result.get(key)
        same_kind = isinstance(current, dict) and value.get("kind", current.get("kind")) == (
            current.get("kind")
        ) if isinstance(value, dict) else False
        if same_kind:
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _head(folder: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), "rev-parse", "HEAD"], check=True, capture_output=True,
        text=True,
    ).stdout.strip()


def follow_head(repo: Path, workspace: Path) -> None:
    """An experiment runs the repository's current code and pipeline: a workspace left at an
    earlier commit moves to HEAD, keeping its ``dvc.lock`` so that stages whose code and
    settings did not change are not run again. (DAG runs keep theirs: a retry must not change
    code under a run.)"""
    head, current = _head(repo), _head(workspace)
    if head == current:
        return
    lock = workspace / "dvc.lock"
    saved = lock.read_bytes() if lock.is_file() else None
    subprocess.run(
        ["git", "-C", str(workspace), "checkout", "--quiet", "--force", "--detach", head],
        check=True, capture_output=True, text=True,
    )
    if saved is not None:
        lock.write_bytes(saved)
    log.info("workspace %s moved from %s to the repository's HEAD %s", workspace.name,
             current[:8], head[:8])


def start_experiment(repo: Path, runs: Path, name: str, config: Path) -> Path:
    """A workspace like a DAG run's whose params.yaml is the repository's with ``config``
    merged in (validated before anything runs); ``dvc repro`` there leaves the repository's
    own outputs alone."""
    repo = Path(repo).resolve()
    raw = yaml.safe_load(Path(config).read_text()) or {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{config} must hold a mapping of params.yaml sections")
    base = yaml.safe_load((repo / DEFAULT_PARAMS).read_text()) or {}
    combined = anchor_source_paths(merged(base, raw), repo)
    parse_params(combined, f"{DEFAULT_PARAMS} with {config}")
    folder = run_folder(runs, name)
    prepare_workspace(repo, folder, {})
    follow_head(repo, folder)
    (folder / DEFAULT_PARAMS).write_text(yaml.safe_dump(combined, sort_keys=False))
    _share_remotes(repo, folder.resolve())
    log.info("experiment %s: workspace %s with %s", name, folder, config)
    return folder.resolve()


def publish_run(repo: Path, runs: Path, workspace: Path) -> dict[str, Any]:
    """After a successful run: push to the DVC remote when one is set, remember this run's
    ``dvc.lock`` as the last good state, point ``runs/current`` at it; return its summary."""
    pushed = False
    if _dvc(["remote", "list"], workspace, check=False).stdout.strip():
        _dvc(["push", "--quiet"], workspace)
        pushed = True
    last_good = Path(runs) / LAST_GOOD
    last_good.mkdir(parents=True, exist_ok=True)
    shutil.copy2(workspace / "dvc.lock", last_good / "dvc.lock")
    current = Path(runs) / CURRENT
    temporary = Path(runs) / f".{CURRENT}.tmp"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(workspace.resolve(), target_is_directory=True)
    os.replace(temporary, current)

    def read(name: str) -> dict:
        path = workspace / "reports" / name
        return json.loads(path.read_text()) if path.is_file() else {}

    promotion = read("promotion.json")
    return {
        "workspace": str(workspace),
        "pushed": pushed,
        "promotion": {
            k: promotion.get(k) for k in ("decision", "metric", "challenger", "champion", "reason")
        },
        "metrics": read("metrics.json").get("model", {}),
    }


def _apprise_notifier(title: str, body: str):
    """An Apprise notifier on the connection ``vlclip_alerts``, or None when the Apprise
    provider is not installed. Target URLs live in the connection (set in the UI or as
    ``AIRFLOW_CONN_VLCLIP_ALERTS``), never in the repository."""
    try:
        from airflow.providers.apprise.notifications.apprise import AppriseNotifier
    except ImportError:
        return None

    class VlclipNotifier(AppriseNotifier):
        """AppriseNotifier that also renders where the DAG in the callback context has no
        template environment of its own (``dag.test()`` passes a serialized DAG)."""

        def render_template_fields(self, context, jinja_env=None):
            if jinja_env is None and not hasattr(context.get("dag"), "get_template_env"):
                jinja_env = self.get_template_env()
            super().render_template_fields(context, jinja_env)

    return VlclipNotifier(title=title, body=body, apprise_conn_id=ALERTS_CONNECTION)


def failure_notifier():
    """On-call notice for a failed run (the DAG's ``on_failure_callback``)."""
    return _apprise_notifier(
        title="vlclip: {{ dag.dag_id }} run {{ run_id }} failed",
        body=(
            "Run {{ run_id }} of {{ dag.dag_id }} failed at task "
            "{{ ti.task_id if ti else 'unknown' }}. The previous model and champion are "
            "unchanged. Logs: {{ ti.log_url if ti else '' }}"
        ),
    )


def promotion_notifier(summary_task: str = "publish"):
    """Notice of a finished run's promotion decision (``on_success_callback`` of the task
    that returns :func:`publish_run`'s summary)."""
    promotion = f"ti.xcom_pull(task_ids='{summary_task}')['promotion']"
    return _apprise_notifier(
        title="vlclip: {{ dag.dag_id }} run {{ run_id }}: model {{ " + promotion + ".decision }}",
        body=(
            "{% set p = " + promotion + " %}"
            "Run {{ run_id }} of {{ dag.dag_id }} finished. Decision: {{ p.decision }}. "
            "{{ p.metric }}: new model {{ p.challenger }}, champion {{ p.champion }}. "
            "{{ p.reason }}."
        ),
    )


def serving_workspace(repo: Path, runs: Path) -> Path:
    """Where the model that serves lives: the last successful Airflow run's workspace, else the
    repository (``dvc repro`` on a laptop). Its ``champion/reference`` is what drift is
    measured against."""
    current = Path(runs) / CURRENT
    folder = current.resolve() if current.exists() else Path(repo).resolve()
    if not (folder / "champion" / "reference").is_dir():
        raise FileNotFoundError(
            f"no champion with a reference snapshot in {folder}: run the vlclip_retrain DAG "
            "(or dvc repro) first"
        )
    return folder


def alert_targets(conn_id: str = ALERTS_CONNECTION) -> list[str]:
    """Apprise URLs of the Airflow connection ``conn_id`` (its extra ``config.path``, a URL or
    a list), plus ``VLCLIP_ALERT_URLS``; empty when neither is set."""
    from vlclip.monitor.alerts import targets_from_env

    targets = targets_from_env()
    try:
        from airflow.sdk import BaseHook

        extra = BaseHook.get_connection(conn_id).extra_dejson
    except Exception:  # noqa: BLE001 - no connection: alerts go to the log and the console
        return targets
    path = (extra.get("config") or {}).get("path")
    return targets + ([path] if isinstance(path, str) else list(path or []))


def remove_workspace(repo: Path, workspace: Path) -> None:
    """Drop a run's worktree (its outputs stay in the shared DVC cache)."""
    subprocess.run(
        ["git", "-C", str(repo.resolve()), "worktree", "remove", "--force", str(workspace)],
        check=False,
        capture_output=True,
    )


__all__ = [
    "POOL",
    "FormField",
    "failure_notifier",
    "promotion_notifier",
    "publish_run",
    "serving_workspace",
    "alert_targets",
    "run_folder",
    "start_run",
    "workspace_root",
    "ParamsError",
    "apply_overrides",
    "as_cli_overrides",
    "current_values",
    "form_fields",
    "overrides",
    "prepare_workspace",
    "remove_workspace",
]
