"""Visual grounding: find the product in each photo and crop to it (VL-CLIP step 1)."""

from vlclip.grounding.stage import BOXES_FILE, ground, load_crop_paths

__all__ = ["BOXES_FILE", "ground", "load_crop_paths"]
