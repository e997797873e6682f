"""Product text enrichment (VL-CLIP step 2): backends behind one stage function."""

from vlclip.artifacts import TEXTS_FILE, load_texts
from vlclip.enrich.stage import EnrichResult, enrich, resolve_backend

__all__ = ["TEXTS_FILE", "EnrichResult", "enrich", "load_texts", "resolve_backend"]
