"""How the worker's faust consumer fetches records and hands them to the tracker.

Two adjustments to faust-streaming 0.15.3 (pinned exactly), both measured in
``bench/bench_pipeline.py``, which runs a bare faust agent beside the worker for this reason:

* **Fetch wait.** faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500``. While
  records of some assigned partitions are still buffered, aiokafka's next fetch asks only for
  the others, and the broker holds it for the whole wait when none of those gets a record:
  seen here as 1.5 s stalls of the tracker while it wrote the changelog (p50 event-to-delivery
  0.9-1.5 s at 1,000 events/s; 21 ms with a 50 ms wait).
* **Hand-over.** faust's fetch loop (``Consumer._drain_messages``) hands every record to the
  conductor through ``Service.wait_first(callback(message), suspend_flow.wait())``: two tasks
  and an ``asyncio.wait`` per record, which alone held a bare faust agent to about a fifth of
  a raw aiokafka consumer on this machine. When flow is running, the conductor's callback
  completes without yielding (flow control, the producer buffer and the queue put do not wait
  then), so awaiting it directly is the same hand-over; while flow is suspended (a rebalance),
  the loop keeps faust's own ``wait_first``.
* **Direct feed.** Records of a topic with a ``DirectFeed`` (the worker's ``dossier.events``)
  skip the conductor, the channel and the stream: the fetch loop appends each faust message to
  the feed, and the worker's agent takes them from it in batches and acknowledges them to the
  consumer itself (``Consumer.ack``, the call a stream's acknowledgement ends in), so offsets
  are committed exactly as before. The per-record event, queue hand-over, stream iteration and
  acknowledgement cost the worker about a tenth of its CPU. Flow control is kept: while flow
  is suspended (a rebalance) records are not handed over, as faust drops them then too, and
  ``clear`` drops what was fetched but not taken; both are fetched again from the committed
  offsets once the partitions are assigned.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

FETCH_MAX_WAIT_MS = 50
FEED_HIGH = 4096  # messages a DirectFeed holds before the fetch loop waits for room


class DirectFeed:
    """Messages of one topic, handed from the fetch loop to the one task that applies them,
    in fetch order; the fetch loop waits while ``FEED_HIGH`` of them are not yet taken."""

    def __init__(self, topic: str, high: int = FEED_HIGH) -> None:
        self.topic = topic
        self.high = high
        self._messages: list[Any] = []
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        return len(self._messages)

    def put(self, message: Any) -> None:
        messages = self._messages
        messages.append(message)
        if len(messages) == 1:
            self._ready.set()
        if len(messages) >= self.high:
            self._room.clear()

    async def room(self) -> None:
        """Return once the feed holds fewer than ``high`` messages."""
        await self._room.wait()

    async def take(self, most: int, within: float) -> list[Any]:
        """The next messages, at most ``most``: waits for a first one, then up to ``within``
        seconds for more while fewer than ``most`` are there."""
        while not self._messages:
            self._ready.clear()
            await self._ready.wait()
        if len(self._messages) < most and within > 0:
            await asyncio.sleep(within)
        messages = self._messages
        taken = messages[:most]
        del messages[:most]
        if not messages:
            self._ready.clear()
        if len(messages) < self.high // 2:
            self._room.set()
        return taken

    def clear(self) -> None:
        """Drop the messages not yet taken (a rebalance: they are fetched again)."""
        self._messages.clear()
        self._ready.clear()
        self._room.set()


def add_direct_feed(app: Any, feed: DirectFeed) -> None:
    """Hand ``feed.topic``'s records to ``feed`` in ``app``'s fetch loop (set before the app
    starts; see the module's docstring)."""
    feeds = getattr(app, "_lienthong_feeds", None)
    if feeds is None:
        feeds = app._lienthong_feeds = {}
    feeds[feed.topic] = feed


def _create_worker_consumer(create: Any) -> Any:
    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by its fetcher at start
        return consumer
    return create_worker_consumer


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover
    """faust-streaming 0.15.3's ``Consumer._drain_messages``, with the hand-over above."""
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = faust_consumer.CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    suspended = self.suspend_flow.is_set
    flow_suspended = self.app.flow_control._suspend.is_set
    feeds: dict[str, DirectFeed] = getattr(self.app, "_lienthong_feeds", None) or {}
    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = cast(Any, getmany(timeout=1.0))
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        feed = feeds.get(message.topic) if feeds else None
                        if feed is not None:
                            if len(feed) >= feed.high:
                                await feed.room()
                            if not (suspended() or flow_suspended()):
                                feed.put(message)
                        elif suspended() or flow_suspended():
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        else:
                            await callback(message)
                        set_read_offset(tp, offset)
                unset_flag(flag_consumer_fetching)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)


def tune_faust_consumer() -> None:
    """Apply both adjustments to faust's aiokafka consumer classes (once per process)."""
    thread = faust_aiokafka.AIOKafkaConsumerThread
    if getattr(thread, "_lienthong_tuned", False):
        return
    thread._create_worker_consumer = _create_worker_consumer(  # type: ignore[method-assign]
        thread._create_worker_consumer)
    faust_aiokafka.Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
    thread._lienthong_tuned = True  # type: ignore[attr-defined]
