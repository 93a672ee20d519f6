import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lienthong.services.clock import ScaledClock, WallClock, clock_from_spec


def test_a_scaled_clock_pinned_to_an_epoch_runs_speed_times_real_time() -> None:
    origin = datetime.fromisoformat("2026-11-25T07:30:00+07:00")
    clock = clock_from_spec(f"scaled:2026-11-25T07:30:00+07:00:60@{time.time() - 10}")
    assert isinstance(clock, ScaledClock)
    # 10 real seconds ago at 60x: 600 virtual seconds later than the origin.
    assert abs((clock.now() - origin) - timedelta(minutes=10)) < timedelta(seconds=5)


def test_wall_is_the_default() -> None:
    assert isinstance(clock_from_spec(None), WallClock)
    assert clock_from_spec("wall").now().tzinfo is not None


@pytest.mark.parametrize("spec", ["scaled:2026-11-25T07:30:00:60", "fast", "scaled:x:1",
                                  "scaled:2026-11-25T07:30:00+07:00:0",
                                  "scaled:2026-11-25T07:30:00+07:00:1@soon"])
def test_bad_clock_specs_say_what_is_wrong(spec: str) -> None:
    with pytest.raises(ValueError, match="clock"):
        clock_from_spec(spec)


@given(origin=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                           timezones=st.sampled_from([UTC, timezone(timedelta(hours=7))])),
       speed=st.floats(min_value=0.001, max_value=1e6, allow_nan=False),
       epoch=st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_a_scaled_clock_spec_gives_another_process_the_very_same_clock(
        origin: datetime, speed: float, epoch: float) -> None:
    clock = ScaledClock(origin=origin, speed=speed, epoch=epoch)
    assert clock_from_spec(clock.spec()) == clock
