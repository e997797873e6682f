"""Product text enrichment (VL-CLIP step 2): backends behind one stage function."""

from vlclip.enrich.stage import TEXTS_FILE, EnrichResult, enrich, load_texts, resolve_backend

__all__ = ["TEXTS_FILE", "EnrichResult", "enrich", "load_texts", "resolve_backend"]
