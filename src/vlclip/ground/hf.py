"""Zero-shot detectors from transformers (Grounding DINO, OWLv2) behind one class.

What differs between the models is data, not code: an :class:`HFBackend` record names the
classes to load, the default checkpoint, how a product type becomes a prompt and how the
post-processor is called. Weights come from the Hugging Face hub (needs internet) or from a
local folder written by ``save_pretrained`` (``ground.checkpoint``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from PIL import Image

from vlclip.config import GroundParams
from vlclip.ground.detectors import Detection, DetectorUnavailable, Prompt
from vlclip.io import stable_hash

log = logging.getLogger(__name__)

ALL_BOXES = 0.0
"""Post-processing keeps every box: the stage applies ``box_threshold`` itself, so the score of
a rejected box is still reported and changing the threshold needs no new detections."""


@dataclass(frozen=True)
class HFBackend:
    """How one transformers zero-shot detector is loaded, prompted and decoded."""

    name: str
    default_checkpoint: str
    prompt_template: str
    """``{}`` is replaced by the lowercase product type."""
    queries_per_image: bool
    """The processor takes a list of text queries per image (OWL) rather than one string."""
    token_grounded: bool
    """Post-processing maps boxes to prompt tokens (``input_ids``, ``text_threshold``)."""
    text_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Extra tokenizer options for the processor call."""
    processor_class: str = "AutoProcessor"
    model_class: str = "AutoModelForZeroShotObjectDetection"


HF_BACKENDS: dict[str, HFBackend] = {
    "grounding_dino": HFBackend(
        name="grounding_dino",
        default_checkpoint="IDEA-Research/grounding-dino-tiny",
        prompt_template="{}.",  # Grounding DINO expects lowercase phrases ending with a dot
        queries_per_image=False,
        token_grounded=True,
        text_kwargs=MappingProxyType({"padding": True}),
    ),
    "owlv2": HFBackend(
        name="owlv2",
        default_checkpoint="google/owlv2-base-patch16-ensemble",
        prompt_template="a photo of a {}",  # the CLIP-style query OWL models were trained with
        queries_per_image=True,
        token_grounded=False,
        text_kwargs=MappingProxyType({"truncation": True}),
    ),
}


def resolve_device(device: str) -> str:
    """``auto`` is CUDA when PyTorch sees a GPU, else the CPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _looks_local(checkpoint: str) -> bool:
    """A path rather than a hub id (``owner/name``): absolute, relative with a dot, or home."""
    return checkpoint.startswith(("/", ".", "~")) or Path(checkpoint).expanduser().exists()


def checkpoint_fingerprint(checkpoint: str) -> str:
    """A hub id as it is; a local folder by its files' names, sizes and modification times."""
    folder = Path(checkpoint).expanduser()
    if not folder.is_dir():
        return checkpoint
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    return stable_hash(
        [
            (str(path.relative_to(folder)), path.stat().st_size, path.stat().st_mtime_ns)
            for path in files
        ]
    )


class HFDetector:
    """A transformers zero-shot object detector: the best box for each image and prompt."""

    def __init__(
        self,
        backend: HFBackend,
        checkpoint: str | None = None,
        device: str = "auto",
        text_threshold: float = 0.25,
        phrases_per_prompt: int = 16,
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self.checkpoint = checkpoint or backend.default_checkpoint
        self.text_threshold = text_threshold
        self.phrases_per_prompt = phrases_per_prompt
        self.requested_device = device
        self._loaded: tuple[Any, Any, str] | None = None

    def load(self) -> tuple[Any, Any, str]:
        """Processor, model and device, loaded on first use: a fully cached run loads nothing."""
        if self._loaded is not None:
            return self._loaded
        import transformers

        if _looks_local(self.checkpoint) and not Path(self.checkpoint).expanduser().is_dir():
            raise DetectorUnavailable(
                f"ground.checkpoint={self.checkpoint!r}: no such folder (expected the output of "
                "save_pretrained: config, weights and processor files)"
            )
        device = resolve_device(self.requested_device)
        source = self.checkpoint
        if _looks_local(source):
            source = str(Path(source).expanduser())
        try:
            processor = getattr(transformers, self.backend.processor_class).from_pretrained(source)
            model = getattr(transformers, self.backend.model_class).from_pretrained(source)
        except OSError as error:
            raise DetectorUnavailable(
                f"ground.checkpoint={self.checkpoint!r} could not be loaded for {self.name}: "
                f"{error}. Use a local folder written by save_pretrained, or a hub id with "
                "internet access."
            ) from None
        self._loaded = (processor, model.to(device).eval(), device)
        log.info("loaded %s from %s on %s", self.name, self.checkpoint, device)
        return self._loaded

    @classmethod
    def from_params(cls, backend: HFBackend, params: GroundParams) -> HFDetector:
        return cls(
            backend,
            params.checkpoint,
            params.device,
            params.text_threshold,
            params.phrases_per_prompt,
        )

    def fingerprint(self) -> str:
        parts = [
            self.name,
            checkpoint_fingerprint(self.checkpoint),
            self.backend.prompt_template,
            self.phrases_per_prompt,
        ]
        if self.backend.token_grounded:
            parts.append(self.text_threshold)
        return stable_hash(*parts)

    def format_prompt(self, product_type: str) -> str:
        phrase = " ".join(str(product_type).lower().split()).rstrip(".")
        return self.backend.prompt_template.format(phrase)

    def detect(self, images: list[Image.Image], prompts: list[Prompt]) -> list[Detection | None]:
        """Best box per image over all its phrases.

        A long vocabulary is cut into chunks of ``phrases_per_prompt`` (Grounding DINO reads at
        most 256 text tokens); each (image, chunk) is one model input and the best box over the
        chunks wins.
        """
        jobs = [
            (index, chunk) for index, prompt in enumerate(prompts) for chunk in self._chunks(prompt)
        ]
        best: list[Detection | None] = [None] * len(images)
        for start in range(0, len(jobs), max(1, len(images))):
            batch = jobs[start : start + max(1, len(images))]
            found = self._detect_chunks([images[i] for i, _ in batch], [c for _, c in batch])
            for (index, _), detection in zip(batch, found, strict=True):
                current = best[index]
                if detection is not None and (current is None or detection.score > current.score):
                    best[index] = detection
        return best

    def _chunks(self, prompt: Prompt) -> list[Prompt]:
        """At most ``phrases_per_prompt`` phrases per chunk and, for a model that reads a
        bounded number of text tokens (``config.max_text_len``), no more tokens than that."""
        processor, model, _ = self.load()
        limit = getattr(model.config, "max_text_len", None) if self.backend.token_grounded else None
        chunks: list[Prompt] = []
        current: list[str] = []
        for phrase in prompt:
            candidate = [*current, phrase]
            too_long = limit is not None and current and self._tokens(processor, candidate) > limit
            if len(candidate) > self.phrases_per_prompt or too_long:
                chunks.append(tuple(current))
                candidate = [phrase]
            current = candidate
        if current:
            chunks.append(tuple(current))
        return chunks

    @staticmethod
    def _tokens(processor: Any, phrases: list[str]) -> int:
        return len(processor.tokenizer(" ".join(phrases))["input_ids"])

    def _detect_chunks(
        self, images: list[Image.Image], chunks: list[Prompt]
    ) -> list[Detection | None]:
        import torch

        processor, model, device = self.load()
        texts: list = (
            [list(chunk) for chunk in chunks]
            if self.backend.queries_per_image
            else [" ".join(chunk) for chunk in chunks]
        )
        inputs = processor(
            images=images, text=texts, return_tensors="pt", **self.backend.text_kwargs
        ).to(device)
        with torch.inference_mode():
            outputs = model(**inputs)
        options: dict[str, Any] = {
            "threshold": ALL_BOXES,
            "target_sizes": [(image.height, image.width) for image in images],
        }
        if self.backend.token_grounded:
            options.update(input_ids=inputs["input_ids"], text_threshold=self.text_threshold)
        results = processor.post_process_grounded_object_detection(outputs, **options)
        return [
            self._best(result, image, chunk)
            for result, image, chunk in zip(results, images, chunks, strict=True)
        ]

    def _phrase(self, result: Mapping[str, Any], index: int, chunk: Prompt) -> str | None:
        """The phrase a box answers: OWL returns a query index (padding queries lie beyond the
        chunk); Grounding DINO the prompt words its box is grounded in."""
        if self.backend.token_grounded:
            label = " ".join(str(result["text_labels"][index]).split())
            return label or None
        query = int(result["labels"][index])
        return chunk[query] if query < len(chunk) else None

    def _best(self, result: Mapping[str, Any], image: Image.Image, chunk: Prompt):
        import torch

        scores = result["scores"].detach().float().cpu()
        boxes = result["boxes"].detach().float().cpu()
        keep = torch.tensor(
            [self._phrase(result, i, chunk) is not None for i in range(len(scores))],
            dtype=torch.bool,
        )  # a box no prompt phrase reaches is about something else
        if not bool(keep.any()):
            return None
        scores = torch.where(keep, scores, torch.full_like(scores, -1.0))
        best = int(scores.argmax())
        x0, y0, x1, y1 = (float(value) for value in boxes[best])
        width, height = float(image.width), float(image.height)
        box = (
            min(max(x0, 0.0), width),
            min(max(y0, 0.0), height),
            min(max(x1, 0.0), width),
            min(max(y1, 0.0), height),
        )
        return Detection(box, float(scores[best]), self._phrase(result, best, chunk))
