"""Cached frozen image features (``train.cache_frozen_features``).

With a locked image tower and no augmentation, the tower's frozen layers turn each image into
the same tensor in every epoch, and in every run that starts from the same weights (seeds,
text variants, evaluation). They run once per image; training and evaluation then run only
the trainable rest of the tower. On 2 CPU cores that turns an EfficientNet-Lite0 epoch over
GroceryStore's 2,640 training photos from minutes into seconds.

The tower is read as a flat chain of layers (open_clip's timm wrapper, the timm trunk and any
``nn.Sequential`` expanded). That holds for CNN trunks such as EfficientNet and ResNet, not
for every tower, so before the cache is trusted the chain is run on real images and must give
the tower's own output, and the frozen part must give the same output in training mode as in
evaluation mode (no dropout, drop-path or batch statistics in it). Features are stored one
file per image under a folder named by a hash of the frozen layers' weights and the
preprocessing, so a change to either never reads stale features.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vlclip.images import load_rgb
from vlclip.io import stable_hash

log = logging.getLogger(__name__)
LOAD_THREADS = 4
CHECK_TOLERANCE = 1e-4
"""Largest difference (relative to the output's scale) the chain may show against the tower."""


def preprocessed_batch(preprocess, paths: Sequence[Path], pool: ThreadPoolExecutor) -> torch.Tensor:
    """Decode and preprocess a batch of images (decoding runs in ``pool``'s threads)."""
    return torch.stack(list(pool.map(lambda path: preprocess(load_rgb(path)), paths)))


def keep_frozen_norms_still(model: torch.nn.Module) -> None:
    """Batch norms whose weights are frozen also keep their running statistics: eval mode."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not any(
            parameter.requires_grad for parameter in module.parameters(recurse=False)
        ):
            module.eval()


def layer_chain(tower: torch.nn.Module) -> list[torch.nn.Module]:
    """The tower as layers run one after the other (see the module docstring for when that
    is true; :class:`FrozenImageLayers` checks it)."""
    chain: list[torch.nn.Module] = []

    def expand(module: torch.nn.Module, top: bool) -> None:
        if top or isinstance(module, torch.nn.Sequential):
            for child in module.children():
                expand(child, top=child is getattr(tower, "trunk", None))
        else:
            chain.append(module)

    expand(tower, top=True)
    return chain


def _run(layers: Sequence[torch.nn.Module], x: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        x = layer(x)
    return x


def _trainable(module: torch.nn.Module) -> bool:
    return any(parameter.requires_grad for parameter in module.parameters())


@contextmanager
def _eval_mode(modules: Sequence[torch.nn.Module]) -> Iterator[None]:
    states = [(m, m.training) for layer in modules for m in layer.modules()]
    for layer in modules:
        layer.eval()
    try:
        yield
    finally:
        for module, training in states:
            module.training = training


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    scale = float(b.abs().max()) or 1.0
    return a.shape == b.shape and float((a - b).abs().max()) <= CHECK_TOLERANCE * scale


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:40]


class FrozenImageLayers:
    """The frozen first part of an image tower, run once per image and cached on disk."""

    def __init__(self, model: torch.nn.Module, preprocess, device: torch.device, cache_root: Path):
        self.model = model
        self.preprocess = preprocess
        self.device = device
        chain = layer_chain(model.visual)
        split = next((i for i, layer in enumerate(chain) if _trainable(layer)), len(chain))
        self.frozen, self.trainable = chain[:split], chain[split:]
        weights = [
            (name, hashlib.sha256(tensor.detach().cpu().numpy().tobytes()).hexdigest())
            for index, layer in enumerate(self.frozen)
            for name, tensor in layer.state_dict(prefix=f"{index}.").items()
        ]
        self.folder = Path(cache_root) / stable_hash(
            weights, [type(layer).__name__ for layer in self.frozen], repr(preprocess)
        )
        self._features: dict[Path, torch.Tensor] = {}

    @classmethod
    def attach(
        cls, model: torch.nn.Module, preprocess, device: torch.device, cache_root: Path,
        probe: Sequence[Path],
    ) -> FrozenImageLayers | None:
        """The cache for ``model``'s current locks, checked on the ``probe`` images; None when
        nothing is frozen. Raises where the tower is not the chain this cache assumes."""
        frozen = cls(model, preprocess, device, cache_root)
        if not frozen.frozen:
            log.info("train.cache_frozen_features: the image tower has no frozen layers")
            return None
        frozen.check([load_rgb(path) for path in probe])
        log.info(
            "caching the image tower's %d frozen layers (%d trainable follow) in %s",
            len(frozen.frozen), len(frozen.trainable), frozen.folder,
        )
        return frozen

    @torch.no_grad()
    def check(self, images: list) -> None:
        """The chain must reproduce the tower, and its frozen part must not depend on mode."""
        pixels = torch.stack([self.preprocess(image) for image in images]).to(self.device)
        tower = self.model.visual
        was_training = tower.training
        try:
            tower.eval()
            whole = tower(pixels)
            try:
                chained = _run(self.frozen + self.trainable, pixels)
            except (RuntimeError, TypeError):  # a layer that needs more than its predecessor
                chained = None
            frozen_eval = _run(self.frozen, pixels) if chained is not None else None
            tower.train()
            keep_frozen_norms_still(tower)
            frozen_train = _run(self.frozen, pixels) if chained is not None else None
        finally:
            tower.train(was_training)
            if was_training:
                keep_frozen_norms_still(tower)
        if chained is None or not _close(chained, whole):
            raise ValueError(
                "train.cache_frozen_features: this image tower is not a plain chain of layers "
                f"({type(tower).__name__}); train it without the cache"
            )
        if not _close(frozen_train, frozen_eval):
            raise ValueError(
                "train.cache_frozen_features: the frozen layers behave differently in training "
                "mode (dropout, drop-path or batch statistics); train without the cache"
            )

    def prepare(self, paths: Sequence[Path], batch_size: int) -> None:
        """Features of every image in ``paths``: read from the cache, the rest computed."""
        self.folder.mkdir(parents=True, exist_ok=True)
        missing: list[tuple[Path, Path]] = []
        for path in dict.fromkeys(paths):
            if path in self._features:
                continue
            stored = self.folder / f"{_file_hash(path)}.npy"
            if stored.is_file():
                self._features[path] = torch.from_numpy(np.load(stored))
            else:
                missing.append((path, stored))
        if not missing:
            return
        with ThreadPoolExecutor(LOAD_THREADS) as pool, _eval_mode(self.frozen), torch.no_grad():
            for start in tqdm(
                range(0, len(missing), batch_size), desc="frozen image features", disable=None
            ):
                batch = missing[start : start + batch_size]
                pixels = preprocessed_batch(self.preprocess, [path for path, _ in batch], pool)
                features = _run(self.frozen, pixels.to(self.device)).float().cpu()
                for (path, stored), feature in zip(batch, features, strict=True):
                    temp = stored.with_name(f".{stored.name}.partial")
                    with temp.open("wb") as handle:
                        np.save(handle, feature.numpy())
                    temp.replace(stored)
                    self._features[path] = feature
        log.info("computed frozen features of %d images", len(missing))

    def encode(self, paths: Sequence[Path]) -> torch.Tensor:
        """The tower's output for ``paths`` (prepared first), through the trainable layers."""
        missing = [path for path in paths if path not in self._features]
        if missing:
            self.prepare(missing, len(missing))
        features = torch.stack([self._features[path] for path in paths]).to(self.device)
        return _run(self.trainable, features)
