"""The pull connector's position in one agency's change feed, kept in a small file.

One file per agency, ``<dir>/<agency>.cursor.json``::

    {"agency": "000.00.15.H99", "cursor": 120, "updated_at": "2026-11-25T09:15:00+00:00"}

A write is atomic and durable: the new content goes to a temporary file that is fsync'd, then
renamed over the old one, then the directory is fsync'd. After a crash the file holds either
the old cursor or the new one, never a torn mix. No file means "from the beginning".
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class CursorError(ValueError):
    """The cursor file exists but cannot be read; refusing to guess where to restart."""


class CursorFile:
    def __init__(self, directory: str | Path, agency: str) -> None:
        self.directory = Path(directory)
        self.agency = agency
        self.path = self.directory / f"{agency}.cursor.json"

    def load(self) -> Any:
        """The saved cursor, or None when nothing was ever committed."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CursorError(f"{self.path}: not JSON ({exc}); fix or remove it") from exc
        if not isinstance(data, dict) or "cursor" not in data:
            raise CursorError(f"{self.path}: no cursor in it; fix or remove it")
        if data.get("agency") != self.agency:
            raise CursorError(f"{self.path}: belongs to {data.get('agency')!r}, "
                              f"not {self.agency!r}")
        return data["cursor"]

    def save(self, cursor: Any) -> None:
        """Replace the saved cursor; returns only once the new one is on disk."""
        self.directory.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"agency": self.agency, "cursor": cursor,
                           "updated_at": datetime.now(UTC).isoformat(timespec="seconds")},
                          ensure_ascii=False)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, body.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a power cut
        finally:
            os.close(dir_fd)
