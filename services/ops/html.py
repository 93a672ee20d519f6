"""A tiny HTML builder that escapes by construction.

Every text and attribute value goes through ``html.escape``; only ``Markup`` (what this module
builds) is inserted as it is. An applicant called ``<script>alert(1)</script>`` is shown as
those characters, never run.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Union

Child = Union["Markup", str, int, float, None, Iterable["Child"]]


class Markup(str):
    """HTML that is already safe (built here); never construct it from outside text."""

    __slots__ = ()


def esc(value: object) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def _children(children: Iterable[Child]) -> Iterable[str]:
    for c in children:
        if c is None or c is False:
            continue
        if isinstance(c, Markup):
            yield c
        elif isinstance(c, (str, int, float)):
            yield esc(c)
        else:
            yield from _children(c)


VOID = frozenset({"br", "hr", "img", "input", "link", "meta", "source"})


def el(tag: str, attrs: Mapping[str, object] | None = None, *children: Child) -> Markup:
    """``<tag attrs>children</tag>``; an attribute set to None/False is left out, True is bare.

    ``class_`` and ``for_`` spell ``class`` and ``for``; underscores become hyphens otherwise
    (``data_topics`` -> ``data-topics``).
    """
    parts = [tag]
    for key, value in (attrs or {}).items():
        if value is None or value is False:
            continue
        name = key.rstrip("_").replace("_", "-")
        parts.append(name if value is True else f'{name}="{esc(value)}"')
    open_tag = "<" + " ".join(parts) + ">"
    if tag in VOID:
        return Markup(open_tag)
    return Markup(open_tag + "".join(_children(children)) + f"</{tag}>")


def join(*children: Child) -> Markup:
    return Markup("".join(_children(children)))
