"""Detector backends behind one protocol; ``ground.detector`` in params.yaml picks one.

A backend is an entry in :data:`DETECTORS`: a name and a factory that builds it from the
``ground`` params. Hugging Face models (Grounding DINO, OWLv2) share one class configured by a
small :class:`~vlclip.ground.hf.HFBackend` record, so adding a model is adding a record.
Factories import their dependencies when called: choosing the weight-free detector never
imports torch or transformers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from PIL import Image

from vlclip.config import GroundParams
from vlclip.ground.crops import full_box


class DetectorUnavailable(ValueError):
    """The detector cannot run at all (weights missing or unloadable): stop, not per photo."""


@dataclass(frozen=True)
class Detection:
    """A box in pixels (x0, y0, x1, y1) with a confidence in [0, 1].

    ``phrase`` is the prompt phrase the box answers: with a vocabulary prompt (a query photo
    that carries no label), the product type the detector thinks it found.
    """

    box: tuple[float, float, float, float]
    score: float
    phrase: str | None = None


Prompt = tuple[str, ...]
"""The phrases one photo is prompted with (formatted by the detector): one for a catalog
listing (its own product type), the catalog's whole product-type vocabulary for a query photo."""


class Detector(Protocol):
    name: str

    def fingerprint(self) -> str:
        """Everything that changes this detector's boxes (weights, thresholds, version)."""
        ...

    def format_prompt(self, product_type: str) -> str:
        """The phrase this detector is prompted with for a product type."""
        ...

    def detect(self, images: list[Image.Image], prompts: list[Prompt]) -> list[Detection | None]:
        """The best box for each image over all phrases of its prompt, or None when none."""
        ...


@runtime_checkable
class LearnsFromExemplars(Protocol):
    """A detector that needs example photos of each prompt before it can detect it."""

    def fit_exemplars(self, exemplars: Mapping[str, Sequence[Image.Image]]) -> None: ...


class FullImageDetector:
    """No grounding: the whole photo is the product (the ablation baseline)."""

    name = "full_image"

    def fingerprint(self) -> str:
        return self.name

    def format_prompt(self, product_type: str) -> str:
        return " ".join(str(product_type).lower().split())

    def detect(self, images: list[Image.Image], prompts: list[Prompt]) -> list[Detection | None]:
        return [
            Detection(full_box(im.width, im.height), 1.0, _only_phrase(prompt))
            for im, prompt in zip(images, prompts, strict=True)
        ]


def _only_phrase(prompt: Prompt) -> str | None:
    """The phrase of a one-phrase prompt; a whole-image 'detection' names no type otherwise."""
    return prompt[0] if len(prompt) == 1 else None


def _full_image(params: GroundParams) -> Detector:
    return FullImageDetector()


def _saliency(params: GroundParams) -> Detector:
    from vlclip.ground.saliency import SaliencyDetector

    return SaliencyDetector()


def _hugging_face(backend_name: str) -> Callable[[GroundParams], Detector]:
    def build(params: GroundParams) -> Detector:
        from vlclip.ground.hf import HF_BACKENDS, HFDetector

        return HFDetector.from_params(HF_BACKENDS[backend_name], params)

    return build


DETECTORS: dict[str, Callable[[GroundParams], Detector]] = {
    "saliency": _saliency,
    "grounding_dino": _hugging_face("grounding_dino"),
    "owlv2": _hugging_face("owlv2"),
    "full_image": _full_image,
}


def make_detector(params: GroundParams) -> Detector:
    """Build the backend ``params.detector`` names."""
    try:
        factory = DETECTORS[params.detector]
    except KeyError:
        raise ValueError(
            f"unknown detector {params.detector!r}; choose one of {sorted(DETECTORS)}"
        ) from None
    return factory(params)
