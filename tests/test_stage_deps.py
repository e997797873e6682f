"""Every DVC stage declares the code it runs and the params sections it reads, so a change
there can never leave `dvc repro` saying "up to date" on stale outputs; the packaged defaults
and params.yaml agree.

The code a stage runs is derived, not listed: its ``run_<stage>`` function in ``stages.py``,
the module-level imports of ``stages.py``, the local helpers it calls, and every vlclip module
those import, transitively (imports inside functions included).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from helpers import REPO

from vlclip.config import Params, load_params

SRC = REPO / "src"
STAGES = SRC / "vlclip" / "stages.py"
PIPELINES = {
    "dvc.yaml": {},
    "ablation/dvc.yaml": {"run": "ablation_variant", "report": "ablation_report"},
}


def module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def vlclip_imports(node: ast.AST) -> set[str]:
    found: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.ImportFrom) and (child.module or "").startswith("vlclip"):
            found.add(child.module)
            found |= {
                f"{child.module}.{a.name}"
                for a in child.names
                if module_file(f"{child.module}.{a.name}")
            }
        elif isinstance(child, ast.Import):
            found |= {a.name for a in child.names if a.name.startswith("vlclip")}
    return found


def closure(start: set[str]) -> set[Path]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        path = module_file(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(2, len(parts))]  # parent packages run too
        todo += vlclip_imports(ast.parse(path.read_text()))
    return {module_file(name) for name in seen}


def stage_function_code(function: str) -> tuple[set[Path], set[str]]:
    """(vlclip files, params sections) that ``stages.<function>`` runs and reads."""
    tree = ast.parse(STAGES.read_text())
    local = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    top = set().union(*(vlclip_imports(n) for n in tree.body if isinstance(n, ast.ImportFrom)))
    reached, todo = set(), [function]
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        todo += [
            c.func.id
            for c in ast.walk(local[name])
            if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id in local
        ]
    imports = set().union(*(vlclip_imports(local[name]) for name in reached))
    sections = {
        node.attr
        for name in reached
        for node in ast.walk(local[name])
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "params"
    }
    sections = {"validate" if s == "validate_params" else s for s in sections}
    if "ablation_variant" in sections:  # Params.ablation_variant reads these sections
        sections = (sections - {"ablation_variant"}) | {"ablation", "train", "enrich"}
    return closure(top | imports) | {STAGES}, sections


def declared(pipeline: str) -> dict[str, dict]:
    spec = yaml.safe_load((REPO / pipeline).read_text())
    return spec["stages"]


CASES = [
    (pipeline, stage, rename.get(stage, stage))
    for pipeline, rename in PIPELINES.items()
    for stage in declared(pipeline)
]


def covered(path: Path, deps: list[str], wdir: Path) -> bool:
    relative = path.relative_to(REPO).as_posix()
    for dep in deps:
        target = (wdir / dep).resolve().relative_to(REPO).as_posix()
        if relative == target or relative.startswith(target.rstrip("/") + "/"):
            return True
    return False


@pytest.mark.parametrize(("pipeline", "stage", "function"), CASES)
def test_stage_declares_the_code_it_runs_and_the_params_it_reads(pipeline, stage, function):
    body = declared(pipeline)[stage]
    wdir = (REPO / pipeline).parent / body.get("wdir", ".")
    files, sections = stage_function_code(f"run_{function}")
    missing = sorted(
        p.relative_to(REPO).as_posix() for p in files if not covered(p, body["deps"], wdir)
    )
    assert not missing, f"{pipeline}: stage {stage} runs code it does not list in deps: {missing}"
    params = {str(p).split(".")[0] for p in body.get("params", [])}
    assert sections <= params, f"{stage} reads params sections {sections - params} undeclared"


def test_the_derivation_sees_what_a_stage_runs():
    files, sections = stage_function_code("run_train")
    names = {p.relative_to(SRC / "vlclip").as_posix() for p in files}
    assert {"train.py", "model.py", "artifacts.py", "stages.py", "config.py"} <= names
    assert "ground/saliency.py" not in names  # training reads crops, not the detector
    assert {"train", "model"} <= sections


def test_packaged_defaults_equal_params_yaml():
    """One home per default: params.yaml states exactly what config.py would use anyway."""
    assert load_params(REPO / "params.yaml").model_dump() == Params().model_dump()
