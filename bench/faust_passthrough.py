"""A bare faust agent on the worker's own faust app: dossier.events copied to a topic.

    python bench/faust_passthrough.py SOURCE SINK   (settings from the environment)

What faust's consumer and producer cost alone, in the worker's shape: batches of what is
waiting (``noack_take``), each record copied to the sink on its own partition as the worker
writes (whole record batches, ``record_batches.py``), the batch's events acknowledged once
every copy is. ``bench_pipeline`` runs it in the same run as the
worker and the raw aiokafka passthrough.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, cast

import faust

from lienthong.services.processors.app import BATCH_MAX, BATCH_WITHIN, faust_app, run_app
from lienthong.services.record_batches import send_by_partition
from lienthong.services.settings import Settings


def main() -> None:
    source, sink = sys.argv[1], sys.argv[2]
    settings = Settings.from_env()
    app = faust_app(settings, settings.kafka_bootstrap_servers or "",
                    app_id=f"{settings.app_id}-bare", web=False)
    topic = app.topic(source, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")

    @app.agent(topic)
    async def copy(stream: faust.StreamT[bytes]) -> None:
        async for batch in cast(Any, stream).noack_take(BATCH_MAX, within=BATCH_WITHIN):
            producer = app.producer._ensure_producer()
            acks = await send_by_partition(producer, sink, (
                (e.message.partition, e.message.key, e.message.value) for e in batch))
            await asyncio.gather(*acks)
            for event in batch:
                await stream.ack(event)

    run_app(app)


if __name__ == "__main__":
    main()
