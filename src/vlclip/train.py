"""Contrastive fine-tuning (VL-CLIP step 3): symmetric InfoNCE on crops x enriched texts.

Several photos share one product text (a listing and its query photos), so in-batch pairs
that belong to the same item are masked out of the negatives instead of being pushed apart.

Training is reproducible on CPU: same seed and data give bit-identical weights. Each sample's
random crop comes from a generator of its own, seeded from (seed, epoch, position in the epoch),
so the image-loading threads may finish in any order; everything else that draws random numbers
(init, shuffling, dropout) runs on the main thread from seeded generators.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vlclip.catalog.schema import Catalog
from vlclip.config import ModelParams, TrainParams
from vlclip.embed import CatalogViews
from vlclip.features import FrozenImageLayers, keep_frozen_norms_still, preprocessed_batch
from vlclip.images import load_rgb
from vlclip.io import atomic_dir, stable_hash
from vlclip.model import (
    ClipBundle,
    SeededTrainTransform,
    bundle_from_params,
    save_checkpoint,
    seeded_train_transform,
)

log = logging.getLogger(__name__)
LOAD_THREADS = 4
RESUME_FILE = "resume.pt"


@dataclass(frozen=True)
class Pair:
    image: Path
    text: str
    item_id: str


def training_pairs(
    catalog: Catalog, views: CatalogViews, split: str, use_listings: bool
) -> list[Pair]:
    """Query photos of ``split`` (and its listings) paired with their item's text."""
    pairs = [
        Pair(views.query_images[row.query_id], views.item_texts[row.item_id], row.item_id)
        for row in catalog.queries_in(split).itertuples()
    ]
    if use_listings:
        pairs += [
            Pair(views.item_images[row.item_id], views.item_texts[row.item_id], row.item_id)
            for row in catalog.items_in(split).itertuples()
        ]
    return pairs


def same_item_mask(item_ids: list[str], device: torch.device) -> torch.Tensor:
    """True where two batch entries belong to the same item but are different entries."""
    codes = {item: index for index, item in enumerate(dict.fromkeys(item_ids))}
    labels = torch.tensor([codes[item] for item in item_ids], device=device)
    same = labels[:, None] == labels[None, :]
    return same & ~torch.eye(len(item_ids), dtype=torch.bool, device=device)


def contrastive_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    false_negatives: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Symmetric InfoNCE; returns named parts like open_clip's ``ClipLoss``.

    ``false_negatives`` (bool, batch x batch) marks off-diagonal pairs that are not negatives.
    """
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    logits = logit_scale.exp() * image_features @ text_features.T
    if false_negatives is not None:
        logits = logits.masked_fill(false_negatives, float("-inf"))
    targets = torch.arange(len(logits), device=logits.device)
    image_to_text = F.cross_entropy(logits, targets)
    text_to_image = F.cross_entropy(logits.T, targets)
    return {
        "contrastive_loss": (image_to_text + text_to_image) / 2,
        "image_to_text": image_to_text,
        "text_to_image": text_to_image,
    }


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def seed_everything(seed: int) -> None:
    """Seed the global RNGs, for anything (dropout, a library) that still draws from them."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def _global_rng_restored() -> Iterator[None]:
    """Leave the caller's global RNG state as it was: training reseeds it for its own use."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def _eval_pixels(bundle: ClipBundle, pairs: list[Pair], pool: ThreadPoolExecutor) -> torch.Tensor:
    return preprocessed_batch(bundle.preprocess_eval, [pair.image for pair in pairs], pool)


def _train_pixels(
    augment: SeededTrainTransform,
    pairs: list[Pair],
    pool: ThreadPoolExecutor,
    seed: int,
    epoch: int,
    first_index: int,
) -> torch.Tensor:
    """Augmented images; sample ``first_index + i`` of ``epoch`` gets the same crop whichever
    thread loads it and whenever, because its random numbers are its own."""

    def load(index: int, pair: Pair) -> torch.Tensor:
        return augment(load_rgb(pair.image), seed, epoch, index)

    positions = range(first_index, first_index + len(pairs))
    return torch.stack(list(pool.map(load, positions, pairs)))


def _batch_loss(
    bundle: ClipBundle, pairs: list[Pair], image_features: torch.Tensor
) -> dict[str, torch.Tensor]:
    tokens = bundle.tokenizer([pair.text for pair in pairs]).to(bundle.device)
    model = bundle.model
    return contrastive_loss(
        image_features,
        model.encode_text(tokens),
        model.logit_scale,
        same_item_mask([pair.item_id for pair in pairs], bundle.device),
    )


def _eval_image_features(
    bundle: ClipBundle,
    pairs: list[Pair],
    pool: ThreadPoolExecutor,
    frozen: FrozenImageLayers | None,
) -> torch.Tensor:
    """The image tower's output on the evaluation preprocessing (from cached frozen features
    when there are some)."""
    if frozen is not None:
        return frozen.encode([pair.image for pair in pairs])
    return bundle.model.encode_image(_eval_pixels(bundle, pairs, pool).to(bundle.device))


@torch.inference_mode()
def evaluate_loss(
    bundle: ClipBundle,
    pairs: list[Pair],
    batch_size: int,
    frozen: FrozenImageLayers | None = None,
) -> float:
    """Mean contrastive loss over ``pairs`` (no gradient), for model selection."""
    bundle.model.eval()
    losses, weights = [], []
    with ThreadPoolExecutor(LOAD_THREADS) as pool:
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start : start + batch_size]
            if len(batch) < 2:
                continue
            features = _eval_image_features(bundle, batch, pool, frozen)
            parts = _batch_loss(bundle, batch, features)
            losses.append(float(parts["contrastive_loss"]))
            weights.append(len(batch))
    return float(np.average(losses, weights=weights)) if losses else float("nan")


@dataclass
class TrainResult:
    epochs_run: int
    steps: int
    final_train_loss: float
    best_val_loss: float
    seconds: float


def train(
    train_pairs: list[Pair],
    val_pairs: list[Pair],
    model_params: ModelParams,
    params: TrainParams,
    out_dir: Path,
    live_dir: Path | None = None,
) -> TrainResult:
    """Fine-tune, keep the weights with the best validation loss, save them to ``out_dir``.

    Same ``params.seed`` and pairs give bit-identical weights on CPU, unless
    ``params.max_train_minutes`` cuts the run short: where that happens depends on the clock.
    """
    if len(train_pairs) < 2:
        raise ValueError(f"need at least 2 training pairs, got {len(train_pairs)}")
    with _global_rng_restored():
        return _train(train_pairs, val_pairs, model_params, params, out_dir, live_dir)


def mixed_precision(device: torch.device, precision: str) -> AbstractContextManager:
    """bfloat16 autocast on CUDA (no loss scaling needed); float32 otherwise."""
    wanted = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if wanted and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if precision == "bf16":
        log.warning("train.precision=bf16 needs a CUDA GPU with bfloat16; training in float32")
    return nullcontext()


def lock_towers(model: torch.nn.Module, params: TrainParams) -> None:
    """Freeze what ``train.lock_*`` asks for with open_clip's own tower locks (layer norms
    frozen too; batch-norm statistics by :func:`keep_frozen_norms_still`); the projections and
    temperature stay trainable."""
    if params.lock_image:
        # not open_clip's freeze_bn_stats: it swaps timm's BatchNormAct2d for a plain frozen
        # norm and so drops the activation inside it; frozen norms stay in eval mode instead
        model.lock_image_tower(unlocked_groups=params.lock_image_unlocked_groups)
    if params.lock_text:
        _lock_text_tower(model, params.lock_text_unlocked_layers)
    if params.lock_image or params.lock_text:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        log.info("training %.1fM of %.1fM parameters (towers locked)", trainable / 1e6,
                 total / 1e6)


def _lock_text_tower(model: torch.nn.Module, unlocked_layers: int) -> None:
    """open_clip's text lock; for a Hugging Face BERT-style tower its partial unlock does not
    know where the layers are (open_clip 3.3), so those are unlocked here."""
    from open_clip.hf_model import HFTextEncoder

    text = getattr(model, "text", None)
    if not isinstance(text, HFTextEncoder):
        model.lock_text_tower(unlocked_layers=unlocked_layers, freeze_layer_norm=True)
        return
    text.lock(0, freeze_layer_norm=True)  # the whole transformer; the projection stays
    layers = text.transformer.encoder.layer if unlocked_layers else []
    for layer in layers[len(layers) - unlocked_layers :]:
        for parameter in layer.parameters():
            parameter.requires_grad = True


def run_key(
    train_pairs: list[Pair], val_pairs: list[Pair], model_params: ModelParams, params: TrainParams
) -> str:
    """What a resume checkpoint belongs to: the model, every setting that changes the weights,
    and the pairs with their images' bytes. Anything else starts the run afresh."""
    settings = params.model_dump(
        mode="json",
        exclude={"max_train_minutes", "checkpoint_dir", "cache_frozen_features",
                 "feature_cache_dir"},
    )

    def described(pairs: list[Pair]) -> list[str]:
        return [
            f"{p.item_id}|{p.text}|{hashlib.sha256(p.image.read_bytes()).hexdigest()}"
            for p in pairs
        ]

    return stable_hash(
        model_params.model_dump(mode="json"), settings, described(train_pairs), described(val_pairs)
    )


@dataclass
class Progress:
    """Everything a resumed run needs to continue exactly where the killed one stopped."""

    epochs_done: int = 0
    step: int = 0
    best_val: float = math.inf
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch: int = 0
    history: list[tuple[float, float]] = field(default_factory=list)  # (train, val) per epoch
    seconds: float = 0.0


def _save_resume_point(
    path: Path,
    progress: Progress,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    shuffler: random.Random,
) -> None:
    # the best weights are saved apart only when they are not the model's current ones
    best_is_current = progress.best_epoch == progress.epochs_done
    state = {
        "progress": {**progress.__dict__, "best_state": None if best_is_current else (
            progress.best_state
        )},
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {
            "shuffle": shuffler.getstate(),
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.partial")
    torch.save(state, temp)
    temp.replace(path)  # a kill while saving leaves the previous epoch's checkpoint


def _load_resume_point(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    shuffler: random.Random,
) -> Progress:
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng = state["rng"]
    shuffler.setstate(rng["shuffle"])
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    progress = Progress(**state["progress"])
    if progress.best_state is None and progress.best_epoch == progress.epochs_done > 0:
        progress.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return progress


def _train(
    train_pairs: list[Pair],
    val_pairs: list[Pair],
    model_params: ModelParams,
    params: TrainParams,
    out_dir: Path,
    live_dir: Path | None,
) -> TrainResult:
    seed_everything(params.seed)
    bundle = bundle_from_params(
        model_params, params.device, params.seed, {"scale": tuple(params.crop_scale)}
    )
    augment = seeded_train_transform(bundle, params.crop_scale)
    model = bundle.model
    lock_towers(model, params)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=params.lr,
        weight_decay=params.weight_decay,
    )
    steps_per_epoch = max(1, len(train_pairs) // params.batch_size)
    total_steps = steps_per_epoch * params.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_with_warmup(step, total_steps, params.warmup_steps)
    )
    shuffler = random.Random(params.seed)
    frozen = _frozen_layers(bundle, params, train_pairs, val_pairs)
    resume_file = (
        params.checkpoint_dir / run_key(train_pairs, val_pairs, model_params, params) / RESUME_FILE
    )
    progress = Progress()
    if resume_file.is_file():
        progress = _load_resume_point(resume_file, model, optimizer, scheduler, shuffler)
        log.info(
            "resuming from epoch %d/%d (%s)", progress.epochs_done, params.epochs, resume_file
        )
    live = _open_live(live_dir, progress.history)
    started = time.monotonic() - progress.seconds
    epoch_loss = progress.history[-1][0] if progress.history else float("nan")
    with ThreadPoolExecutor(LOAD_THREADS) as pool:
        for epoch in range(progress.epochs_done, params.epochs):
            model.train()
            keep_frozen_norms_still(model)
            order = train_pairs[:]
            shuffler.shuffle(order)
            losses = []
            bar = tqdm(
                range(steps_per_epoch), desc=f"epoch {epoch + 1}/{params.epochs}", disable=None
            )
            for batch_index in bar:
                first = batch_index * params.batch_size
                batch = order[first : first + params.batch_size]
                with mixed_precision(bundle.device, params.precision):
                    if params.augment:
                        pixels = _train_pixels(augment, batch, pool, params.seed, epoch, first)
                        features = model.encode_image(pixels.to(bundle.device))
                    else:
                        features = _eval_image_features(bundle, batch, pool, frozen)
                    parts = _batch_loss(bundle, batch, features)
                optimizer.zero_grad(set_to_none=True)
                parts["contrastive_loss"].backward()
                optimizer.step()
                scheduler.step()
                with torch.no_grad():  # CLIP keeps the temperature in a sane range
                    model.logit_scale.clamp_(0, math.log(100))
                losses.append(parts["contrastive_loss"].item())
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
                progress.step += 1
            epoch_loss = float(np.mean(losses))
            val_loss = (
                evaluate_loss(bundle, val_pairs, params.batch_size, frozen)
                if val_pairs
                else epoch_loss
            )
            progress.epochs_done = epoch + 1
            progress.history.append((epoch_loss, val_loss))
            log.info("epoch %d: train loss %.4f, val loss %.4f", epoch + 1, epoch_loss, val_loss)
            _log_epoch(live, epoch_loss, val_loss)
            if val_loss < progress.best_val:
                progress.best_val, progress.best_epoch = val_loss, epoch + 1
                progress.best_state = {
                    k: v.detach().clone() for k, v in model.state_dict().items()
                }
            progress.seconds = time.monotonic() - started
            _save_resume_point(resume_file, progress, model, optimizer, scheduler, shuffler)
            minutes = progress.seconds / 60
            if params.max_train_minutes and minutes >= params.max_train_minutes:
                log.warning(
                    "stopping after %.1f minutes (train.max_train_minutes); a run cut short by "
                    "the clock is not reproducible",
                    minutes,
                )
                break
    if progress.best_state is not None:
        model.load_state_dict(progress.best_state)
    result = TrainResult(
        progress.epochs_done,
        progress.step,
        epoch_loss,
        progress.best_val,
        time.monotonic() - started,
    )
    with atomic_dir(out_dir) as staging:
        save_checkpoint(
            bundle,
            staging,
            {
                "train": params.model_dump(mode="json"),
                "result": result.__dict__,
                "pretrained": model_params.pretrained,
            },
        )
    if live is not None:
        live.end()
    shutil.rmtree(resume_file.parent, ignore_errors=True)  # the run is done: nothing to resume
    return result


def _frozen_layers(
    bundle: ClipBundle, params: TrainParams, train_pairs: list[Pair], val_pairs: list[Pair]
) -> FrozenImageLayers | None:
    """The frozen-feature cache (``train.cache_frozen_features``), filled for every image."""
    if not params.cache_frozen_features:
        return None
    images = [pair.image for pair in train_pairs + val_pairs]
    frozen = FrozenImageLayers.attach(
        bundle.model, bundle.preprocess_eval, bundle.device, params.feature_cache_dir,
        images[: params.batch_size],
    )
    if frozen is not None:
        frozen.prepare(images, params.batch_size)
    return frozen


def _log_epoch(live, train_loss: float, val_loss: float) -> None:
    if live is not None:
        live.log_metric("train/loss", train_loss)
        live.log_metric("val/loss", val_loss)
        live.next_step()


def _open_live(live_dir: Path | None, history: list[tuple[float, float]]):
    """A fresh DVCLive log; a resumed run replays the epochs it already has, so the curves
    match an uninterrupted run's."""
    if live_dir is None:
        return None
    from dvclive import Live

    live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False)
    for train_loss, val_loss in history:
        _log_epoch(live, train_loss, val_loss)
    return live
