"""Operator accounts (tài khoản cán bộ điều hành), password hashes and signed session cookies.

The users file is YAML (or JSON) kept outside the repository::

    users:
      - username: lan.nguyen
        password_hash: "scrypt$16384$8$1$<salt b64>$<hash b64>"   # lienthong dashboard users add
        role: operator            # admin | operator | viewer
        agency: "000.00.20.H99"   # optional: sees only this agency's subtree
        may_see_personal_data: false
        may_correct: false        # may void or correct events (admins always may)

Passwords are hashed with the standard library's scrypt; sessions are an HMAC-SHA256-signed
cookie naming the user and an expiry, so the server keeps no session table.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

ROLES = ("admin", "operator", "viewer")
"""admin and operator may re-send dead letters; a viewer only looks. Voiding or correcting an
event changes a legal record: admins may, an operator only with ``may_correct: true``, a viewer
never."""
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class UsersFileError(ValueError):
    """A users file that cannot be used (the entry and field are named)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R,
                  p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(_unb64(digest)), maxmem=2**27)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


@dataclass(frozen=True)
class Operator:
    """A person who may sign in to the dashboard."""

    username: str
    password_hash: str
    role: str = "viewer"
    agency: str | None = None          # None: the whole province
    may_see_personal_data: bool = False
    may_correct: bool = False

    @property
    def may_resend(self) -> bool:
        return self.role in ("admin", "operator")

    @property
    def may_void(self) -> bool:
        """May void or correct events (hủy, đính chính sự kiện) of dossiers it can see."""
        return self.role == "admin" or (self.role == "operator" and self.may_correct)


def parse_users(data: Any, source: str = "<memory>") -> dict[str, Operator]:
    if not isinstance(data, Mapping) or not isinstance(data.get("users"), list):
        raise UsersFileError(f"{source}: expected a mapping with a 'users' list")
    users: dict[str, Operator] = {}
    for i, entry in enumerate(data["users"]):
        where = f"{source}: users[{i}]"
        if not isinstance(entry, Mapping):
            raise UsersFileError(f"{where}: expected a mapping")
        unknown = set(entry) - {"username", "password_hash", "role", "agency",
                                "may_see_personal_data", "may_correct"}
        if unknown:
            raise UsersFileError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        name = entry.get("username")
        if not isinstance(name, str) or not USERNAME.match(name):
            raise UsersFileError(f"{where}.username: letters, digits, . _ @ - (got {name!r})")
        pw = entry.get("password_hash")
        if not isinstance(pw, str) or not pw.startswith("scrypt$") or pw.count("$") != 5:
            raise UsersFileError(f"{where}.password_hash: expected scrypt$N$r$p$salt$hash")
        role = entry.get("role", "viewer")
        if role not in ROLES:
            raise UsersFileError(f"{where}.role: one of {', '.join(ROLES)} (got {role!r})")
        agency = entry.get("agency")
        if agency is not None and not isinstance(agency, str):
            raise UsersFileError(f"{where}.agency: an agency code or null")
        personal = entry.get("may_see_personal_data", False)
        if not isinstance(personal, bool):
            raise UsersFileError(f"{where}.may_see_personal_data: true or false")
        correct = entry.get("may_correct", False)
        if not isinstance(correct, bool):
            raise UsersFileError(f"{where}.may_correct: true or false")
        if correct and role == "viewer":
            raise UsersFileError(f"{where}.may_correct: a viewer may not correct events; "
                                 "make the account an operator")
        if name in users:
            raise UsersFileError(f"{where}.username: {name!r} listed twice")
        users[name] = Operator(name, pw, role, agency, personal, correct)
    return users


def load_users(path: str | Path) -> dict[str, Operator]:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsersFileError(f"{p}: {exc}") from exc
    return parse_users(data, str(p))


def save_users(path: str | Path, users: Iterable[Operator]) -> None:
    """Write the users file atomically, readable by its owner only."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    body = {"users": [{k: v for k, v in asdict(u).items()
                       if v is not None and not (k == "may_correct" and v is False)}
                      for u in users]}
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        yaml.safe_dump(body, f, allow_unicode=True, sort_keys=False)
    os.replace(tmp, p)


class SessionSigner:
    """Signed, expiring session tokens: base64(JSON {u, exp}) + "." + HMAC-SHA256."""

    def __init__(self, secret: bytes, ttl_seconds: int = 12 * 3600) -> None:
        if len(secret) < 16:
            raise ValueError("the session secret must hold at least 16 bytes")
        self._secret = secret
        self.ttl = ttl_seconds

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def issue(self, username: str, now: float | None = None) -> str:
        exp = int((time.time() if now is None else now) + self.ttl)
        payload = _b64(json.dumps({"u": username, "exp": exp, "n": secrets.token_hex(4)},
                                  separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str | None, now: float | None = None) -> str | None:
        """The username in a valid, unexpired token; None otherwise."""
        if not token or token.count(".") != 1:
            return None
        payload, sig = token.split(".")
        if not hmac.compare_digest(sig, self._sign(payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("u"), str):
            return None
        if int(data.get("exp", 0)) < (time.time() if now is None else now):
            return None
        return str(data["u"])

    def csrf(self, token: str) -> str:
        """A form token bound to one session (re-send buttons post it back)."""
        return self._sign("csrf:" + token)[:32]
