"""The shared replay decision: every gateway reading the nonce topic in offset order agrees
that the first live claim of a key wins and every later one is a replay."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lienthong.connectors.http.nonce_ledger import (
    Claim,
    LedgerFull,
    NonceLedger,
    claim_key,
    claim_value,
    parse_value,
    partition_for,
)
from lienthong.connectors.http.nonces import NonceCacheFull

KEY = claim_key("000.00.15.H99", "n" * 24)


def test_the_first_claim_wins_and_a_later_one_of_the_same_key_loses() -> None:
    ledger = NonceLedger()
    assert ledger.observe(KEY, Claim(0, 5, at=100.0, until=701.0))
    assert not ledger.observe(KEY, Claim(0, 6, at=100.1, until=701.1))
    assert ledger.won(KEY, 0, 5) and not ledger.won(KEY, 0, 6)
    assert ledger.holds(KEY, now=700.0)


def test_a_nonce_reused_after_its_claim_expired_is_a_new_first_claim() -> None:
    # Claimed at t=100 with a live horizon of 701; a claim made at t=900 is no replay.
    ledger = NonceLedger()
    ledger.observe(KEY, Claim(0, 5, at=100.0, until=701.0))
    assert not ledger.holds(KEY, now=702.0)
    assert ledger.observe(KEY, Claim(0, 9, at=900.0, until=1501.0))
    assert ledger.won(KEY, 0, 9)


def test_a_record_read_twice_after_a_reseek_stays_first() -> None:
    ledger = NonceLedger()
    claim = Claim(2, 40, at=10.0, until=611.0)
    assert ledger.observe(KEY, claim)
    assert ledger.observe(KEY, claim)
    assert ledger.won(KEY, 2, 40)


def test_expired_claims_are_forgotten_and_the_ledger_fails_closed_when_full() -> None:
    ledger = NonceLedger(max_entries=2)
    ledger.observe(claim_key("A", "1" * 16), Claim(0, 0, 0.0, 10.0))
    ledger.observe(claim_key("A", "2" * 16), Claim(0, 1, 0.0, 20.0))
    with pytest.raises(LedgerFull):
        ledger.check_room()
    assert issubclass(LedgerFull, NonceCacheFull)  # the gateway answers 503, never forgets
    assert ledger.evict(now=15.0) == 1
    ledger.check_room()
    assert len(ledger) == 1


def test_nonces_are_per_agency() -> None:
    assert claim_key("000.00.15.H99", "x" * 16) != claim_key("000.00.16.H99", "x" * 16)


def test_claim_values_round_trip_and_foreign_records_are_ignored() -> None:
    assert parse_value(claim_value(1.5, 602.5, "gw-a")) == (1.5, 602.5)
    assert parse_value(b"not json") is None
    assert parse_value(None) is None
    assert parse_value(b'{"at": 1}') is None


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_a_key_always_maps_to_the_same_partition_in_range(key: bytes, partitions: int) -> None:
    p = partition_for(key, partitions)
    assert 0 <= p < partitions
    assert p == partition_for(key, partitions)


# One topic partition as several gateways would write it: each record is (key index, at).
claims = st.lists(st.tuples(st.integers(0, 4), st.floats(0, 2000, allow_nan=False)),
                  max_size=40)


@given(claims, st.permutations(range(3)))
def test_every_reader_agrees_on_the_winners_and_only_one_claim_per_live_key_wins(
        records: list[tuple[int, float]], _order: list[int]) -> None:
    # Records keep their offsets (the partition's order); claims are live for 601 s.
    keyed = [(claim_key("A", f"nonce-{k:012d}"), Claim(0, i, at, at + 601.0))
             for i, (k, at) in enumerate(sorted(records, key=lambda r: r[1]))]
    readers = [NonceLedger() for _ in range(3)]
    verdicts = [[r.observe(key, c) for key, c in keyed] for r in readers]
    assert verdicts[0] == verdicts[1] == verdicts[2]
    live: dict[bytes, float] = {}
    for (key, c), first in zip(keyed, verdicts[0], strict=True):
        # The rule by hand: a claim is first iff no earlier winner of its key is still live.
        expected = key not in live or live[key] < c.at
        assert first == expected
        if first:
            live[key] = c.until
