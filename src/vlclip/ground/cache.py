"""Detections keyed by content, appended as they finish, so unchanged photos are never detected
twice and a killed run resumes where it stopped.

One JSON-lines file per detector configuration (``<name>-<fingerprint>.jsonl``) in
``ground.cache_dir``, outside the stage's output folder: the output is written to a staging
folder and renamed into place, and a run that dies never gets that far. Each line is
``{"key": ..., "box": [x0, y0, x1, y1] | null, "score": ..., "phrase": ...}``; the key hashes
the image bytes, the prompt and whatever else the detection depends on (the silhouette
exemplars of the weight-free detector). A line cut short by a kill is ignored when the file is
read back.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from vlclip.ground.detectors import Detection
from vlclip.io import atomic_write_text

log = logging.getLogger(__name__)


class DetectionCache:
    """Content-keyed detections of one detector configuration (None: nothing was found)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, Detection | None] = {}
        if path is not None and path.is_file():
            self.entries = self._read(path)

    @staticmethod
    def _read(path: Path) -> dict[str, Detection | None]:
        entries: dict[str, Detection | None] = {}
        torn = 0
        with path.open() as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                    box = entry["box"]
                    entries[entry["key"]] = (
                        None
                        if box is None
                        else Detection(tuple(box), float(entry["score"]), entry.get("phrase"))
                    )
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    torn += 1
        if torn:
            log.warning("%s: skipped %d unreadable lines (an interrupted write)", path, torn)
        return entries

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> Detection | None:
        return self.entries.get(key)

    def add(self, found: dict[str, Detection | None]) -> None:
        """Record new detections and make them durable before the next batch starts.

        Values are rounded as they are stored, so a run reading them back from the file gives
        exactly the boxes of the run that detected them.
        """
        found = {key: _rounded(detection) for key, detection in found.items()}
        self.entries.update(found)
        if self.path is None or not found:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write("".join(_line(key, detection) for key, detection in found.items()))
            handle.flush()
            os.fsync(handle.fileno())

    def compact(self, keep: set[str]) -> None:
        """Rewrite the file with only ``keep``: entries of photos that left the catalog go."""
        self.entries = {key: value for key, value in self.entries.items() if key in keep}
        if self.path is not None:
            atomic_write_text(
                self.path, "".join(_line(key, value) for key, value in self.entries.items())
            )


BOX_DECIMALS = 3
SCORE_DECIMALS = 6


def _rounded(detection: Detection | None) -> Detection | None:
    if detection is None:
        return None
    box = tuple(round(float(value), BOX_DECIMALS) for value in detection.box)
    return Detection(box, round(float(detection.score), SCORE_DECIMALS), detection.phrase)


def _line(key: str, detection: Detection | None) -> str:
    if detection is None:
        return json.dumps({"key": key, "box": None, "score": 0.0}) + "\n"
    entry = {
        "key": key,
        "box": list(detection.box),
        "score": detection.score,
        "phrase": detection.phrase,
    }
    return json.dumps(entry) + "\n"
