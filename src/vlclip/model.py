"""open_clip factory wrapper: our architectures are JSON configs, checkpoints are local files.

Model variants live in ``model_configs/*.json`` and are registered with open_clip's own registry,
so ``model.name`` in params.yaml can name ours (``vlclip-tiny``) or any built-in one
(``ViT-B-32``) and ``model.pretrained`` any open_clip tag or a local weights file, through the
same code path.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch

from vlclip.config import ModelParams
from vlclip.io import atomic_write_text

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIG_DIR)

CHECKPOINT_FILE = "model.pt"
CARD_FILE = "model.json"
log = logging.getLogger(__name__)


@dataclass
class ClipBundle:
    """A model with the transforms and tokenizer that belong to it."""

    name: str
    model: torch.nn.Module
    preprocess_train: Any
    preprocess_eval: Any
    tokenizer: Any
    device: torch.device


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def create_bundle(
    name: str,
    pretrained: str | None = None,
    device: str = "cpu",
    seed: int | None = None,
    augmentation: dict[str, Any] | None = None,
) -> ClipBundle:
    """Build ``name`` with open_clip; random init is seeded so baselines are reproducible."""
    if seed is not None:
        torch.manual_seed(seed)
    target = resolve_device(device)
    # open_clip warns at WARNING level that a from-scratch model has no weights: that is the
    # intended offline default, so say it once at INFO instead.
    root_logger = logging.getLogger()
    previous = root_logger.level
    root_logger.setLevel(logging.ERROR)
    try:
        model, preprocess_train, preprocess_eval = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=target, aug_cfg=augmentation
        )
    finally:
        root_logger.setLevel(previous)
    if pretrained is None:
        log.info("model %s initialised randomly (no pretrained weights)", name)
    return ClipBundle(
        name=name,
        model=model,
        preprocess_train=preprocess_train,
        preprocess_eval=preprocess_eval,
        tokenizer=open_clip.get_tokenizer(name),
        device=target,
    )


def bundle_from_params(
    params: ModelParams,
    device: str = "cpu",
    seed: int | None = None,
    augmentation: dict[str, Any] | None = None,
) -> ClipBundle:
    return create_bundle(params.name, params.pretrained, device, seed, augmentation)


def save_checkpoint(bundle: ClipBundle, folder: Path, card: dict[str, Any]) -> Path:
    """Write weights in open_clip's checkpoint format plus a JSON card naming the architecture."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / CHECKPOINT_FILE
    temp = weights.with_suffix(".tmp")
    state = {k: v.detach().cpu() for k, v in bundle.model.state_dict().items()}
    torch.save({"state_dict": state}, temp)
    temp.replace(weights)
    atomic_write_text(folder / CARD_FILE, json.dumps({"model": bundle.name, **card}, indent=2))
    return weights


def load_checkpoint(folder: Path, device: str = "cpu") -> ClipBundle:
    """Load a trained model through open_clip's own local-weights path (``pretrained=file``)."""
    card_path = Path(folder) / CARD_FILE
    if not card_path.is_file():
        raise FileNotFoundError(f"{folder} holds no trained model ({CARD_FILE} missing)")
    card = json.loads(card_path.read_text())
    return create_bundle(card["model"], str(Path(folder) / CHECKPOINT_FILE), device=device)
