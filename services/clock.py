"""The one clock. Everything that asks "what time is it" asks a ``Clock``.

Production uses the wall clock; tests and demos run a province day in accelerated time with
``ScaledClock`` (``LIENTHONG_CLOCK=scaled:2026-11-25T07:30:00+07:00:60`` runs 60× fast from
that instant), so the worker's alerts can be compared with ``lienthong replay``. A suffix
``@EPOCH`` (Unix seconds) pins the real instant at which virtual time was the origin, so several
processes share one virtual time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class ScaledClock:
    """Virtual time that was ``origin`` at Unix time ``epoch`` and runs ``speed`` times real
    time."""

    origin: datetime
    speed: float = 1.0
    epoch: float = 0.0

    @classmethod
    def starting_now(cls, origin: datetime, speed: float = 1.0) -> ScaledClock:
        return cls(origin=origin, speed=speed, epoch=time.time())

    def now(self) -> datetime:
        return self.origin + timedelta(seconds=(time.time() - self.epoch) * self.speed)

    def real_seconds_until(self, instant: datetime) -> float:
        return (instant - self.now()).total_seconds() / self.speed

    def spec(self) -> str:
        """The ``LIENTHONG_CLOCK`` value that gives another process this very clock."""
        return f"scaled:{self.origin.isoformat()}:{self.speed!r}@{self.epoch!r}"


def clock_from_spec(spec: str | None) -> Clock:
    """``wall`` (default) or ``scaled:ISO-INSTANT:SPEED[@EPOCH]``."""
    if spec in (None, "", "wall"):
        return WallClock()
    spec, _, epoch_text = spec.partition("@")
    kind, _, rest = spec.partition(":")
    if kind != "scaled" or ":" not in rest:
        raise ValueError(f"clock {spec!r}: expected 'wall' or 'scaled:ISO-INSTANT:SPEED'")
    origin_text, _, speed_text = rest.rpartition(":")
    try:
        origin = datetime.fromisoformat(origin_text)
        speed = float(speed_text)
    except ValueError as exc:
        raise ValueError(f"clock {spec!r}: {exc}") from exc
    if origin.tzinfo is None:
        raise ValueError(f"clock {spec!r}: the instant needs a UTC offset, e.g. +07:00")
    if speed <= 0:
        raise ValueError(f"clock {spec!r}: speed must be positive")
    if not epoch_text:
        return ScaledClock.starting_now(origin, speed)
    try:
        epoch = float(epoch_text)
    except ValueError as exc:
        raise ValueError(f"clock {spec!r}: epoch {epoch_text!r} is not Unix seconds") from exc
    return ScaledClock(origin=origin, speed=speed, epoch=epoch)
