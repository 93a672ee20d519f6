"""The worker's collector policy: no automatic full passes, survivors frozen on each tick, and
a full pass over everything once per ``full_seconds``."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from lienthong.services.processors.collector import CollectorPolicy


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_start_turns_automatic_full_passes_off_and_freezes_what_lives(
        restored_collector: None) -> None:
    young, middle, _ = gc.get_threshold()
    held = [[i] for i in range(1000)]
    CollectorPolicy().start()
    assert gc.get_threshold()[:2] == (young, middle)
    assert gc.get_threshold()[2] >= 1 << 30
    assert gc.get_freeze_count() >= len(held)


def test_a_tick_freezes_survivors_and_a_due_full_pass_frees_frozen_cycles(
        restored_collector: None) -> None:
    policy = CollectorPolicy(full_seconds=3600)
    policy.start()

    class Node:
        other: object

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle, alive while frozen
    policy.tick()
    gone = weakref.ref(a)
    del a, b  # now garbage, but frozen: only a full pass can free it
    gc.collect()
    assert gone() is not None
    policy.full_seconds = 0
    policy.tick()
    assert gone() is None
