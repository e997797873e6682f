"""Product text enrichment (VL-CLIP step 2): backends behind one stage function."""

from vlclip.enrich.stage import TEXTS_FILE, enrich, load_texts

__all__ = ["TEXTS_FILE", "enrich", "load_texts"]
