"""Pydantic models for ``params.yaml``: one section per pipeline stage.

Every stage reads its settings through :func:`load_params`, so a typo or an out-of-range value
stops the run before any work is done, with a message that names the key and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

DEFAULT_PARAMS = Path("params.yaml")


class Section(BaseModel):
    """Base for every section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


# --------------------------------------------------------------------------- ingest


class SyntheticSource(Section):
    """The embedded demo catalog, generated deterministically from ``seed``."""

    kind: Literal["synthetic"] = "synthetic"
    seed: int = 7
    num_products: Annotated[int, Field(ge=8)] = 360
    queries_per_product: PositiveInt = 4
    image_size: Annotated[int, Field(ge=32, le=1024)] = 128
    val_fraction: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.1
    test_fraction: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.25


class GroceryStoreSource(Section):
    """GroceryStoreDataset in its published layout (``root`` holds ``dataset/``)."""

    kind: Literal["grocery_store"]
    root: Path = Path("../shared/datasets/grocery-store")
    unseen_products: list[str] = []
    """Class names held out of training (e.g. Granny-Smith): their listings go to the test
    split and their train and val photos are left out, so no part of them is trained on."""

    @model_validator(mode="after")
    def _root_exists(self) -> GroceryStoreSource:
        classes = self.root / "dataset" / "classes.csv"
        if not classes.is_file():
            raise ValueError(
                f"root={str(self.root)!r}: no dataset/classes.csv there; point it at a copy of "
                "the GroceryStoreDataset (for example ../shared/datasets/grocery-store)"
            )
        return self


class TableSource(Section):
    """A catalog table (CSV, Parquet or JSONL) plus a folder of images."""

    kind: Literal["table"]
    path: Path
    image_root: Path
    queries_path: Path | None = None

    @model_validator(mode="after")
    def _paths_exist(self) -> TableSource:
        for key in ("path", "queries_path"):
            value = getattr(self, key)
            if value is not None and not Path(value).is_file():
                raise ValueError(f"{key}={str(value)!r}: file not found")
            if value is not None and Path(value).suffix.lower() not in TABLE_SUFFIXES:
                raise ValueError(f"{key}={str(value)!r}: use one of {sorted(TABLE_SUFFIXES)}")
        if not self.image_root.is_dir():
            raise ValueError(f"image_root={str(self.image_root)!r}: folder not found")
        return self


TABLE_SUFFIXES = frozenset({".csv", ".parquet", ".jsonl", ".json"})

CatalogSource = Annotated[
    SyntheticSource | GroceryStoreSource | TableSource, Field(discriminator="kind")
]


class IngestParams(Section):
    source: CatalogSource = SyntheticSource()
    max_image_pixels: PositiveInt = 40_000_000
    """Larger images are quarantined as decompression bombs instead of being decoded."""
    min_image_side: PositiveInt = 16


# --------------------------------------------------------------------------- validate


class ValidateParams(Section):
    min_title_chars: Annotated[int, Field(ge=1)] = 2
    max_title_chars: PositiveInt = 300
    max_description_chars: PositiveInt = 20_000
    allowed_product_types: list[str] | None = None
    """None accepts the product types the catalog source declares in its manifest."""
    min_image_side: PositiveInt = 32
    max_image_side: PositiveInt = 12_000
    max_quarantine_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    min_items: PositiveInt = 2


# --------------------------------------------------------------------------- ground


class GroundParams(Section):
    detector: Literal["saliency", "grounding_dino", "owlv2", "full_image"] = "saliency"
    """saliency: weight-free, offline; grounding_dino / owlv2: transformers models (GPU advised);
    full_image: no grounding (the ablation baseline)."""
    checkpoint: str | None = None
    """Hugging Face hub id or local folder for grounding_dino / owlv2; None: the backend's
    default (IDEA-Research/grounding-dino-tiny, google/owlv2-base-patch16-ensemble)."""
    box_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3
    """Below this detection score the full image is kept (``fallback``)."""
    text_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.25
    """grounding_dino: a box counts only if some prompt token scores at least this."""
    margin: NonNegativeFloat = 0.05
    """Padding around the chosen box, as a fraction of its width and height."""
    crop_max_side: Annotated[int, Field(ge=32)] = 256
    crop_quality: Annotated[int, Field(ge=50, le=100)] = 95
    batch_size: PositiveInt = 16
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """auto: CUDA when PyTorch sees a GPU, else CPU (transformers backends only)."""
    query_prompt: Literal["vocabulary", "oracle"] = "vocabulary"
    """How query photos (a shopper's photo, which carries no label) are prompted. vocabulary:
    with every product type of the catalog, keeping the best box over all of them. oracle: with
    the true type of the photo's product, a label no real query has; for diagnosis only (it
    shows how much grounding the label buys), never for reported results. Catalog listings are
    always prompted with their own product type."""
    phrases_per_prompt: Annotated[int, Field(ge=1, le=64)] = 16
    """grounding_dino / owlv2: a vocabulary prompt is cut into chunks of this many phrases (the
    text encoder reads a bounded number of tokens); the best box over the chunks wins."""
    exemplars_per_prompt: PositiveInt = 8
    """saliency: catalog photos per product type whose silhouettes teach it the prompt's shape."""
    cache_dir: Path = Path(".vlclip-cache/ground")
    """Detections by content hash: unchanged photos are not detected again; a killed run resumes."""
    report_samples: Annotated[int, Field(ge=0)] = 24
    """Photos per table drawn in reports/grounding.html."""


# --------------------------------------------------------------------------- enrich


class EnrichParams(Section):
    backend: Literal["auto", "rule_based", "anthropic"] = "auto"
    """auto: the Claude agent when ANTHROPIC_API_KEY is set, else the offline normaliser."""
    max_chars: Annotated[int, Field(ge=32, le=2000)] = 300
    glossary_path: Path | None = None
    """A JSON glossary of shop abbreviations; None uses the packaged one."""
    visual_attributes: bool = False
    """Offline text: add what the listing's grounded photo shows (named dominant colours,
    round or boxy, tall or wide), measured from its pixels."""
    attributes: bool = True
    """Offline text: add the listing's attributes as ``name: value`` parts."""
    description: bool = False
    """Offline text: append the catalog description (last, so the length cap trims it first)."""

    # The Claude agent (backend anthropic): summarise -> evaluate -> refine.
    mode: Literal["realtime", "batch"] = "realtime"
    """realtime: concurrent Messages calls; batch: one Message Batch per agent round."""
    model: str = "claude-haiku-4-5"
    max_tokens: Annotated[int, Field(ge=64, le=64_000)] = 1024
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] | None = 0.0
    """None sends no temperature (models that reject sampling parameters need that)."""
    structured_output: Literal["tool", "json_schema"] = "tool"
    """tool: forced tool call with a JSON schema; json_schema: output_config.format, for models
    that reject a forced tool_choice."""
    max_rounds: Annotated[int, Field(ge=1, le=10)] = 3
    """Drafts per item: the first summary plus up to max_rounds - 1 refinements."""
    max_invalid_replies: Annotated[int, Field(ge=0, le=5)] = 2
    """Malformed replies retried per step before the item falls back to the offline text."""
    prompt_version: Annotated[str, Field(min_length=1, max_length=64)] = "v1"
    """Part of every cache key: change it to get fresh replies for every item."""
    image_input: Literal["none", "evaluate", "all"] = "evaluate"
    """Which steps see the grounded crop (data/crops) as an image."""
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    timeout_s: Annotated[float, Field(gt=0.0)] = 60.0
    max_retries: Annotated[int, Field(ge=0, le=20)] = 5
    """Retries of one call on 429, 529, other 5xx, timeouts and dropped connections."""
    backoff_initial_s: NonNegativeFloat = 1.0
    backoff_max_s: NonNegativeFloat = 60.0
    """Exponential backoff bounds when the server sends no retry-after header."""
    batch_poll_s: Annotated[float, Field(gt=0.0)] = 30.0
    batch_timeout_s: Annotated[float, Field(gt=0.0)] = 86_400.0
    """Stop waiting after this long; the batch id is kept and the next run resumes it."""
    batch_max_requests: Annotated[int, Field(ge=1, le=100_000)] = 10_000
    cache_dir: Path = Path(".vlclip-cache/enrich")
    """Reply cache and batch state; outside data/enriched, which is replaced on every run."""
    prices_path: Path | None = None
    """Per-model token prices (JSON); None uses src/vlclip/enrich/prices.json."""
    base_url: str | None = None
    """API endpoint override (a gateway); None uses ANTHROPIC_BASE_URL or the public API."""


# --------------------------------------------------------------------------- model / train


class ModelParams(Section):
    name: str = "vlclip-tiny"
    """An open_clip architecture: ours in ``src/vlclip/model_configs`` or any built-in one."""
    pretrained: str | None = None
    """An open_clip pretrained tag (needs internet) or a local weights file."""


Device = Literal["auto", "cpu", "cuda", "mps"]
AreaShare = Annotated[float, Field(gt=0.0, le=1.0)]


class TrainParams(Section):
    epochs: PositiveInt = 12
    batch_size: PositiveInt = 64
    lr: Annotated[float, Field(gt=0.0)] = 5e-4
    weight_decay: NonNegativeFloat = 0.1
    warmup_steps: Annotated[int, Field(ge=0)] = 20
    seed: int = 0
    device: Device = "auto"
    use_catalog_images: bool = True
    """Train on catalog listings as well as on the train-split query photos."""
    crop_scale: tuple[AreaShare, AreaShare] = (0.6, 1.0)
    """Random-resized-crop area range for training images (no colour jitter: colour is identity)."""
    max_train_minutes: NonNegativeFloat = 0.0
    """Stop early after this much wall time (0 = no limit)."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto: bfloat16 autocast on a CUDA GPU that supports it, float32 elsewhere (CPU runs stay
    bit-reproducible)."""
    lock_image: bool = False
    """Freeze the image tower (LiT-style; as open_clip's ``--lock-image``): train the rest."""
    lock_image_unlocked_groups: Annotated[int, Field(ge=0)] = 0
    """With ``lock_image``: leave this many last layer groups of the image tower trainable."""
    lock_text: bool = False
    """Freeze the text tower (as open_clip's ``--lock-text``)."""
    lock_text_unlocked_layers: Annotated[int, Field(ge=0)] = 0
    """With ``lock_text``: leave this many last layers of the text tower trainable."""
    checkpoint_dir: Path = Path(".vlclip-cache/train")
    """Resume checkpoints (model, optimizer, scheduler, RNG states), written after every epoch
    in a folder per run configuration, outside ``models/`` (which DVC replaces); a killed run
    resumes from its last epoch. Removed when the run ends."""
    augment: bool = True
    """Random-resized crops (``crop_scale``) for training images; false trains on the
    evaluation preprocessing, the same pixels every epoch."""
    cache_frozen_features: bool = False
    """With ``augment: false`` and ``lock_image``: the image tower's frozen layers see the same
    pixels every epoch, so they run once per image and their output is cached on disk
    (``feature_cache_dir``); training then runs only the trainable rest. Same weights as
    without the cache; checked on the first images before it is used."""
    feature_cache_dir: Path = Path(".vlclip-cache/features")
    """Frozen-layer features, one file per image, in a folder per frozen-weights hash."""

    @model_validator(mode="after")
    def _cache_needs_fixed_pixels(self) -> TrainParams:
        if self.cache_frozen_features and (self.augment or not self.lock_image):
            raise ValueError(
                "train.cache_frozen_features needs train.augment: false (random crops change "
                "the pixels every epoch) and train.lock_image: true (something must be frozen)"
            )
        return self


class EmbedParams(Section):
    batch_size: PositiveInt = 64
    device: Device = "auto"


class EvaluateParams(Section):
    ks: list[PositiveInt] = [1, 5, 10]
    ndcg_k: PositiveInt = 10
    split: Literal["train", "val", "test"] = "test"


class IndexParams(Section):
    kind: Literal["flat", "hnsw"] = "hnsw"
    hnsw_m: Annotated[int, Field(ge=4, le=256)] = 32
    top_k: PositiveInt = 10
    text_weight: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    """Item vectors fuse image and text embeddings: ``(1-w)*image + w*text``."""


class PromoteParams(Section):
    """The promotion gate: the new model replaces the champion only when it is better."""

    metric: Annotated[str, Field(pattern=r"^[a-z_]+\.[a-z0-9@_]+$")] = "image_to_catalog.mrr"
    """``task.metric`` from reports/metrics.json, higher is better."""
    min_improvement: float = 0.005
    """Absolute margin the challenger must beat the champion by (0: a tie promotes)."""


# --------------------------------------------------------------------------- monitor


class MonitorParams(Section):
    """Drift monitoring (``vlclip snapshot``, ``vlclip monitor``, the drift-monitor DAG)."""

    reference_sample: PositiveInt = 2000
    """Items (and query photos) whose features and embeddings the reference snapshot keeps."""
    current_sample: PositiveInt = 2000
    """Items (and photos) of a new catalog drop that are compared, sampled when there are more."""
    seed: int = 0
    """Seed of both samples."""
    tabular_stattest: str | None = None
    """Evidently test for each tabular column (None: Evidently picks by type and size)."""
    tabular_threshold: float | None = None
    """Its threshold (None: the test's default, p < 0.05 or distance > 0.1)."""
    drift_share: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25
    """Share of drifted columns at which a table (items or photos) counts as drifted."""
    text_stattest: str | None = None
    """Test on the text descriptors (length, word count, share of non-letters) of titles and
    descriptions; None: Evidently's choice."""
    embedding_method: Literal["model", "mmd", "ratio", "distance"] = "model"
    """Evidently's embedding drift method: ``model`` trains a classifier to tell reference from
    current (ROC AUC), ``mmd`` the maximum mean discrepancy, ``ratio`` the share of drifted
    components, ``distance`` the distance between mean embeddings."""
    embedding_threshold: Annotated[float, Field(gt=0.0)] = 0.6
    """Drift when the method's score exceeds this (ROC AUC for ``model``)."""
    embedding_plot_sample: PositiveInt = 400
    """Rows per side drawn in the report's embedding map (a t-SNE, the slowest part of a
    report: Evidently's own default is 2500); the drift score always uses the whole sample."""
    similarity_stattest: str = "wasserstein"
    """Test on the top-1 similarity of each item to the reference catalog."""
    similarity_threshold: Annotated[float, Field(gt=0.0)] = 0.2
    """Normed Wasserstein distance (in reference standard deviations) counted as drift."""
    retrain_share: Annotated[float, Field(gt=0.0, le=1.0)] = 0.6
    """Share of drifted signals at or above which the monitor DAG triggers a retrain."""
    retrain_on_drift: bool = False
    """Whether the monitor DAG triggers ``vlclip_retrain`` (off: alert only)."""
    schedule: str = "@daily"
    """Cron preset or expression of the drift-monitor DAG (it also runs on new models)."""
    alert_window_hours: NonNegativeFloat = 24.0
    """No second alert for the same drift against the same model within this window."""
    alert_retries: Annotated[int, Field(ge=0, le=10)] = 3
    alert_backoff_s: NonNegativeFloat = 2.0
    """First wait before retrying a failing alert target; doubles each try."""
    output_dir: Path = Path("monitoring")
    """Reports, the history page, the alert log and the dedup state."""


# --------------------------------------------------------------------------- ablation

class AblationVariantSpec(Section):
    """One row of the retrained ablation: its inputs, and the settings it changes. Variants
    are configuration: define new ones under ``ablation.definitions``."""

    label: Annotated[str, Field(min_length=1)]
    images: Literal["full", "crops"] = "crops"
    """full: the photos as they are; crops: grounded (query photos without their label)."""
    texts: Literal["raw", "enriched"] = "enriched"
    """raw: every catalog field verbatim; enriched: data/enriched (or ``enrich`` below)."""
    model: ModelParams | None = None
    """The starting model; None: ``ablation.model``."""
    train: dict[str, Any] = {}
    """``train`` settings this variant changes (applied after ablation.epochs/batch_size/lr)."""
    enrich: dict[str, Any] = {}
    """``enrich`` settings this variant changes: its texts are written afresh in each run."""


BUILTIN_ABLATION_VARIANTS: dict[str, AblationVariantSpec] = {
    "full_raw": AblationVariantSpec(
        images="full", texts="raw", label="fine-tuned CLIP: full photos, raw text"
    ),
    "crops_raw": AblationVariantSpec(
        images="crops", texts="raw", label="+ grounding: crops, raw text"
    ),
    "full_enriched": AblationVariantSpec(
        images="full", texts="enriched", label="+ enrichment: full photos, enriched text"
    ),
    "crops_enriched": AblationVariantSpec(
        images="crops", texts="enriched", label="VL-CLIP: crops, enriched text"
    ),
}


class AblationParams(Section):
    """The retrained ablation (``make ablation``, ``ablation/dvc.yaml``): one model per
    variant and seed. Other training settings (weight decay, warm-up, crop scale, listings) come
    from ``train``; the split and metrics from ``evaluate``."""

    variants: Annotated[list[str], Field(min_length=1)] = list(BUILTIN_ABLATION_VARIANTS)
    """Rows to run: the built-in input variants or names from ``definitions``."""
    definitions: dict[str, AblationVariantSpec] = {}
    """More variants (model, locks, text settings), e.g. configs/grocery_store.yaml."""
    seeds: Annotated[list[int], Field(min_length=1)] = [0, 1, 2]
    """At least two for an interval; each seed sets init, shuffling and augmentation."""
    model: ModelParams = ModelParams(name="vlclip-small")
    """Sized so the whole ablation fits in 30 minutes on 2 CPU cores on the demo catalog."""
    epochs: PositiveInt = 16
    batch_size: PositiveInt = 64
    lr: Annotated[float, Field(gt=0.0)] = 1e-3
    confidence: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.95
    reference: str = "full_raw"
    """Relative changes are against this variant's mean (when it ran)."""
    untrained_of: str = "crops_enriched"
    """The untrained row is this variant's starting model on its inputs (else the first run)."""
    columns: Annotated[list[str], Field(min_length=1)] = [
        "image_to_catalog.hits@5",
        "image_to_catalog.mrr",
        "text_to_image.hits@5",
        "text_to_image.mrr",
        "image_to_image.hits@5",
        "zero_shot.accuracy",
    ]
    """``task.metric`` columns of reports/ablation.md; reports/ablation.json holds them all."""

    def spec(self, name: str) -> AblationVariantSpec:
        return {**BUILTIN_ABLATION_VARIANTS, **self.definitions}[name]

    @model_validator(mode="after")
    def _known_variants(self) -> AblationParams:
        known = {**BUILTIN_ABLATION_VARIANTS, **self.definitions}
        unknown = [name for name in self.variants if name not in known]
        if unknown:
            raise ValueError(
                f"ablation.variants: unknown {unknown}; choose from {sorted(known)} or define "
                "them under ablation.definitions"
            )
        if any("." not in column for column in self.columns):
            raise ValueError("ablation.columns: each is task.metric, e.g. image_to_catalog.mrr")
        return self


class Params(Section):
    ingest: IngestParams = IngestParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    ground: GroundParams = GroundParams()
    enrich: EnrichParams = EnrichParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    embed: EmbedParams = EmbedParams()
    evaluate: EvaluateParams = EvaluateParams()
    index: IndexParams = IndexParams()
    promote: PromoteParams = PromoteParams()
    monitor: MonitorParams = MonitorParams()
    ablation: AblationParams = AblationParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def validate_params(self) -> ValidateParams:
        return self.validate_

    def ablation_variant(
        self, name: str, seed: int
    ) -> tuple[AblationVariantSpec, ModelParams, TrainParams, EnrichParams]:
        """What one ablation run starts from and trains with: ``train`` with the ablation's
        epochs, batch size, learning rate and ``seed``, then the variant's own changes."""
        settings = self.ablation
        spec = settings.spec(name)
        train = TrainParams.model_validate(
            {
                **self.train.model_dump(),
                "epochs": settings.epochs,
                "batch_size": settings.batch_size,
                "lr": settings.lr,
                "max_train_minutes": 0.0,  # a clock-dependent stop is not reproducible
                **spec.train,
                "seed": seed,
            }
        )
        enrich = EnrichParams.model_validate({**self.enrich.model_dump(), **spec.enrich})
        return spec, spec.model or settings.model, train, enrich

    @model_validator(mode="after")
    def _ablation_variants_are_valid(self) -> Params:
        for name in self.ablation.variants:
            try:
                self.ablation_variant(name, 0)
            except ValidationError as error:
                raise ValueError(f"ablation.definitions.{name}: {error}") from None
        return self


class ParamsError(ValueError):
    """params.yaml is invalid; the message lists each bad key and what it allows."""


def _format_errors(error: ValidationError, source: str) -> str:
    lines = [f"{source} is invalid:"]
    for item in error.errors():
        location = [
            str(part) for part in item["loc"] if part not in ("synthetic", "grocery_store", "table")
        ]
        key = ".".join(location) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see params.yaml in the repository)"
        elif item["type"] == "literal_error":
            message = f"{message} (got {item.get('input')!r})"
        lines.append(f"  - {key}: {message}")
    return "\n".join(lines)


def parse_params(raw: dict | None, source: str = "params") -> Params:
    try:
        return Params.model_validate(raw or {})
    except ValidationError as error:
        raise ParamsError(_format_errors(error, source)) from None


def load_params(path: Path | str = DEFAULT_PARAMS) -> Params:
    """Read and validate params.yaml. A missing file means all defaults."""
    path = Path(path)
    if not path.exists():
        return Params()
    with path.open() as handle:
        try:
            raw = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise ParamsError(f"{path} is not valid YAML: {error}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw, str(path))
