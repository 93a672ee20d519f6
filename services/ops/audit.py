"""Audit log (nhật ký kiểm tra): logins, views of personal data and re-sends, one JSON object a
line, appended and flushed as each happens; nothing rewrites it. With a ``sink`` each line is
also handed on (the dashboard publishes it to ``operator.actions``, which the audit chain
service chains into the tamper-evident ``audit.log``)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class AuditLog:
    """Append-only JSONL. Without a path the entries are kept in memory (tests, demo)."""

    def __init__(self, path: str | Path | None,
                 sink: Callable[[bytes, str | None], None] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.sink = sink  # (line bytes, user): e.g. a Kafka producer's send
        self.entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, action: str, user: str | None, **detail: Any) -> dict[str, Any]:
        entry = {"at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                 "action": action, "user": user, **detail}
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)
        with self._lock:
            self.entries.append(entry)
            if self.path is not None:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, (line + "\n").encode("utf-8"))
                    os.fsync(fd)
                finally:
                    os.close(fd)
            if self.sink is not None:
                self.sink(line.encode("utf-8"), user)
        return entry
