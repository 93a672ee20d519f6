"""Every schema version in schemas/ is FULL_TRANSITIVE compatible with all earlier ones."""

from __future__ import annotations

import copy
import random
from io import BytesIO
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import expand_schema

from lienthong.schemas import registry
from lienthong.schemas.compat import full_transitive_problems, read_problems

KINDS = sorted(registry.VERSIONS)


def test_every_avsc_file_is_registered_under_a_versioned_folder() -> None:
    on_disk = {p.relative_to(registry.AVRO_DIR).as_posix()
               for p in registry.AVRO_DIR.rglob("*.avsc")}
    listed = {rel for rels in registry.VERSIONS.values() for rel in rels}
    assert on_disk == listed
    for rels in registry.VERSIONS.values():
        folders = [int(rel.split("/")[0].removeprefix("v")) for rel in rels]
        assert folders == sorted(folders)


@pytest.mark.parametrize("kind", KINDS)
def test_each_version_reads_every_other_version_by_the_avro_rules(kind: str) -> None:
    schemas = [v.schema for v in registry.versions(kind)]
    assert full_transitive_problems(schemas) == []


def test_the_event_schema_has_evolved_at_least_once() -> None:
    assert len(registry.versions("event")) >= 2


def _sample(t: Any, rnd: random.Random) -> Any:
    """A random datum of an expanded schema, as fastavro writes it."""
    if isinstance(t, list):
        branch = rnd.choice(t)
        value = _sample(branch, rnd)
        return (branch["name"], value) if isinstance(branch, dict) and "name" in branch else value
    kind = t if isinstance(t, str) else t["type"]
    if kind == "null":
        return None
    if kind == "string":
        return rnd.choice(["", "Nguyễn", "x" * rnd.randint(0, 200), "Sở Tư pháp"])
    if kind in ("int", "long"):
        return rnd.randint(-(2**31), 2**31 - 1)
    if kind == "bytes":
        return rnd.randbytes(rnd.randint(0, 40))
    if kind == "boolean":
        return rnd.random() < 0.5
    if kind == "enum":
        return rnd.choice(t["symbols"])
    if kind == "record":
        return {f["name"]: _sample(f["type"], rnd) for f in t["fields"]}
    if kind == "array":
        return [_sample(t["items"], rnd) for _ in range(rnd.randint(0, 3))]
    raise AssertionError(f"no sampler for {kind}")


@pytest.mark.parametrize("kind", KINDS)
def test_fastavro_resolves_samples_between_every_pair_of_versions(kind: str) -> None:
    # A second opinion on the rules check: real bytes written with one version decode with
    # every other version, keeping the fields both versions share.
    rnd = random.Random(20260609)
    versions = registry.versions(kind)
    for writer in versions:
        expanded = expand_schema(writer.schema)
        for _ in range(50):
            datum = _sample(expanded, rnd)
            buf = BytesIO()
            schemaless_writer(buf, writer.parsed, datum)
            for reader in versions:
                buf.seek(0)
                decoded = schemaless_reader(buf, writer.parsed, reader.parsed)
                shared = {f["name"] for f in reader.schema["fields"]} & set(datum)
                for name in shared:
                    want = datum[name][1] if isinstance(datum[name], tuple) else datum[name]
                    assert _same_shared(decoded[name], want), (
                        kind, writer.version, reader.version, name)


def _same_shared(decoded: Any, written: Any) -> bool:
    """Equal on the fields both versions have; a field only the reader has is its default
    (every optional field of the contract defaults to null), at any depth of nesting."""
    if isinstance(written, tuple):
        written = written[1]
    if isinstance(decoded, dict) and isinstance(written, dict):
        return all(_same_shared(decoded[k], written[k]) for k in decoded.keys() & written.keys()) \
            and all(decoded[k] is None for k in decoded.keys() - written.keys())
    return bool(decoded == written)


# -- the rules check catches what breaks compatibility ------------------------------------

BASE = {"type": "record", "name": "R", "namespace": "t", "fields": [
    {"name": "a", "type": "string"},
    {"name": "n", "type": "int"},
    {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["x", "y"]}},
    {"name": "o", "type": ["null", "string"], "default": None},
]}


def _changed(edit: Any) -> dict[str, Any]:
    schema = copy.deepcopy(BASE)
    edit(schema["fields"])
    return schema


@pytest.mark.parametrize(("name", "edit", "words"), [
    ("required field added", lambda f: f.append({"name": "b", "type": "string"}),
     "no default"),
    ("required field removed", lambda f: f.pop(0), "no default"),
    ("type changed", lambda f: f[0].update(type="int"), "cannot be read as"),
    ("int widened to long", lambda f: f[1].update(type="long"), "cannot be read as int"),
    ("enum symbol added", lambda f: f[2]["type"]["symbols"].append("z"), "lacks symbols"),
    ("optional made required", lambda f: f.__setitem__(3, {"name": "o", "type": "string"}),
     "null cannot be read as string"),
    ("default of the wrong type", lambda f: f.append(
        {"name": "c", "type": ["null", "string"], "default": "x"}), "does not fit"),
])
def test_incompatible_changes_are_caught(name: str, edit: Any, words: str) -> None:
    new = _changed(edit)  # raw schemas: fastavro would refuse to parse some of these
    problems = read_problems(new, BASE) + read_problems(BASE, new)
    assert problems, name
    assert any(words in p for p in problems), problems


def test_an_optional_field_with_a_default_is_compatible_both_ways() -> None:
    added = _changed(lambda f: f.append(
        {"name": "note", "type": ["null", "string"], "default": None}))
    assert full_transitive_problems([BASE, added]) == []


def test_a_promotion_is_one_way_only() -> None:
    assert read_problems("long", "int") == []
    assert read_problems("int", "long") != []
    assert read_problems("bytes", "string") == [] and read_problems("string", "bytes") == []


def test_parsed_schemas_stay_parseable() -> None:
    for kind in KINDS:
        for v in registry.versions(kind):
            parse_schema(v.schema)
