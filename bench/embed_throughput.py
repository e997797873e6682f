"""Image embedding throughput: ``vlclip.embed.embed_images`` against bare open_clip loops.

Both variants decode the same PNG files, apply the model's own preprocessing and run the same
model at the same batch size; each runs in its own process so peak memory is its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.timing import best_time, peak_rss_mb

IMAGES = 512
BATCH_SIZE = 64
REPEATS = 3
ROUNDS = 3


@dataclass(frozen=True)
class Setting:
    pretrained: str | None
    images: int
    repeats: int
    rounds: int
    variants: tuple[str, ...]


MODELS = {
    "vlclip-tiny": Setting(None, IMAGES, REPEATS, ROUNDS, ("bare", "ours", "forward_only")),
    # the offline pretrained towers at 224 px: about 10 photos/s here, so fewer and once
    "vlclip-lite-pretrained": Setting("packaged", 128, 1, 1, ("bare", "ours")),
}


def _prepare(folder: Path) -> list[Path]:
    from vlclip.catalog.synthetic import generate_synthetic
    from vlclip.config import SyntheticSource

    tables = generate_synthetic(
        SyntheticSource(num_products=IMAGES // 4, queries_per_product=3), folder
    )
    paths = [folder / "images" / p for p in tables.items["image_path"]]
    paths += [folder / "images" / p for p in tables.queries["image_path"]]
    return paths[:IMAGES]


def _variant(name: str, model_name: str, paths: list[Path]) -> float:
    """Seconds for one pass over ``paths`` (best of REPEATS after a warm-up batch)."""
    import torch
    from PIL import Image

    from vlclip.embed import embed_images
    from vlclip.model import create_bundle

    setting = MODELS[model_name]
    bundle = create_bundle(model_name, setting.pretrained, seed=0)
    model = bundle.model.eval()

    def ours() -> None:
        embed_images(bundle, paths, BATCH_SIZE, desc="bench")

    @torch.inference_mode()
    def bare() -> None:  # the loop one would write with open_clip alone
        for start in range(0, len(paths), BATCH_SIZE):
            batch = [
                bundle.preprocess_eval(Image.open(p).convert("RGB"))
                for p in paths[start : start + BATCH_SIZE]
            ]
            model.encode_image(torch.stack(batch))

    pixels = torch.randn(BATCH_SIZE, 3, *bundle.preprocess_eval.transforms[1].size)

    @torch.inference_mode()
    def forward_only() -> None:  # no image decoding at all: the upper bound
        for _ in range(0, len(paths), BATCH_SIZE):
            model.encode_image(pixels)

    run = {"ours": ours, "bare": bare, "forward_only": forward_only}[name]
    return best_time(run, setting.repeats)


def _child(name: str, model_name: str, folder: str) -> None:
    paths = sorted(Path(folder).rglob("*.png"))[: MODELS[model_name].images]
    seconds = _variant(name, model_name, paths)
    peak = peak_rss_mb()
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "images": len(paths)}))


def _measure(model_name: str, folder: str) -> dict[str, dict]:
    setting = MODELS[model_name]
    measured: dict[str, dict] = {}
    for _ in range(setting.rounds):
        for name in setting.variants:
            output = (
                subprocess.run(
                    [sys.executable, "-m", "bench.embed_throughput", name, model_name, folder],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            result = json.loads(output)
            if name not in measured or result["seconds"] < measured[name]["seconds"]:
                measured[name] = result
    return measured


def run() -> list[dict]:
    """Variants alternate over rounds, each in its own process; the best round of each is
    kept, so a burst of load on a shared machine does not land on one variant only."""
    labels = {
        "bare": "bare open_clip loop (baseline)",
        "ours": "vlclip embed_images",
        "forward_only": "forward only, no decoding (upper bound)",
    }
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        _prepare(Path(folder))
        for model_name in MODELS:
            measured = _measure(model_name, folder)
            baseline = measured["bare"]["images"] / measured["bare"]["seconds"]
            for name, values in measured.items():
                throughput = values["images"] / values["seconds"]
                rows.append(
                    {
                        "variant": f"{labels[name]}, {model_name}",
                        "throughput": throughput,
                        "unit": "images/s",
                        "peak_rss_mb": values["peak_rss_mb"],
                        "ratio": throughput / baseline,
                        "model": model_name,
                        "batch_size": BATCH_SIZE,
                        "images": values["images"],
                    }
                )
    return rows


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], sys.argv[3])
