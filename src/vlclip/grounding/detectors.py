"""Detector backends behind one protocol; ``ground.detector`` in params.yaml picks one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from PIL import Image


@dataclass(frozen=True)
class Detection:
    """A box in pixels (x0, y0, x1, y1) with a confidence in [0, 1]."""

    box: tuple[float, float, float, float]
    score: float


class Detector(Protocol):
    name: str

    def detect(self, images: list[Image.Image], prompts: list[str]) -> list[Detection | None]:
        """The best box for each image given its text prompt, or None when nothing is found."""
        ...


class FullImageDetector:
    """No grounding: the whole photo is the product (the ablation baseline)."""

    name = "full_image"

    def detect(self, images: list[Image.Image], prompts: list[str]) -> list[Detection | None]:
        return [Detection((0.0, 0.0, float(im.width), float(im.height)), 1.0) for im in images]


DETECTORS: dict[str, type] = {"full_image": FullImageDetector}


def make_detector(name: str) -> Detector:
    try:
        return DETECTORS[name]()
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose one of {sorted(DETECTORS)}") from None
