"""Catalog schema, sources (synthetic demo, GroceryStore, table files) and the ingest stage."""

from vlclip.catalog.schema import Catalog, Manifest, load_catalog

__all__ = ["Catalog", "Manifest", "load_catalog"]
