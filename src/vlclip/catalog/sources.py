"""What a catalog source hands to ingest, before images are checked."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class SourceTables:
    """Raw tables from one source.

    ``items`` has the columns of ``schema.ITEM_SOURCE_COLUMNS`` (plus the ``BOX_COLUMNS`` where
    the source knows the product box), ``queries`` those of ``schema.QUERY_SOURCE_COLUMNS``.
    ``image_root`` is where ``image_path`` values are resolved: absolute, or relative to the
    catalog folder being written (the synthetic source renders its images into that folder).
    """

    items: pd.DataFrame
    queries: pd.DataFrame
    image_root: str
    product_types: list[str] = field(default_factory=list)
