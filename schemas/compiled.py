"""Straight-line Avro binary encoders and decoders generated from one schema.

fastavro interprets a schema on every datum: per field it dispatches on the type name, and per
union it tries each branch; for a dossier event that costs more than a ``json`` round trip.
This module turns a schema into Python source once, at import, with one line per field, and
``exec``s it. The bytes are plain Avro binary (the Avro specification, "Binary Encoding") and
the tests hold them byte-equal to fastavro's, which stays the reference implementation and
resolves older writer versions.

A reader returns the position where it stopped; a caller must check it equals the length of
the bytes (a truncated string is sliced short and shows up only there). Two options shape the
Python side, because canonical JSON is not the Avro record tree:

- ``flat``: ``{union_field: selector_field}``. The union's branches are records named after the
  selector's enum symbols (``Received`` for ``received``, ``PostalUpdate`` for
  ``postal_update``); their fields are written from, and read into, the parent dict itself.
- ``omit_null``: a null optional field is left out of the decoded dict (absent and null are the
  same on the way in).

Supported types: null, boolean, int, long, double, float, bytes, string, enum, record, unions
of null with one type, and ``flat`` unions of records. Anything else raises ``Unsupported`` and
the caller keeps fastavro for that schema.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_SMALL = 4096  # precomputed varints for 0 .. _SMALL-1


class Unsupported(Exception):
    """The schema uses a type this generator does not compile."""


def zigzag_varint(n: int) -> bytes:
    """Avro ``long`` encoding: zig-zag, then base-128 varint, least significant group first."""
    if not -(1 << 63) <= n < (1 << 63):
        raise ValueError(f"{n} does not fit an Avro long")
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


ZZ: tuple[bytes, ...] = tuple(zigzag_varint(i) for i in range(_SMALL))


def read_long(b: bytes, p: int) -> tuple[int, int]:
    """Decode an Avro long at ``p``; returns (value, next position)."""
    z = 0
    shift = 0
    while True:
        byte = b[p]
        p += 1
        z |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
    return (z >> 1) ^ -(z & 1), p


def read_bytes(b: bytes, p: int) -> tuple[bytes, int]:
    n, p = read_long(b, p)
    if n < 0:
        raise ValueError("negative length")
    e = p + n
    if e > len(b):
        raise IndexError("truncated")
    return b[p:e], e


def read_str(b: bytes, p: int) -> tuple[str, int]:
    raw, p = read_bytes(b, p)
    return raw.decode("utf-8"), p


def branch_symbol(record_name: str) -> str:
    """``PostalUpdate`` (or ``vn.lienthong.event.PostalUpdate``) -> ``postal_update``."""
    short = record_name.rsplit(".", 1)[-1]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", short).lower()


def field_names(t: Any) -> frozenset[str]:
    """Every field name of a schema, at any depth of records, unions and collections."""
    if isinstance(t, list):
        return frozenset().union(*(field_names(b) for b in t))
    if not isinstance(t, dict):
        return frozenset()
    if t.get("type") == "record":
        return frozenset(f["name"] for f in t["fields"]).union(
            *(field_names(f["type"]) for f in t["fields"]))
    return field_names(t.get("items")) | field_names(t.get("values"))


def _type_name(t: Any) -> str:
    if isinstance(t, str):
        return t
    if isinstance(t, list):
        return "union"
    return str(t["type"])


def _nullable(t: Any) -> tuple[int, int, Any] | None:
    """For ``["null", T]`` / ``[T, "null"]``: (null index, T index, T); else None."""
    if isinstance(t, list) and len(t) == 2 and "null" in t:
        i = t.index("null")
        return i, 1 - i, t[1 - i]
    return None


@dataclass(frozen=True)
class Compiled:
    """``write(record, out)`` appends the Avro body to ``out``; ``read(b, p)`` -> (dict, end)."""

    write: Callable[[Mapping[str, Any], bytearray], None]
    read: Callable[[bytes, int], tuple[dict[str, Any], int]]
    source: str


class _Gen:
    def __init__(self, flat: Mapping[str, str], omit_null: bool,
                 added: frozenset[str] | None = None) -> None:
        self.flat = dict(flat)
        self.omit_null = omit_null
        self.added = added
        self.ns: dict[str, Any] = {
            "ZZ": ZZ, "zz": zigzag_varint, "rlong": read_long, "rstr": read_str,
            "rbytes": read_bytes, "pack_d": struct.Struct("<d").pack,
            "pack_f": struct.Struct("<f").pack, "unpack_d": struct.Struct("<d").unpack_from,
            "unpack_f": struct.Struct("<f").unpack_from, "BOOL": {0: False, 1: True},
        }
        self.funcs: list[str] = []
        self.n = 0

    def var(self, prefix: str = "v") -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def const(self, value: Any, prefix: str = "K") -> str:
        name = self.var(prefix)
        self.ns[name] = value
        return name

    # -- writer ---------------------------------------------------------------------------
    def w(self, t: Any, x: str, ind: str, out: list[str]) -> None:
        kind = _type_name(t)
        if isinstance(t, dict) and "logicalType" in t:
            raise Unsupported(f"logical type {t['logicalType']}")
        if kind == "null":
            out.append(f"{ind}pass")
        elif kind == "string":
            s = self.var("s")
            out += [f"{ind}{s} = {x}.encode()", f"{ind}n = len({s})",
                    f"{ind}out += ZZ[n] if n < {_SMALL} else zz(n)", f"{ind}out += {s}"]
        elif kind == "bytes":
            s = self.var("s")
            out += [f"{ind}{s} = {x}",
                    f"{ind}if not isinstance({s}, (bytes, bytearray)): "
                    f"raise TypeError('bytes expected')",
                    f"{ind}n = len({s})", f"{ind}out += ZZ[n] if n < {_SMALL} else zz(n)",
                    f"{ind}out += {s}"]
        elif kind in ("int", "long"):
            v = self.var()
            out += [f"{ind}{v} = {x}",
                    f"{ind}if type({v}) is not int: raise TypeError('whole number expected')",
                    f"{ind}out += ZZ[{v}] if 0 <= {v} < {_SMALL} else zz({v})"]
        elif kind == "boolean":
            v = self.var()
            out += [f"{ind}{v} = {x}", f"{ind}if {v} is True: out += b'\\x01'",
                    f"{ind}elif {v} is False: out += b'\\x00'",
                    f"{ind}else: raise TypeError('boolean expected')"]
        elif kind in ("double", "float"):
            out.append(f"{ind}out += pack_{kind[0]}(float({x}))")
        elif kind == "enum":
            table = self.const({s: ZZ[i] for i, s in enumerate(t["symbols"])}, "E")
            out.append(f"{ind}out += {table}[{x}]")
        elif kind == "record":
            r = self.var("r")
            out.append(f"{ind}{r} = {x}")
            self.w_fields(t, r, ind, out)
        elif kind == "union":
            nb = _nullable(t)
            if nb is None:
                raise Unsupported("union other than null + one type")
            i_null, i_val, other = nb
            v = self.var()
            out += [f"{ind}{v} = {x}", f"{ind}if {v} is None: out += {ZZ[i_null]!r}",
                    f"{ind}else:", f"{ind}    out += {ZZ[i_val]!r}"]
            self.w(other, v, ind + "    ", out)
        else:
            raise Unsupported(f"type {kind}")

    def w_fields(self, rec: Mapping[str, Any], r: str, ind: str, out: list[str]) -> None:
        fields = list(rec["fields"])
        i = 0
        while i < len(fields):
            run = _null_run(fields, i, self.flat, self.added)
            if len(run) >= 2:
                # Optional fields added by schema evolution are mostly absent: one test and
                # one write of k null branches, else field by field.
                # A name present but None takes the field-by-field path (the same bytes).
                absent = " and ".join(f"{f['name']!r} not in {r}" for f in run)
                out += [f"{ind}if {absent}:",
                        f"{ind}    out += {bytes(len(run))!r}", f"{ind}else:"]
                for f in run:
                    self.w(f["type"], f"{r}.get({f['name']!r})", ind + "    ", out)
                i += len(run)
                continue
            f = fields[i]
            i += 1
            name = f["name"]
            if name in self.flat:
                self.w_flat(f, r, ind, out)
                continue
            if "default" in f:
                default = f["default"]
                if default is None:
                    x = f"{r}.get({name!r})"
                else:
                    x = f"{r}.get({name!r}, {self.const(default)})"
            else:
                x = f"{r}[{name!r}]"
            self.w(f["type"], x, ind, out)

    def w_flat(self, f: Mapping[str, Any], r: str, ind: str, out: list[str]) -> None:
        branches = f["type"]
        if not isinstance(branches, list) or any(_type_name(b) != "record" for b in branches):
            raise Unsupported(f"flat field {f['name']} must be a union of records")
        table: dict[str, Callable[..., None]] = {}
        for i, branch in enumerate(branches):
            fn = self.var("wb")
            body: list[str] = [f"    out += {ZZ[i]!r}"]
            self.w_fields(branch, "d", "    ", body)
            self.funcs.append(f"def {fn}(d, out):\n" + "\n".join(body) + "\n")
            table[branch_symbol(branch["name"])] = fn  # type: ignore[assignment]
        name = self.var("WB")
        self.ns[name] = table  # names resolved to functions after exec
        self.ns.setdefault("_late", []).append(name)
        out.append(f"{ind}{name}[{r}[{self.flat[f['name']]!r}]]({r}, out)")

    # -- reader ---------------------------------------------------------------------------
    def r(self, t: Any, tgt: str, ind: str, out: list[str]) -> None:
        kind = _type_name(t)
        if isinstance(t, dict) and "logicalType" in t:
            raise Unsupported(f"logical type {t['logicalType']}")
        if kind == "null":
            out.append(f"{ind}{tgt} = None")
        elif kind in ("string", "bytes"):
            dec = ".decode()" if kind == "string" else ""
            slow = "rstr" if kind == "string" else "rbytes"
            out += [f"{ind}n = b[p]",
                    f"{ind}if n < 128 and not n & 1:",
                    f"{ind}    e = p + 1 + (n >> 1)",  # past the end: caught by the caller
                    f"{ind}    {tgt} = b[p + 1:e]{dec}",
                    f"{ind}    p = e",
                    f"{ind}else:",
                    f"{ind}    {tgt}, p = {slow}(b, p)"]
        elif kind in ("int", "long"):
            out += [f"{ind}n = b[p]",
                    f"{ind}if n < 128:",
                    f"{ind}    {tgt} = (n >> 1) ^ -(n & 1)",
                    f"{ind}    p += 1",
                    f"{ind}else:",
                    f"{ind}    {tgt}, p = rlong(b, p)"]
            if kind == "int":
                out.append(f"{ind}if not -2147483648 <= {tgt} <= 2147483647: "
                           "raise ValueError('int out of range')")
        elif kind == "boolean":
            out += [f"{ind}{tgt} = BOOL[b[p]]", f"{ind}p += 1"]
        elif kind in ("double", "float"):
            size = 8 if kind == "double" else 4
            out += [f"{ind}{tgt} = unpack_{kind[0]}(b, p)[0]", f"{ind}p += {size}"]
        elif kind == "enum":
            symbols = t["symbols"]
            if len(symbols) <= 64:  # every index fits one varint byte
                table = self.const({ZZ[i][0]: s for i, s in enumerate(symbols)}, "R")
                out += [f"{ind}{tgt} = {table}[b[p]]", f"{ind}p += 1"]
            else:
                table = self.const(dict(enumerate(symbols)), "R")
                i = self.var("i")
                out += [f"{ind}{i}, p = rlong(b, p)", f"{ind}{tgt} = {table}[{i}]"]
        elif kind == "record":
            self.r_record(t, tgt, ind, out)
        elif kind == "union":
            nb = _nullable(t)
            if nb is None:
                raise Unsupported("union other than null + one type")
            i_null, i_val, other = nb
            out += [f"{ind}n = b[p]", f"{ind}p += 1",
                    f"{ind}if n == {ZZ[i_null][0]}:", f"{ind}    {tgt} = None",
                    f"{ind}elif n == {ZZ[i_val][0]}:"]
            self.r(other, tgt, ind + "    ", out)
            out.append(f"{ind}else: raise ValueError('bad union index')")
        else:
            raise Unsupported(f"type {kind}")

    def r_record(self, rec: Mapping[str, Any], tgt: str, ind: str, out: list[str]) -> None:
        # Read every field into a local, then build the dict in field order.
        parts: list[tuple[str, str, str]] = []  # (how, name, local)
        selectors: dict[str, str] = {}
        fields = list(rec["fields"])
        i = 0
        while i < len(fields):
            run = _null_run(fields, i, self.flat, self.added)
            if len(run) >= 2:
                # k null branches in a row (the common case for optional fields): one compare.
                local_names = [self.var() for _ in run]
                flag = self.var("z")
                out += [f"{ind}if b.startswith({bytes(len(run))!r}, p):",
                        f"{ind}    {' = '.join(local_names)} = None",
                        f"{ind}    {flag} = True",
                        f"{ind}    p += {len(run)}", f"{ind}else:",
                        f"{ind}    {flag} = False"]
                for f, local in zip(run, local_names, strict=True):
                    self.r(f["type"], local, ind + "    ", out)
                    selectors[f["name"]] = local
                    if not self.omit_null:
                        parts.append(("plain", f["name"], local))
                if self.omit_null:  # all null: nothing to add to the dict
                    parts.append(("run", flag, ",".join(
                        f"{f['name']}={local}" for f, local in zip(run, local_names,
                                                                   strict=True))))
                i += len(run)
                continue
            f = fields[i]
            i += 1
            name = f["name"]
            local = self.var()
            if name in self.flat:
                self.r_flat(f, local, selectors.get(self.flat[name]), ind, out)
                parts.append(("merge", name, local))
                continue
            self.r(f["type"], local, ind, out)
            selectors[name] = local
            optional = self.omit_null and _nullable(f["type"]) is not None
            parts.append(("optional" if optional else "plain", name, local))
        lead = 0
        while lead < len(parts) and parts[lead][0] == "plain":
            lead += 1
        items = ", ".join(f"{name!r}: {local}" for _, name, local in parts[:lead])
        out.append(f"{ind}{tgt} = {{{items}}}")
        for how, name, local in parts[lead:]:
            if how == "plain":
                out.append(f"{ind}{tgt}[{name!r}] = {local}")
            elif how == "optional":
                out.append(f"{ind}if {local} is not None: {tgt}[{name!r}] = {local}")
            elif how == "run":
                out.append(f"{ind}if not {name}:")
                for pair in local.split(","):
                    field_name, value = pair.split("=")
                    out.append(f"{ind}    if {value} is not None: {tgt}[{field_name!r}] = "
                               f"{value}")
            else:
                out.append(f"{ind}{tgt}.update({local})")

    def r_flat(self, f: Mapping[str, Any], tgt: str, selector: str | None, ind: str,
               out: list[str]) -> None:
        branches = f["type"]
        if not isinstance(branches, list) or any(_type_name(b) != "record" for b in branches):
            raise Unsupported(f"flat field {f['name']} must be a union of records")
        by_byte: dict[int, str] = {}
        expected: dict[str, int] = {}
        for i, branch in enumerate(branches):
            fn = self.var("rb")
            body: list[str] = []
            self.r_record(branch, "d", "    ", body)
            self.funcs.append(f"def {fn}(b, p):\n" + "\n".join(body) + "\n    return d, p\n")
            by_byte[ZZ[i][0]] = fn
            expected[branch_symbol(branch["name"])] = ZZ[i][0]
        table = self.const(by_byte, "RB")
        self.ns.setdefault("_late", []).append(table)
        out += [f"{ind}n = b[p]"]
        if selector is not None:
            check = self.const(expected, "X")
            out.append(f"{ind}if {check}[{selector}] != n: "
                       f"raise ValueError('{f['name']} branch does not match the selector')")
        out.append(f"{ind}{tgt}, p = {table}[n](b, p + 1)")


def _null_run(fields: list[Any], start: int, flat: Mapping[str, str],
              added: frozenset[str] | None = None) -> list[Any]:
    """The fields from ``start`` on that are ``["null", T]`` with a null default, in a row
    (and, given ``added``, among those names: fields added by schema evolution, mostly
    absent)."""
    run = []
    for f in fields[start:]:
        t = f["type"]
        nb = _nullable(t)
        if (f["name"] in flat or nb is None or nb[0] != 0 or "default" not in f
                or f["default"] is not None or (added is not None and f["name"] not in added)):
            break
        run.append(f)
    return run


def compile_schema(schema: Mapping[str, Any], *, flat: Mapping[str, str] | None = None,
                   omit_null: bool = False, added: frozenset[str] | None = None) -> Compiled:
    """Generate the writer and reader of a record ``schema`` (fully expanded, no name refs).

    ``added``: names of optional fields added by schema evolution (mostly absent); runs of
    them are written and read with one test. None: any run of null-default fields.
    """
    if _type_name(schema) != "record":
        raise Unsupported("top level must be a record")
    gen = _Gen(flat or {}, omit_null, added)
    wbody: list[str] = []
    gen.w_fields(schema, "d", "    ", wbody)
    rbody: list[str] = []
    gen.r_record(schema, "d", "    ", rbody)
    source = "\n".join([
        *gen.funcs,
        "def write(d, out):", *wbody, "",
        "def read(b, p):", *rbody, "    return d, p", "",
    ])
    ns = gen.ns
    exec(compile(source, f"<avro {schema.get('name')}>", "exec"), ns)
    for table_name in ns.pop("_late", []):  # function names -> the functions just defined
        ns[table_name] = {k: ns[v] for k, v in ns[table_name].items()}
    return Compiled(ns["write"], ns["read"], source)


# -- the same shapes through fastavro (the reference path) --------------------------------

def to_avro_datum(schema: Mapping[str, Any], value: Mapping[str, Any],
                  flat: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A canonical dict as fastavro wants it: flat unions become ``(branch name, dict)``."""
    flat = flat or {}
    out: dict[str, Any] = {}
    for f in schema["fields"]:
        name = f["name"]
        if name in flat:
            symbol = value[flat[name]]
            for branch in f["type"]:
                if branch_symbol(branch["name"]) == symbol:
                    out[name] = (_full_name(branch, schema), to_avro_datum(branch, value, flat))
                    break
            else:
                raise ValueError(f"no {name} branch for {symbol!r}")
        elif name in value:
            out[name] = value[name]
    return out


def from_avro_datum(schema: Mapping[str, Any], value: Mapping[str, Any],
                    flat: Mapping[str, str] | None = None,
                    omit_null: bool = False) -> dict[str, Any]:
    """fastavro's decoded record -> canonical dict (the compiled reader's output shape)."""
    flat = flat or {}
    out: dict[str, Any] = {}
    for f in schema["fields"]:
        name = f["name"]
        v = value.get(name)
        if name in flat:
            symbol = value[flat[name]]
            branch = next(b for b in f["type"] if branch_symbol(b["name"]) == symbol)
            out.update(from_avro_datum(branch, v or {}, flat, omit_null))
            continue
        t = f["type"]
        nb = _nullable(t)
        inner = nb[2] if nb else t
        if isinstance(v, dict) and _type_name(inner) == "record":
            v = from_avro_datum(inner, v, flat, omit_null)
        if v is None and nb is not None and omit_null:
            continue
        out[name] = v
    return out


def _full_name(branch: Mapping[str, Any], parent: Mapping[str, Any]) -> str:
    name = str(branch["name"])
    if "." in name:
        return name
    ns = branch.get("namespace") or parent.get("namespace")
    return f"{ns}.{name}" if ns else name
