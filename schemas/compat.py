"""Avro schema resolution rules, as a check: can a reader schema read what a writer wrote?

Implements "Schema Resolution" of the Avro specification on fully expanded schemas (no named
references): same primitive types or an allowed promotion (int -> long, float, double; long
-> float, double; float -> double; string <-> bytes); records matched by name or alias, every
reader field either present in the writer or given a (valid) default; enums matched by name,
every writer symbol known to the reader unless the reader has an enum default; arrays, maps and
fixed recursively; every branch of a writer union readable by the reader.

FULL_TRANSITIVE compatibility of a list of versions: every version reads every other one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastavro.schema import expand_schema

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_PROMOTIONS = {("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"),
               ("long", "double"), ("float", "double"), ("string", "bytes"),
               ("bytes", "string")}


def _kind(t: Any) -> str:
    if isinstance(t, list):
        return "union"
    if isinstance(t, dict):
        return str(t["type"])
    return str(t)


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _names_match(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
    aliases = {_short(a) for a in reader.get("aliases", [])}
    return _short(reader["name"]) == _short(writer["name"]) or _short(writer["name"]) in aliases


def _default_ok(t: Any, value: Any) -> bool:
    kind = _kind(t)
    if kind == "union":
        return _default_ok(t[0], value)  # a union's default belongs to its first branch
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("int", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "double"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind in ("string", "bytes", "fixed"):
        return isinstance(value, str)
    if kind == "enum":
        return value in t["symbols"]
    if kind == "array":
        return isinstance(value, list) and all(_default_ok(t["items"], v) for v in value)
    if kind == "map":
        return isinstance(value, dict) and all(_default_ok(t["values"], v)
                                               for v in value.values())
    if kind == "record":
        return isinstance(value, dict) and all(
            (f["name"] in value and _default_ok(f["type"], value[f["name"]]))
            or (f["name"] not in value and "default" in f)
            for f in t["fields"])
    return False


def read_problems(reader: Any, writer: Any, path: str = "") -> list[str]:
    """Why ``reader`` cannot read data written with ``writer`` (empty when it can)."""
    where = path or "<root>"
    rk, wk = _kind(reader), _kind(writer)
    if wk == "union":
        out: list[str] = []
        for branch in writer:
            out += [f"{p} (writer union branch {_kind(branch)})"
                    for p in read_problems(reader, branch, path)]
        return out
    if rk == "union":
        if any(not read_problems(branch, writer, path) for branch in reader):
            return []
        return [f"{where}: writer type {_label(writer)} matches no branch of the reader union"]
    if rk in _PRIMITIVES or wk in _PRIMITIVES:
        if rk == wk or (wk, rk) in _PROMOTIONS:
            return []
        return [f"{where}: writer {_label(writer)} cannot be read as {_label(reader)}"]
    if rk != wk:
        return [f"{where}: writer {wk} cannot be read as {rk}"]
    if rk == "record":
        return _record_problems(reader, writer, path)
    if rk == "enum":
        if not _names_match(reader, writer):
            return [f"{where}: enum {writer['name']} is not {reader['name']}"]
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and "default" not in reader:
            return [f"{where}: reader enum {reader['name']} lacks symbols {missing}"]
        return []
    if rk == "array":
        return read_problems(reader["items"], writer["items"], path + "[]")
    if rk == "map":
        return read_problems(reader["values"], writer["values"], path + "{}")
    if rk == "fixed":
        if not _names_match(reader, writer) or reader["size"] != writer["size"]:
            return [f"{where}: fixed {writer['name']} is not {reader['name']} of the same size"]
        return []
    return [f"{where}: unknown type {rk}"]


def _record_problems(reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
    where = path or "<root>"
    if not _names_match(reader, writer):
        return [f"{where}: record {writer['name']} is not {reader['name']}"]
    written = {f["name"]: f for f in writer["fields"]}
    out: list[str] = []
    for f in reader["fields"]:
        sub = f"{path}.{f['name']}" if path else f["name"]
        source = written.get(f["name"]) or next(
            (written[a] for a in f.get("aliases", []) if a in written), None)
        if source is not None:
            out += read_problems(f["type"], source["type"], sub)
        elif "default" not in f:
            out.append(f"{sub}: field missing in the writer and has no default in the reader")
        elif not _default_ok(f["type"], f["default"]):
            out.append(f"{sub}: default {f['default']!r} does not fit its type")
    return out


def _label(t: Any) -> str:
    return _kind(t) if not isinstance(t, dict) or "name" not in t else f"{t['type']} {t['name']}"


def full_transitive_problems(schemas: Sequence[dict[str, Any]]) -> list[str]:
    """Every problem between every ordered pair of versions (v1 reading v2, v2 reading v1…)."""
    expanded = [expand_schema(s) for s in schemas]
    out: list[str] = []
    for i, writer in enumerate(expanded):
        for j, reader in enumerate(expanded):
            if i != j:
                out += [f"v{j + 1} reading v{i + 1}: {p}"
                        for p in read_problems(reader, writer)]
    return out
