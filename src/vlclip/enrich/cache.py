"""Reply cache of the enrichment agent: one SQLite file outside the stage's output folder.

Every API reply is stored under a key that hashes everything that decides it (model, prompt
version, fingerprint of the fixed instructions, step, the step's own inputs: item content,
draft, problems, image bytes). A rerun over an unchanged catalog replays every step from here
and makes no API call; an item whose content changed misses only its own keys; a new
``enrich.prompt_version`` misses every key of that version and leaves the old entries in place,
so switching back is free. Malformed replies are cached too, so a rerun takes the same path;
transport failures (429/5xx after all retries) are not, so the next run tries them again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

CACHE_FILE = "replies.sqlite"
KEY_CHARS = 40
"""Hex characters of a key; also the batch ``custom_id`` (the API allows up to 64)."""


def request_key(*parts: Any) -> str:
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:KEY_CHARS]


class ReplyCache:
    """Key -> normalised reply (content blocks, stop reason, token usage)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / CACHE_FILE
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS replies ("
            " key TEXT PRIMARY KEY, reply TEXT NOT NULL, model TEXT, prompt_version TEXT,"
            " step TEXT, item_id TEXT, created REAL NOT NULL)"
        )
        self._db.commit()

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, reply: dict[str, Any], meta: dict[str, str] | None = None) -> None:
        """Store one reply at once (a crash later in the run keeps what was paid for)."""
        meta = meta or {}
        self._db.execute(
            "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                json.dumps(reply, sort_keys=True),
                meta.get("model"),
                meta.get("prompt_version"),
                meta.get("step"),
                meta.get("item_id"),
                time.time(),
            ),
        )
        self._db.commit()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        self._db.close()
