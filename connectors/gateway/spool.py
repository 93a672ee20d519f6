"""Durable local spool (hàng đợi cục bộ) for accepted events while Kafka is unreachable.

One append-only file, ``spool.log``, of records::

    MAGIC "LTSP" | length u32 | crc32(length || payload) u32 | payload
    payload = key length u16 | key (dossier code, UTF-8) | value (codec bytes)

and ``spool.cursor``: the offset of the first record Kafka has not acknowledged (replaced
atomically). An append is fsync'd before it returns, so whatever the gateway answered 202 for
is on disk. The cursor moves only after Kafka acknowledged; once everything is forwarded the
file is truncated (truncate first, then the cursor: a cursor beyond the end after a crash means
"empty").

Recovery after a crash (kill -9 or power loss): the tail written by an append that never
completed its fsync fails its CRC or is cut short; it was never acknowledged, so it is dropped.
A damaged record with valid records after it (media damage, not a torn append) is skipped by
resynchronising on the next valid header, and its bytes are copied to ``spool.damaged-*`` for
an operator; nothing acknowledged is silently discarded.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = b"LTSP"
_HEADER = struct.Struct(">4sII")
_KEYLEN = struct.Struct(">H")
HEADER_SIZE = _HEADER.size
MAX_RECORD = 16 * 1024 * 1024


class SpoolFull(RuntimeError):
    """The spool reached its size limit; the caller must refuse (503) rather than lose."""


@dataclass(frozen=True)
class SpooledRecord:
    offset: int
    end: int
    key: bytes
    value: bytes


def encode_record(key: bytes, value: bytes) -> bytes:
    payload = _KEYLEN.pack(len(key)) + key + value
    length = struct.pack(">I", len(payload))
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(length + payload)) + payload


def _record_at(buf: bytes | memoryview, pos: int) -> SpooledRecord | None:
    """The valid record starting at ``pos``, or None (short, bad magic, bad length or CRC)."""
    if len(buf) - pos < HEADER_SIZE:
        return None
    magic, length, crc = _HEADER.unpack_from(buf, pos)
    if magic != MAGIC or length < _KEYLEN.size or length > MAX_RECORD:
        return None
    end = pos + HEADER_SIZE + length
    if end > len(buf):
        return None
    payload = bytes(buf[pos + HEADER_SIZE:end])
    if zlib.crc32(struct.pack(">I", length) + payload) != crc:
        return None
    (klen,) = _KEYLEN.unpack_from(payload, 0)
    if _KEYLEN.size + klen > length:
        return None
    key = payload[_KEYLEN.size:_KEYLEN.size + klen]
    return SpooledRecord(pos, end, key, payload[_KEYLEN.size + klen:])


def _resync(buf: bytes, pos: int) -> int | None:
    """Offset of the next valid record after a damaged one at ``pos``, or None."""
    at = buf.find(MAGIC, pos + 1)
    while at != -1:
        if _record_at(buf, at) is not None:
            return at
        at = buf.find(MAGIC, at + 1)
    return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The spool of one gateway process. Not thread-safe: the caller serialises access."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = 1 << 30) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "spool.log"
        self.cursor_path = self.dir / "spool.cursor"
        self.max_bytes = max_bytes
        self.dropped_torn_bytes = 0
        self.damaged_ranges: list[tuple[int, int]] = []
        self._fd = os.open(self.log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._cursor = self._read_cursor()
        self._end = self._recover()
        self._count = sum(1 for _ in self._scan(self._cursor, self._end))

    # -- state ---------------------------------------------------------------------------
    @property
    def cursor(self) -> int:
        return self._cursor

    @property
    def end(self) -> int:
        return self._end

    def pending(self) -> int:
        """Records appended and not yet acknowledged by Kafka."""
        return self._count

    def is_empty(self) -> bool:
        return self._cursor >= self._end

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- recovery ------------------------------------------------------------------------
    def _read_cursor(self) -> int:
        try:
            raw = self.cursor_path.read_bytes()
        except FileNotFoundError:
            return 0
        if len(raw) != 12 or zlib.crc32(raw[:8]) != struct.unpack(">I", raw[8:])[0]:
            # An unreadable cursor replays from the start: duplicates, never loss.
            log.error("spool cursor %s unreadable; replaying the whole spool", self.cursor_path)
            return 0
        return int(struct.unpack(">Q", raw[:8])[0])

    def _write_cursor(self, offset: int) -> None:
        body = struct.pack(">Q", offset)
        tmp = self.cursor_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body + struct.pack(">I", zlib.crc32(body)))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.cursor_path)
        _fsync_dir(self.dir)
        self._cursor = offset

    def _recover(self) -> int:
        size = os.fstat(self._fd).st_size
        if self._cursor > size:
            # Crash between truncating the drained file and resetting the cursor.
            self._write_cursor(0)
        buf = self._read(self._cursor, size)
        pos, last_good = 0, 0
        while pos < len(buf):
            rec = _record_at(buf, pos)
            if rec is not None:
                pos = last_good = rec.end
                continue
            nxt = _resync(buf, pos)
            if nxt is None:
                break  # torn tail
            self._set_aside(buf[pos:nxt], self._cursor + pos)
            pos = nxt
        valid_end = self._cursor + last_good
        if valid_end < size:
            self.dropped_torn_bytes = size - valid_end
            log.warning("spool: dropping a torn last append of %d bytes at offset %d "
                        "(never acknowledged)", self.dropped_torn_bytes, valid_end)
            os.ftruncate(self._fd, valid_end)
            os.fsync(self._fd)
        return valid_end

    def _set_aside(self, data: bytes, offset: int) -> None:
        self.damaged_ranges.append((offset, offset + len(data)))
        target = self.dir / f"spool.damaged-{int(time.time())}-{offset}"
        target.write_bytes(data)
        log.error("spool: %d damaged bytes at offset %d skipped and kept in %s",
                  len(data), offset, target)

    # -- reading -------------------------------------------------------------------------
    def _read(self, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        return os.pread(self._fd, end - start, start)

    def _scan(self, start: int, end: int) -> Iterator[SpooledRecord]:
        buf = self._read(start, end)
        pos = 0
        while pos < len(buf):
            rec = _record_at(buf, pos)
            if rec is None:
                nxt = _resync(buf, pos)
                if nxt is None:
                    return
                pos = nxt
                continue
            yield SpooledRecord(start + rec.offset, start + rec.end, rec.key, rec.value)
            pos = rec.end

    def read(self, max_records: int = 500, max_bytes: int = 4 << 20) -> list[SpooledRecord]:
        """The oldest unacknowledged records, in the order they were appended."""
        out: list[SpooledRecord] = []
        for window in (max_bytes, MAX_RECORD + HEADER_SIZE):  # widen once for a huge record
            for rec in self._scan(self._cursor, min(self._end, self._cursor + window)):
                out.append(rec)
                if len(out) >= max_records:
                    break
            if out:
                break
        return out

    # -- writing -------------------------------------------------------------------------
    def append(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Append records and fsync; when this returns they survive a crash."""
        if not records:
            return
        data = b"".join(encode_record(k, v) for k, v in records)
        if self._end - self._cursor + len(data) > self.max_bytes:
            raise SpoolFull(f"spool holds {self._end - self._cursor} bytes; "
                            f"limit {self.max_bytes}")
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
            os.fsync(self._fd)
        except OSError:
            # Leave no half record where the next append would land.
            os.ftruncate(self._fd, self._end)
            raise
        self._end += len(data)
        self._count += len(records)

    def acknowledge(self, upto: int, count: int) -> None:
        """Kafka acknowledged every record before offset ``upto`` (``count`` of them)."""
        if upto <= self._cursor:
            return
        if upto >= self._end:
            # Drained: truncate first, then reset the cursor (see the module docstring).
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
            self._end = 0
            self._count = 0
            self._write_cursor(0)
            return
        self._write_cursor(upto)
        self._count = max(0, self._count - count)
