"""Visual grounding: find the product in each photo and crop to it (VL-CLIP step 1)."""

from vlclip.artifacts import BOXES_FILE, load_crop_paths
from vlclip.ground.detectors import DETECTORS, Detection, Detector, make_detector
from vlclip.ground.report import grounding_metrics, write_grounding_report
from vlclip.ground.stage import ground

__all__ = [
    "BOXES_FILE",
    "DETECTORS",
    "Detection",
    "Detector",
    "ground",
    "grounding_metrics",
    "load_crop_paths",
    "make_detector",
    "write_grounding_report",
]
