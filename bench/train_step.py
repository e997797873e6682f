"""Training step time: ``vlclip.train.train`` against the bare open_clip loop one would write.

Both train the same model from the same start on the same image-text pairs at the same batch
size: decode, random-resized-crop, tokenize, forward, symmetric InfoNCE, backward, AdamW step.
Ours adds what the stage needs (seeded per-sample crops, the same-item mask, a resume
checkpoint per epoch, the kept best state); the baseline is open_clip's transforms and
``ClipLoss``. Each variant runs in its own process; variants alternate over rounds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.timing import peak_rss_mb

PAIRS = 256
BATCH_SIZE = 32
EPOCHS = 2
MODEL = "vlclip-tiny"
ROUNDS = 2


def _prepare(folder: Path) -> None:
    from vlclip.catalog.synthetic import generate_synthetic
    from vlclip.config import SyntheticSource

    generate_synthetic(SyntheticSource(num_products=PAIRS // 4, queries_per_product=3), folder)


def _pairs(folder: Path):
    from vlclip.train import Pair

    paths = sorted((folder / "images").rglob("*.png"))[:PAIRS]
    return [Pair(path, f"product {index // 4} in its box", f"sku-{index // 4}")
            for index, path in enumerate(paths)]


def _ours(folder: Path) -> tuple[float, int]:
    from vlclip.config import ModelParams, TrainParams
    from vlclip.train import train

    params = TrainParams(epochs=EPOCHS, batch_size=BATCH_SIZE, warmup_steps=2, device="cpu",
                         checkpoint_dir=folder / "resume")
    result = train(_pairs(folder), [], ModelParams(name=MODEL), params, folder / "model")
    return result.seconds, result.steps


def _bare(folder: Path) -> tuple[float, int]:
    import open_clip
    import torch
    from PIL import Image

    import vlclip.model  # noqa: F401  (only registers our model configs with open_clip)

    torch.manual_seed(0)
    model, preprocess_train, _ = open_clip.create_model_and_transforms(MODEL)
    tokenizer = open_clip.get_tokenizer(MODEL)
    loss = open_clip.ClipLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.1)
    pairs = _pairs(folder)
    steps = 0
    started = time.perf_counter()
    model.train()
    for _ in range(EPOCHS):
        for first in range(0, len(pairs) - BATCH_SIZE + 1, BATCH_SIZE):
            batch = pairs[first : first + BATCH_SIZE]
            images = torch.stack([preprocess_train(Image.open(p.image).convert("RGB"))
                                  for p in batch])
            texts = tokenizer([p.text for p in batch])
            image_features, text_features, scale = model(images, texts)
            optimizer.zero_grad(set_to_none=True)
            loss(image_features, text_features, scale).backward()
            optimizer.step()
            steps += 1
    return time.perf_counter() - started, steps


def _child(name: str, folder: str) -> None:
    seconds, steps = {"ours": _ours, "bare": _bare}[name](Path(folder))
    print(json.dumps({"seconds": seconds, "steps": steps, "peak_rss_mb": peak_rss_mb()}))


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        _prepare(Path(folder))
        measured: dict[str, dict] = {}
        for _ in range(ROUNDS):
            for name in ("bare", "ours"):
                output = subprocess.run(
                    [sys.executable, "-m", "bench.train_step", name, folder],
                    capture_output=True, text=True, check=True,
                ).stdout.strip().splitlines()[-1]
                result = json.loads(output)
                per_step = result["seconds"] / result["steps"]
                if name not in measured or per_step < measured[name]["per_step"]:
                    measured[name] = {**result, "per_step": per_step}
    labels = {"bare": "bare open_clip train loop (baseline)", "ours": "vlclip train"}
    baseline = 1 / measured["bare"]["per_step"]
    return [
        {
            "variant": f"{labels[name]}, {MODEL}, batch {BATCH_SIZE}",
            "throughput": 1 / values["per_step"],
            "unit": "steps/s",
            "peak_rss_mb": values["peak_rss_mb"],
            "ratio": (1 / values["per_step"]) / baseline,
            "steps": values["steps"],
        }
        for name, values in measured.items()
    ]


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
