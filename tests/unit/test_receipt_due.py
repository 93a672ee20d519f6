"""When a delivery's signed receipt is overdue: a hand-off by the end of the destination's
allotted working time, never sooner than the grace after it was read; others after the wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from lienthong.services.domain.receipts import RECEIPT_GRACE, receipt_due

READ = datetime(2026, 6, 9, 2, 0, tzinfo=UTC)  # 09:00 in Hà Nội
WAIT = timedelta(hours=4)


def test_a_handoff_waits_until_its_step_is_due() -> None:
    payload = {"step_due_at": "2026-06-12T17:00:00+07:00"}
    assert receipt_due("handoff", payload, READ, WAIT) == datetime(2026, 6, 12, 10, 0,
                                                                   tzinfo=UTC)


def test_a_handoff_read_after_its_step_was_due_gets_the_grace() -> None:
    payload = {"step_due_at": "2026-06-08T17:00:00+07:00"}
    assert receipt_due("handoff", payload, READ, WAIT) == READ + RECEIPT_GRACE


def test_results_status_syncs_and_handoffs_without_a_step_due_wait_the_flat_time() -> None:
    assert receipt_due("result", {"step_due_at": "2026-06-12T17:00:00+07:00"}, READ,
                       WAIT) == READ + WAIT
    assert receipt_due("status", {}, READ, WAIT) == READ + WAIT
    assert receipt_due("handoff", {}, READ, WAIT) == READ + WAIT  # after the dossier ended
    for bad in ("tomorrow", "2026-06-12T17:00:00", 17):  # unreadable or without an offset
        assert receipt_due("handoff", {"step_due_at": bad}, READ, WAIT) == READ + WAIT


@given(st.timedeltas(min_value=timedelta(days=-30), max_value=timedelta(days=30)))
def test_a_handoff_receipt_is_never_due_before_the_grace_nor_before_its_step(
        offset: timedelta) -> None:
    step_due = READ + offset
    due = receipt_due("handoff", {"step_due_at": step_due.isoformat()}, READ, WAIT)
    assert due >= READ + RECEIPT_GRACE and due >= step_due
    assert due in (step_due, READ + RECEIPT_GRACE)
