"""A weight-free product detector: the offline default of the ground stage.

Two kinds of photo need two strategies:

- **Studio photos** (catalog listings: one product on a plain, evenly lit background) are
  segmented directly. The background colour is modelled row by row from the left and right
  image borders (a studio sweep darkens towards the floor), every pixel far from it in colour is
  product, soft floor shadows (the background colour, darker, same hue) are not, and thin dark
  outlines connect caps, pumps and handles to the body.
- **Cluttered photos** (shelves, tiles, other products) get box proposals from closed dark
  outlines: a product's silhouette edge is darker than both sides of it (shading falls off at
  the edge of a rounded object), while flat shapes, shelves and tiles only have steps. The
  proposals, plus windows found by sliding the prompt's silhouette over the outline map, are
  scored by how well the silhouette fits the outlines (chamfer distance), by whether their
  aspect ratio is that of the prompted product type, by size and by being fully in frame.

The silhouette of a product type comes from the catalog's own studio photos of that type (see
:meth:`SaliencyDetector.fit_exemplars`): that is how the text prompt reaches a detector with no
weights. Without exemplars for a prompt, proposals are scored by how tightly outlines fill the
box.

Only numpy, scipy and PIL; about 40 ms per 128 px photo on one CPU core.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from vlclip.ground.crops import Box
from vlclip.ground.detectors import Detection, Prompt
from vlclip.io import stable_hash

VERSION = "2"
"""Bump when the algorithm changes: cached detections of older versions are then not reused."""

WORK_SIDE = 192
"""Larger photos are shrunk to this long side first: the cues are coarse, the cost per pixel."""
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
NEIGHBOUR_STEPS = ((0, 1), (1, 0), (1, 1), (1, -1))
"""Directions (dy, dx) across which a one-pixel outline is looked for."""

# ----------------------------------------------------------------------- studio photos
BORDER_STRIP = 2
"""Pixels of the left and right image edges that model the studio background, row by row."""
CLEAN_BORDER_SPREAD = 15.0
"""90th percentile of the border's colour distance to that model below which a photo is studio."""
FOREGROUND_DISTANCE = 30.0
"""RGB distance from the background model from which a pixel is product."""
SHADOW_GAIN = (0.7, 1.05)
"""A shadow is the background colour scaled by a factor in this range ..."""
SHADOW_MAX_ANGLE = 0.01
"""... with the same hue (1 - cosine of the angle between the two colours)."""
STUDIO_OUTLINE_CONTRAST = 20.0
"""Luminance by which an outline pixel is darker than both neighbours; joins caps and stems."""
SPECK_SHARE = 0.02
"""Studio components smaller than this share of the largest one are dust, not product."""
STUDIO_SCORE = 0.95
"""Confidence of a studio segmentation that neither fills the frame nor touches all borders."""
FULL_FRAME_SHARE = 0.9
"""A 'product' covering this share of a studio photo is the background failing: low score."""
UNSURE_SCORE = 0.1

# ----------------------------------------------------------------------- cluttered photos
OUTLINE_LEVELS = (10.0, 20.0)
"""Absolute outline contrasts (luminance levels) at which outline maps are cut into proposals."""
RELATIVE_OUTLINE_LEVELS = (0.3,)
"""The same as a share of the neighbours' luminance: finds the outlines of dark products."""
RELATIVE_OUTLINE_FLOOR = 10.0
"""Added to the neighbours' luminance so that near-black noise is not a strong relative outline."""
CLOSING_STEPS = (0, 1)
"""Binary closings (3x3, repeated) that bridge gaps in an outline before components are cut."""
MIN_PROPOSAL_SHARE = 0.004
"""Proposals smaller than this share of the photo are noise."""
MERGE_GAP = 2
"""Proposals this close (pixels) are also merged pairwise: caps and bodies split by a highlight."""
MERGE_MAX_SHARE = 0.3
"""Only proposals smaller than this share of the photo are merged (bounds the pair count)."""
CHAMFER_LEVEL = 12.0
"""Outline contrast from which a pixel counts as an edge for silhouette fitting."""
CHAMFER_CAP = 5.0
"""Distances (pixels) from a silhouette point to the nearest edge are capped here."""
ASPECT_TOLERANCE = 0.25
"""Spread (in log height/width) of a product type's aspect ratio across photos and tilts."""
BORDER_FACTOR = 0.3
"""Score factor of a box touching the frame: the product is usually fully in the picture."""
MIN_PRODUCT_SHARE = 0.02
"""Boxes smaller than this share of the photo lose score in proportion: tiny fits are cheap."""
SEARCH_SCALES = tuple(np.linspace(0.1, 0.55, 16).round(3))
"""Long sides (share of the photo's long side) at which the silhouette is slid over the photo."""
SEARCH_PEAKS = 3
"""Best non-overlapping windows kept per search scale."""
SEARCH_TOP = 50
"""Candidates looked at per scale to find those peaks."""
MIN_WINDOW_SIDE = 6

# ----------------------------------------------------------------------- silhouettes
TEMPLATE_GRID = 32
"""Silhouettes are averaged on a grid of this size, in box-normalised coordinates."""
TEMPLATE_MAJORITY = 0.5
SHARED_SHAPE_IOU = 0.8
"""Silhouettes overlapping this much (on the grid) are searched for once in a vocabulary prompt."""
SHARED_ASPECT_GAP = ASPECT_TOLERANCE / 2
"""... if their aspect ratios (log height/width) are also this close."""


@dataclass(frozen=True)
class ShapePrior:
    """What a product type looks like from its studio photos: silhouette and aspect ratio."""

    mask: np.ndarray
    """TEMPLATE_GRID x TEMPLATE_GRID booleans: the silhouette stretched to its box."""
    log_aspect: float
    """Median log(height / width) of the exemplars' boxes."""

    def outline(self) -> tuple[np.ndarray, np.ndarray]:
        """Silhouette boundary points as (u, v) in [0, 1] box coordinates."""
        inner = ndimage.binary_erosion(self.mask, border_value=0)
        rows, cols = np.nonzero(self.mask & ~inner)
        return (cols + 0.5) / TEMPLATE_GRID, (rows + 0.5) / TEMPLATE_GRID


RECTANGLE = ShapePrior(np.ones((TEMPLATE_GRID, TEMPLATE_GRID), dtype=bool), 0.0)
"""The prior used for prompts without exemplars: any box, scored by its outline fit only."""


# ----------------------------------------------------------------------- pixel maps


def luminance(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32) @ LUMA


def _neighbour_pairs(lum: np.ndarray):
    """For each direction, the two neighbours of every pixel across it (edges replicated)."""
    padded = np.pad(lum, 1, mode="edge")
    height, width = lum.shape
    for dy, dx in NEIGHBOUR_STEPS:
        ahead = padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        behind = padded[1 - dy : 1 - dy + height, 1 - dx : 1 - dx + width]
        yield ahead, behind


def outline_contrast(lum: np.ndarray) -> np.ndarray:
    """How much darker each pixel is than both of its neighbours across some direction."""
    out = np.zeros_like(lum)
    for ahead, behind in _neighbour_pairs(lum):
        np.maximum(out, np.minimum(ahead, behind) - lum, out=out)
    return out


def relative_outline_contrast(lum: np.ndarray) -> np.ndarray:
    """:func:`outline_contrast` as a share of the neighbours' brightness."""
    out = np.zeros_like(lum)
    for ahead, behind in _neighbour_pairs(lum):
        brighter = np.minimum(ahead, behind)
        np.maximum(out, (brighter - lum) / (brighter + RELATIVE_OUTLINE_FLOOR), out=out)
    return out


def _background_rows(pixels: np.ndarray) -> np.ndarray:
    """Background colour per row, from the left and right border strips: shape (H, 1, 3)."""
    sides = np.concatenate([pixels[:, :BORDER_STRIP], pixels[:, -BORDER_STRIP:]], axis=1)
    return sides.mean(axis=1, keepdims=True)


def border_spread(pixels: np.ndarray) -> float:
    """How far the image border strays from a row-wise background: ~0 for a studio photo."""
    background = _background_rows(pixels)
    distance = np.sqrt(((pixels - background) ** 2).sum(-1))
    band = np.zeros(distance.shape, dtype=bool)
    band[:, :BORDER_STRIP] = band[:, -BORDER_STRIP:] = True
    band[:BORDER_STRIP] = band[-BORDER_STRIP:] = True
    return float(np.percentile(distance[band], 90))


def studio_silhouette(pixels: np.ndarray) -> np.ndarray | None:
    """The product's mask in a studio photo (float RGB array), or None when nothing stands out."""
    background = _background_rows(pixels)
    distance = np.sqrt(((pixels - background) ** 2).sum(-1))
    dot = (pixels * background).sum(-1)
    gain = dot / np.maximum((background * background).sum(-1), 1e-6)
    cosine = dot / (np.linalg.norm(pixels, axis=-1) * np.linalg.norm(background, axis=-1) + 1e-6)
    shadow = (gain > SHADOW_GAIN[0]) & (gain < SHADOW_GAIN[1]) & (cosine > 1 - SHADOW_MAX_ANGLE)
    mask = (distance > FOREGROUND_DISTANCE) & ~shadow
    mask |= outline_contrast(luminance(pixels)) > STUDIO_OUTLINE_CONTRAST
    mask = ndimage.binary_fill_holes(ndimage.binary_closing(mask))
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        return None
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    return np.isin(labels, 1 + np.flatnonzero(sizes >= SPECK_SHARE * sizes.max()))


def mask_box(mask: np.ndarray) -> Box:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def shape_prior(masks: Sequence[np.ndarray]) -> ShapePrior | None:
    """Average silhouettes (each cropped to its box and stretched to the grid) into a prior."""
    grids, aspects = [], []
    for mask in masks:
        x0, y0, x1, y1 = (int(v) for v in mask_box(mask))
        cropped = Image.fromarray(mask[y0:y1, x0:x1].astype(np.uint8) * 255)
        grid = cropped.resize((TEMPLATE_GRID, TEMPLATE_GRID), Image.Resampling.BILINEAR)
        grids.append(np.asarray(grid, dtype=np.float32) / 255)
        aspects.append(np.log((y1 - y0) / (x1 - x0)))
    if not grids:
        return None
    silhouette = np.mean(grids, axis=0) > TEMPLATE_MAJORITY
    if not silhouette.any():
        return None
    return ShapePrior(silhouette, float(np.median(aspects)))


def shared_shapes(priors: Mapping[str, ShapePrior]) -> dict[str, ShapePrior]:
    """Map each phrase to the first (by name) silhouette like its own, greedily.

    Sliding a silhouette over a photo is the costly step; a vocabulary prompt (a query photo
    prompted with every product type) searches each group of look-alike shapes once.
    """
    chosen: dict[str, ShapePrior] = {}
    representatives: list[ShapePrior] = []
    for phrase in sorted(priors):
        prior = priors[phrase]
        for other in representatives:
            overlap = (prior.mask & other.mask).sum() / max(1, (prior.mask | other.mask).sum())
            close = abs(prior.log_aspect - other.log_aspect) <= SHARED_ASPECT_GAP
            if overlap >= SHARED_SHAPE_IOU and close:
                chosen[phrase] = other
                break
        else:
            representatives.append(prior)
            chosen[phrase] = prior
    return chosen


# ----------------------------------------------------------------------- proposals


def _component_boxes(mask: np.ndarray, min_area: float) -> set[tuple[int, int, int, int]]:
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    boxes = set()
    for rows, cols in ndimage.find_objects(labels):
        if (rows.stop - rows.start) * (cols.stop - cols.start) >= min_area:
            boxes.add((cols.start, rows.start, cols.stop, rows.stop))
    return boxes


def outline_proposals(contrast: np.ndarray, relative: np.ndarray) -> list[tuple[int, ...]]:
    """Boxes of outline components at several contrasts and closings, plus adjacent pairs."""
    height, width = contrast.shape
    min_area = MIN_PROPOSAL_SHARE * height * width
    closing = np.ones((3, 3), dtype=bool)
    boxes: set[tuple[int, int, int, int]] = set()
    levels = [(contrast, level) for level in OUTLINE_LEVELS]
    levels += [(relative, level) for level in RELATIVE_OUTLINE_LEVELS]
    for values, level in levels:
        edges = values > level
        for steps in CLOSING_STEPS:
            closed = ndimage.binary_closing(edges, closing, iterations=steps) if steps else edges
            boxes |= _component_boxes(closed, min_area)
    small = [box for box in boxes if _area(box) < MERGE_MAX_SHARE * height * width]
    for i, first in enumerate(small):
        for second in small[i + 1 :]:
            if _near(first, second, MERGE_GAP):
                boxes.add(
                    (
                        min(first[0], second[0]),
                        min(first[1], second[1]),
                        max(first[2], second[2]),
                        max(first[3], second[3]),
                    )
                )
    return sorted(boxes)


def _area(box: Sequence[float]) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def _near(a: Sequence[int], b: Sequence[int], gap: int) -> bool:
    return a[0] <= b[2] + gap and b[0] <= a[2] + gap and a[1] <= b[3] + gap and b[1] <= a[3] + gap


def _window_size(prior: ShapePrior, long_side: float) -> tuple[int, int]:
    """(height, width) of the prior's box with the given long side."""
    aspect = float(np.exp(prior.log_aspect))
    if aspect >= 1:
        return round(long_side), round(long_side / aspect)
    return round(long_side * aspect), round(long_side)


KernelCache = dict[tuple[int, float, int, int], np.ndarray]
"""Spectra of silhouette kernels by (prior id, scale, height, width): photos of one size reuse
them, which halves the search's cost on a catalog of equal-sized photos."""


def _kernel_spectrum(
    prior: ShapePrior, scale: float, box: tuple[int, int], shape: tuple[int, int]
) -> np.ndarray:
    box_h, box_w = box
    u, v = prior.outline()
    kernel = np.zeros(shape, dtype=np.float32)
    kernel[
        np.clip((v * box_h).astype(int), 0, box_h - 1),
        np.clip((u * box_w).astype(int), 0, box_w - 1),
    ] = 1.0
    kernel /= kernel.sum()
    return np.conj(np.fft.rfft2(kernel))


def search_windows(
    distance: np.ndarray, prior: ShapePrior, kernels: KernelCache | None = None
) -> list[tuple[int, ...]]:
    """Slide the silhouette's outline over the edge-distance map at several scales.

    The mean capped distance of the outline points to the nearest edge, at every position, is a
    correlation of the distance map with the outline: one FFT of the map serves all scales
    (circular correlation is exact at the positions where the window fits). Returns the best
    few non-overlapping windows per scale.
    """
    height, width = distance.shape
    spectrum = np.fft.rfft2(distance)
    kernels = {} if kernels is None else kernels
    windows = []
    for scale in SEARCH_SCALES:
        box_h, box_w = _window_size(prior, scale * max(height, width))
        if min(box_h, box_w) < MIN_WINDOW_SIDE or box_h > height or box_w > width:
            continue
        key = (id(prior), float(scale), height, width)
        if key not in kernels:
            kernels[key] = _kernel_spectrum(prior, scale, (box_h, box_w), (height, width))
        correlation = np.fft.irfft2(spectrum * kernels[key], s=(height, width))
        mean_distance = correlation[: height - box_h + 1, : width - box_w + 1]
        flat = mean_distance.ravel()
        top = np.argpartition(flat, min(SEARCH_TOP, flat.size - 1))[:SEARCH_TOP]
        taken: list[tuple[int, int]] = []
        for index in top[np.argsort(flat[top])]:
            y, x = np.unravel_index(index, mean_distance.shape)
            if any(abs(y - ty) < box_h / 2 and abs(x - tx) < box_w / 2 for ty, tx in taken):
                continue
            taken.append((int(y), int(x)))
            windows.append((int(x), int(y), int(x) + box_w, int(y) + box_h))
            if len(taken) == SEARCH_PEAKS:
                break
    return windows


def chamfer_similarity(
    distance: np.ndarray, boxes: np.ndarray, outline: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Per box (rows of x0, y0, x1, y1): 1 when every outline point stretched into it lies on
    an edge, 0 when none is near."""
    u, v = outline
    x0, y0, x1, y1 = (boxes[:, i : i + 1] for i in range(4))
    cols = np.clip((x0 + u * (x1 - x0)).astype(int), 0, distance.shape[1] - 1)
    rows = np.clip((y0 + v * (y1 - y0)).astype(int), 0, distance.shape[0] - 1)
    return 1.0 - distance[rows, cols].mean(axis=1) / CHAMFER_CAP


def score_boxes(
    boxes: np.ndarray,
    distance: np.ndarray,
    prior: ShapePrior,
    outline: tuple[np.ndarray, np.ndarray],
    use_aspect: bool,
) -> np.ndarray:
    """How well each box fits the prior's silhouette, is in frame, large enough and shaped right."""
    height, width = distance.shape
    box_w, box_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    in_frame = (boxes[:, 0] > 0) & (boxes[:, 1] > 0) & (boxes[:, 2] < width)
    in_frame &= boxes[:, 3] < height
    score = chamfer_similarity(distance, boxes, outline)
    score = score * np.where(in_frame, 1.0, BORDER_FACTOR)
    score = score * np.minimum(1.0, box_w * box_h / (MIN_PRODUCT_SHARE * height * width))
    if use_aspect:
        score = score * np.exp(
            -(((np.log(box_h / box_w) - prior.log_aspect) / ASPECT_TOLERANCE) ** 2)
        )
    return np.maximum(0.0, score)


def detect_in_clutter(
    pixels: np.ndarray,
    priors: Mapping[str, ShapePrior | None],
    search_shapes: Mapping[str, ShapePrior] | None = None,
    kernels: KernelCache | None = None,
) -> Detection | None:
    """The best box over every prompt phrase; the phrase of the winning fit is returned.

    Each phrase's silhouette is slid over the photo (``search_shapes`` may map it to a similar
    silhouette searched on its behalf: a vocabulary of many types shares few shapes), and the
    windows found plus every outline proposal are scored against the phrase's own silhouette.
    A phrase without a prior (no studio photo taught its shape) scores proposals by how tightly
    outlines fill them.
    """
    lum = luminance(pixels)
    contrast = outline_contrast(lum)
    edges = contrast > CHAMFER_LEVEL
    if not edges.any() or not priors:
        return None
    distance = np.minimum(ndimage.distance_transform_edt(~edges), CHAMFER_CAP).astype(np.float32)
    proposals = outline_proposals(contrast, relative_outline_contrast(lum))
    searched: dict[int, list[tuple[int, ...]]] = {}
    best: Detection | None = None
    for phrase, prior in priors.items():
        windows: list[tuple[int, ...]] = []
        if prior is not None:
            shape = (search_shapes or {}).get(phrase, prior)
            if id(shape) not in searched:
                searched[id(shape)] = search_windows(distance, shape, kernels)
            windows = searched[id(shape)]
        candidates = proposals + windows
        if not candidates:
            continue
        shape = prior or RECTANGLE
        boxes = np.asarray(candidates, dtype=np.float32)
        scores = score_boxes(boxes, distance, shape, shape.outline(), prior is not None)
        index = int(np.argmax(scores))
        if best is None or scores[index] > best.score:
            best = Detection(tuple(float(v) for v in boxes[index]), float(scores[index]), phrase)
    return best


def detect_in_studio(pixels: np.ndarray) -> Detection | None:
    mask = studio_silhouette(pixels)
    if mask is None:
        return None
    box = mask_box(mask)
    height, width = mask.shape
    touches_all = box == (0.0, 0.0, float(width), float(height))
    too_big = _area(box) >= FULL_FRAME_SHARE * height * width
    return Detection(box, UNSURE_SCORE if touches_all or too_big else STUDIO_SCORE)


# ----------------------------------------------------------------------- the detector


def _working_copy(image: Image.Image) -> tuple[np.ndarray, float]:
    """Float RGB pixels at most WORK_SIDE on the long side, and the factor back to full size."""
    scale = max(image.size) / WORK_SIDE
    if scale > 1:
        size = (max(1, round(image.width / scale)), max(1, round(image.height / scale)))
        image = image.resize(size, Image.Resampling.BOX)
    else:
        scale = 1.0
    return np.asarray(image.convert("RGB"), dtype=np.float32), scale


class SaliencyDetector:
    """Studio segmentation or outline proposals fitted to the prompt's silhouette; no weights."""

    name = "saliency"

    def __init__(self) -> None:
        self.priors: dict[str, ShapePrior] = {}
        self.search_shapes: dict[str, ShapePrior] = {}
        """Phrase -> the similar silhouette searched for it when many phrases are prompted."""
        self.kernels: KernelCache = {}

    def fingerprint(self) -> str:
        return stable_hash(self.name, VERSION, WORK_SIDE)

    def format_prompt(self, product_type: str) -> str:
        return " ".join(str(product_type).lower().split())

    def fit_exemplars(self, exemplars: Mapping[str, Sequence[Image.Image]]) -> None:
        """Learn each prompt's silhouette from studio photos of it (others are skipped)."""
        for prompt, images in exemplars.items():
            masks = []
            for image in images:
                pixels, _ = _working_copy(image)
                if border_spread(pixels) > CLEAN_BORDER_SPREAD:
                    continue
                mask = studio_silhouette(pixels)
                if mask is not None:
                    masks.append(mask)
            prior = shape_prior(masks)
            if prior is not None:
                self.priors[prompt] = prior
        self.search_shapes = shared_shapes(self.priors)
        self.kernels = {}

    def detect_one(self, image: Image.Image, prompt: Prompt) -> Detection | None:
        pixels, scale = _working_copy(image)
        if border_spread(pixels) <= CLEAN_BORDER_SPREAD:
            found = detect_in_studio(pixels)
            phrase = prompt[0] if len(prompt) == 1 else None  # a silhouette names no type
        else:
            found = detect_in_clutter(
                pixels,
                {phrase: self.priors.get(phrase) for phrase in prompt},
                self.search_shapes if len(prompt) > 1 else None,
                self.kernels,
            )
            phrase = found.phrase if found is not None else None
        if found is None:
            return None
        x0, y0, x1, y1 = (value * scale for value in found.box)
        return Detection(
            (x0, y0, min(x1, float(image.width)), min(y1, float(image.height))),
            found.score,
            phrase,
        )

    def detect(self, images: list[Image.Image], prompts: list[Prompt]) -> list[Detection | None]:
        return [
            self.detect_one(image, prompt) for image, prompt in zip(images, prompts, strict=True)
        ]
