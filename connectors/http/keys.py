"""Per-agency signing keys (khóa ký của từng cơ quan), loaded from a keys file.

The file (JSON or YAML; never kept in the repository) maps each agency code to its keys::

    000.00.15.H99:
      - {key_id: "2026-06", secret: "…32+ random characters…"}
      - {key_id: "2025-12", secret: "…", revoked: true}

During a rotation an agency holds several live keys and a request signed with any of them is
valid; a revoked key stays listed so a request signed with it is refused with a precise reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lienthong.services.domain.identifiers import agency_code_problem

MIN_SECRET_LENGTH = 16


class KeysFileError(ValueError):
    """The keys file cannot be used; the message names the agency and entry."""


@dataclass(frozen=True)
class AgencyKey:
    key_id: str
    secret: bytes
    revoked: bool = False

    def __repr__(self) -> str:  # never print a secret
        return f"AgencyKey(key_id={self.key_id!r}, revoked={self.revoked})"


class KeyRing:
    """Keys by agency; immutable once built (a reload builds a new ring)."""

    def __init__(self, keys: Mapping[str, Iterable[AgencyKey]]) -> None:
        self._keys: dict[str, tuple[AgencyKey, ...]] = {a: tuple(k) for a, k in keys.items()}

    def keys_of(self, agency: str) -> tuple[AgencyKey, ...]:
        return self._keys.get(agency, ())

    def live_keys(self, agency: str) -> tuple[AgencyKey, ...]:
        return tuple(k for k in self.keys_of(agency) if not k.revoked)

    def revoked_keys(self, agency: str) -> tuple[AgencyKey, ...]:
        return tuple(k for k in self.keys_of(agency) if k.revoked)

    def agencies(self) -> list[str]:
        return sorted(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    @classmethod
    def from_mapping(cls, data: Any, source: str = "keys") -> KeyRing:
        if not isinstance(data, Mapping):
            raise KeysFileError(f"{source}: expected a mapping of agency code -> list of keys")
        ring: dict[str, list[AgencyKey]] = {}
        for agency, entries in data.items():
            where = f"{source}: agency {agency!r}"
            problem = agency_code_problem(agency)
            if problem:
                raise KeysFileError(f"{where}: {problem}")
            if not isinstance(entries, list) or not entries:
                raise KeysFileError(f"{where}: expected a non-empty list of keys")
            seen: set[str] = set()
            keys: list[AgencyKey] = []
            for i, entry in enumerate(entries):
                at = f"{where}, key #{i}"
                if not isinstance(entry, Mapping):
                    raise KeysFileError(f"{at}: expected {{key_id, secret, revoked?}}")
                key_id, secret = entry.get("key_id"), entry.get("secret")
                revoked = entry.get("revoked", False)
                if not isinstance(key_id, str) or not key_id:
                    raise KeysFileError(f"{at}: key_id must be a non-empty string")
                if key_id in seen:
                    raise KeysFileError(f"{at}: key_id {key_id!r} appears twice")
                if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
                    raise KeysFileError(
                        f"{at} ({key_id}): secret must be a string of at least "
                        f"{MIN_SECRET_LENGTH} characters"
                    )
                if not isinstance(revoked, bool):
                    raise KeysFileError(f"{at} ({key_id}): revoked must be true or false")
                seen.add(key_id)
                keys.append(AgencyKey(key_id, secret.encode("utf-8"), revoked))
            ring[agency] = keys
        return cls(ring)


def load_keyring(path: str | os.PathLike[str]) -> KeyRing:
    """Read a keys file; JSON is tried first, then YAML (JSON is valid YAML too)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeysFileError(f"{p}: cannot read keys file ({exc.strerror})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise KeysFileError(f"{p}: neither JSON nor YAML ({exc})") from exc
    return KeyRing.from_mapping(data, source=str(p))


class KeyRingFile:
    """A keys file that is re-read when it changes, so a revocation applies without a restart."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp = self._stat()
        self.ring = load_keyring(self.path)

    def _stat(self) -> tuple[int, int]:
        st = self.path.stat()
        return (st.st_mtime_ns, st.st_size)

    def reload_if_changed(self) -> bool:
        """Re-read the file if it changed; a broken new file keeps the old ring and raises."""
        try:
            stamp = self._stat()
        except OSError:
            return False
        if stamp == self._stamp:
            return False
        ring = load_keyring(self.path)
        self.ring, self._stamp = ring, stamp
        return True
