"""vlclip: VL-CLIP (grounding, LLM enrichment, contrastive fine-tuning) as an MLOps workflow."""

__version__ = "0.1.0"
