"""Visual grounding: find the product in each photo and crop to it (VL-CLIP step 1)."""

from vlclip.grounding.detectors import DETECTORS, Detection, Detector, make_detector
from vlclip.grounding.report import grounding_metrics, write_grounding_report
from vlclip.grounding.stage import BOXES_FILE, ground, load_crop_paths

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
