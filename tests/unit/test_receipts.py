"""Signed hand-off receipts: a good one is recorded; anything else is refused with its reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from lienthong.schemas import codec
from lienthong.services.domain import receipts
from lienthong.services.domain.receipts import (
    PublicKey,
    ReceiptKeys,
    ReceiptRefused,
    check_receipt,
    sign_receipt,
)

DEST = "000.02.10.H99"
DOSSIER = "000.00.15.H99-261125-0007"
BODY = b'{"delivery_id":"h1","kind":"handoff","dossier":"000.00.15.H99-261125-0007"}'
AT = datetime(2026, 11, 25, 9, 15, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()
KEYS = ReceiptKeys({DEST: [PublicKey("2026-06", receipts.public_raw(KEY))]})


def signed(**over: object) -> dict[str, str]:
    args: dict[str, object] = {"delivery_id": "h1", "kind": "handoff", "dossier": DOSSIER,
                               "body": BODY, "receiver": DEST, "received_at": AT}
    args.update(over)
    return sign_receipt(KEY, "2026-06", **args)  # type: ignore[arg-type]


def check(answer: object, body: bytes = BODY) -> dict[str, str]:
    return check_receipt(answer, delivery_id="h1", kind="handoff", dossier=DOSSIER,
                         destination=DEST, body=body, keys=KEYS, recorded_at=AT)


def test_a_receipt_signed_by_the_destination_becomes_a_receipt_record() -> None:
    record = check(signed())
    assert record["receipt_id"] == "receipt:h1" and record["receiver"] == DEST
    assert codec.RECEIPTS.decode(codec.RECEIPTS.encode(record)) == record


@pytest.mark.parametrize(("answer", "reason"), [
    ("not an object", receipts.MALFORMED),
    ({**signed(), "signature": ""}, receipts.MALFORMED),
    ({**signed(), "algorithm": "hmac-sha256"}, receipts.MALFORMED),
    (signed(received_at=datetime(2026, 11, 25, 9, 15)), receipts.MALFORMED),
    (signed(delivery_id="h2"), receipts.WRONG_DELIVERY),
    (signed(body=b"another body"), receipts.WRONG_BODY),
    (signed(receiver="000.03.10.H99"), receipts.WRONG_RECEIVER),
    ({**signed(), "key_id": "2020-01"}, receipts.UNKNOWN_KEY),
    ({**signed(), "received_at": "2026-11-25T09:16:00+00:00"}, receipts.BAD_SIGNATURE),
])
def test_a_receipt_that_proves_nothing_is_refused_with_its_reason(answer: object,
                                                                  reason: str) -> None:
    with pytest.raises(ReceiptRefused) as err:
        check(answer)
    assert err.value.reason == reason


def test_a_receipt_signed_with_a_revoked_key_is_refused() -> None:
    keys = ReceiptKeys({DEST: [PublicKey("2026-06", receipts.public_raw(KEY), revoked=True)]})
    with pytest.raises(ReceiptRefused, match="revoked"):
        check_receipt(signed(), delivery_id="h1", kind="handoff", dossier=DOSSIER,
                      destination=DEST, body=BODY, keys=keys, recorded_at=AT)


def test_another_agencys_key_cannot_sign_for_the_destination() -> None:
    forged = sign_receipt(Ed25519PrivateKey.generate(), "2026-06", delivery_id="h1",
                          kind="handoff", dossier=DOSSIER, body=BODY, receiver=DEST,
                          received_at=AT)
    with pytest.raises(ReceiptRefused) as err:
        check(forged)
    assert err.value.reason == receipts.BAD_SIGNATURE


@given(st.integers(0, 127), st.integers(0, 7))
def test_any_flipped_bit_of_the_signature_is_refused(byte: int, bit: int) -> None:
    answer = signed()
    sig = bytearray(bytes.fromhex(answer["signature"]))
    sig[byte % len(sig)] ^= 1 << bit
    with pytest.raises(ReceiptRefused):
        check({**answer, "signature": sig.hex()})


def test_public_keys_load_from_base64_or_hex_and_bad_ones_are_named() -> None:
    raw = receipts.public_raw(KEY)
    import base64
    keys = ReceiptKeys.from_mapping({DEST: [{"key_id": "a", "public_key": raw.hex()},
                                            {"key_id": "b",
                                             "public_key": base64.b64encode(raw).decode()}]})
    assert keys.find(DEST, "a") == keys.find(DEST, "b").__class__("a", raw)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="key #0: public_key must be"):
        ReceiptKeys.from_mapping({DEST: [{"key_id": "a", "public_key": "short"}]})
    with pytest.raises(ValueError, match="agency 'nope!'"):
        ReceiptKeys.from_mapping({"nope!": [{"key_id": "a", "public_key": raw.hex()}]})


def test_demo_keys_are_the_same_everywhere_and_differ_per_agency() -> None:
    a, b = receipts.demo_key(DEST), receipts.demo_key("000.03.10.H99")
    assert receipts.public_raw(a) == receipts.public_raw(receipts.demo_key(DEST))
    assert receipts.public_raw(a) != receipts.public_raw(b)
    answer = sign_receipt(a, receipts.DEMO_KEY_ID, delivery_id="h1", kind="handoff",
                          dossier=DOSSIER, body=BODY, receiver=DEST, received_at=AT)
    assert check_receipt(answer, delivery_id="h1", kind="handoff", dossier=DOSSIER,
                         destination=DEST, body=BODY, keys=receipts.demo_keys([DEST]),
                         recorded_at=AT)["signature"] == answer["signature"]


def test_a_delivery_without_a_receipt_is_overdue_once_after_its_wait() -> None:
    from datetime import timedelta

    watch = receipts.ReceiptWatch()
    due = AT + timedelta(hours=4)
    watch.expect(receipts.Expected("h1", DEST, DOSSIER, "handoff", due))
    watch.expect(receipts.Expected("h2", DEST, DOSSIER, "handoff", due))
    watch.received("h2")
    assert watch.overdue(due - timedelta(seconds=1)) == []
    [late] = watch.overdue(due)
    assert late.delivery_id == "h1"
    assert watch.overdue(due + timedelta(hours=1)) == []
    watch.expect(receipts.Expected("h1", DEST, DOSSIER, "handoff", due))  # read again
    assert watch.overdue(due + timedelta(hours=2)) == []


def test_the_public_keys_file_loads_from_json_or_yaml_and_says_what_is_wrong(
        tmp_path: Path) -> None:
    import argparse

    from lienthong.connectors.delivery.cli import receipt_keys

    raw = receipts.public_raw(KEY)
    as_yaml = tmp_path / "keys.yaml"
    as_yaml.write_text(f"{DEST}:\n  - key_id: '2026-06'\n    public_key: {raw.hex()}\n",
                       encoding="utf-8")
    as_json = tmp_path / "keys.json"
    as_json.write_text(f'{{"{DEST}": [{{"key_id": "2026-06", "public_key": "{raw.hex()}"}}]}}',
                       encoding="utf-8")
    for path in (as_yaml, as_json):
        found = ReceiptKeys.from_file(path).find(DEST, "2026-06")
        assert found is not None and found.raw == raw
    # The delivery service reads the same file the same way.
    args = argparse.Namespace(receipt_keys=str(as_yaml), demo_receipt_keys=False)
    loaded = receipt_keys(args, [DEST])
    assert loaded is not None and loaded.agencies() == [DEST]
    with pytest.raises(ValueError, match="cannot read it"):
        ReceiptKeys.from_file(tmp_path / "absent.yaml")
    (tmp_path / "short.yaml").write_text(f"{DEST}: [{{key_id: a, public_key: abc}}]\n",
                                         encoding="utf-8")
    with pytest.raises(ValueError, match="32-byte Ed25519"):
        ReceiptKeys.from_file(tmp_path / "short.yaml")


# -- the watch outlives a restart through its log ---------------------------------------------

_IDS = st.sampled_from(["h1", "h2", "h3", "h4"])
_OPS = st.lists(st.one_of(
    st.tuples(st.just("expect"), _IDS, st.integers(0, 10)),
    st.tuples(st.just("received"), _IDS, st.just(0)),
    st.tuples(st.just("overdue"), st.just(""), st.integers(0, 10)),
    st.tuples(st.just("restart"), st.just(""), st.just(0))), max_size=30)


def _expected(delivery_id: str, hours: int) -> receipts.Expected:
    from datetime import timedelta

    return receipts.Expected(delivery_id, DEST, DOSSIER, "handoff", AT + timedelta(hours=hours))


@given(_OPS)
def test_a_watch_restored_from_its_log_awaits_what_the_first_one_awaited(
        ops: list[tuple[str, str, int]]) -> None:
    # The log gets what the watch's answers say (an expectation when new, a tombstone when
    # received or overdue); a restart starts a new watch from what the log still holds. The
    # alerts raised across any restarts are then the ones a watch that never stopped raises.
    from datetime import timedelta

    log: list[tuple[str, receipts.Expected | None]] = []
    watch, steady = receipts.ReceiptWatch(), receipts.ReceiptWatch()
    raised: list[str] = []
    steady_raised: list[str] = []
    for op, delivery_id, hours in ops:
        if op == "expect":
            e = _expected(delivery_id, hours)
            if watch.expect(e):
                log.append((delivery_id, e))
            steady.expect(e)
        elif op == "received":
            if watch.received(delivery_id):
                log.append((delivery_id, None))
            steady.received(delivery_id)
        elif op == "overdue":
            now = AT + timedelta(hours=hours)
            for late in watch.overdue(now):
                raised.append(late.delivery_id)
                log.append((late.delivery_id, None))
            steady_raised += [e.delivery_id for e in steady.overdue(now)]
        else:
            watch = receipts.ReceiptWatch()
            watch.restore(receipts.pending(log))
        assert watch.waiting() == receipts.pending(log)
    # A delivery read again after a restart that followed its alert can be alerted again (the
    # log keeps no memory of alerts): under the same deterministic id, which every consumer
    # of alerts deduplicates.
    assert set(raised) == set(steady_raised)


def test_the_log_keeps_the_last_value_of_each_delivery_and_a_tombstone_ends_it() -> None:
    h1, h2 = _expected("h1", 4), _expected("h2", 2)
    log: list[tuple[str, receipts.Expected | None]] = [
        ("h1", h1), ("h2", h2), ("h3", _expected("h3", 1)), ("h3", None)]
    assert receipts.pending(log) == [h2, h1]  # soonest due first
    watch = receipts.ReceiptWatch()
    watch.restore(receipts.pending(log))
    assert not watch.expect(_expected("h1", 9))  # read again: its first due holds
    assert watch.received("h2") and not watch.received("h2")
    assert [e.delivery_id for e in watch.overdue(h1.due)] == ["h1"]
