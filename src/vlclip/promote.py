"""The promotion gate: a newly trained model replaces the champion only if it is better.

The champion lives in ``champion/`` (a DVC output: versioned, cached, pushed with the rest):
``models/`` (weights and card), ``index/`` (its faiss index), ``metrics.json`` and
``promotion.json``. ``vlclip recommend`` and ``vlclip search`` serve from it when it exists.

Both models are scored on the *same* evaluation set: the champion is re-evaluated on the
current catalog, crops and texts every time, so a catalog that changed since the champion was
promoted cannot make an old score look better or worse than it is. The challenger wins when
its headline metric (``promote.metric``, e.g. ``image_to_catalog.mrr``) beats the champion's by
at least ``promote.min_improvement``; the first model is always promoted.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlclip.config import PromoteParams
from vlclip.io import atomic_dir, write_json

log = logging.getLogger(__name__)

PROMOTED = "promoted"
KEPT = "kept"
FIRST = "first model promoted"


@dataclass(frozen=True)
class Decision:
    """What the gate decided and why; written to ``reports/promotion.json``."""

    decision: str
    metric: str
    min_improvement: float
    challenger: float
    champion: float | None
    reason: str

    @property
    def promoted(self) -> bool:
        return self.decision != KEPT

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "promoted": self.promoted}


def headline(metrics: dict[str, dict[str, float]], metric: str) -> float:
    """``task.metric`` from an ``evaluate_embeddings`` result, with a clear error if absent."""
    task, _, name = metric.partition(".")
    try:
        return float(metrics[task][name])
    except KeyError:
        available = sorted(f"{t}.{m}" for t, values in metrics.items() for m in values)
        raise ValueError(
            f"promote.metric={metric!r} is not among the evaluated metrics: {', '.join(available)}"
        ) from None


def decide(challenger: float, champion: float | None, params: PromoteParams) -> Decision:
    """Pure decision rule: promote when there is no champion or the margin is met."""
    if champion is None:
        return Decision(FIRST, params.metric, params.min_improvement, challenger, None,
                        "no champion yet")
    gain = challenger - champion
    if gain >= params.min_improvement:
        reason = f"{params.metric} {challenger:.4f} beats {champion:.4f} by {gain:+.4f}"
        decision = PROMOTED
    else:
        reason = (
            f"{params.metric} {challenger:.4f} vs champion {champion:.4f} ({gain:+.4f}); "
            f"needs at least {params.min_improvement:+.4f}"
        )
        decision = KEPT
    return Decision(decision, params.metric, params.min_improvement, challenger, champion, reason)


def install_champion(
    champion_dir: Path,
    models_dir: Path,
    index_dir: Path,
    metrics: dict,
    decision: Decision,
    reference_dir: Path | None = None,
) -> None:
    """Replace the champion folder in one rename: a crash leaves the old champion whole.

    The reference snapshot (what the model was trained on, for the drift monitor) travels with
    the model, so the monitor always compares against the model that serves.
    """
    with atomic_dir(champion_dir) as staging:
        shutil.copytree(models_dir, staging / "models")
        shutil.copytree(index_dir, staging / "index")
        if reference_dir is not None and Path(reference_dir).is_dir():
            shutil.copytree(reference_dir, staging / "reference")
        write_json(staging / "metrics.json", metrics)
        write_json(staging / "promotion.json", decision.as_dict())
