"""Pull connector (kéo dữ liệu): for agency systems that cannot push to the gateway, poll their
"changes since cursor" feed into ``dossier.events``.

The feed contract an agency system serves::

    GET <base>/agencies/<agency>/changes?cursor=<cursor>&limit=<n>
    200 {"changes": [{"change_id": "17", "event": {...canonical event...}}, ...],
         "next_cursor": 18, "more": false}

- ``cursor`` is opaque to the hub: it sends back the ``next_cursor`` of the last page it has
  committed, and leaves the parameter out on its very first poll (from the beginning).
- ``limit`` is the most changes the hub wants in one page; a system may send fewer.
- ``change_id`` (string or number) is unique within the system and stable across re-polls.
- ``event`` is an event in the canonical JSON of DESIGN section 4, published by ``<agency>``
  itself. Without an ``event_id`` it gets ``uuid5(PULL_NAMESPACE, "<system>|<change_id>")``,
  so the same change polled twice is the same event.
- ``more`` is true when changes beyond this page are already waiting (the hub polls again at
  once); an empty page with ``more`` false means "caught up".

The cursor is committed (an fsync'd file per agency) only after Kafka acknowledged every record
of the page; a change that is not a valid event is produced to ``deadletter`` (reason, detail,
source ``pull:<agency>``) and the feed moves on.
"""

from lienthong.connectors.pull.changes import (
    INVALID_CHANGE,
    PULL_NAMESPACE,
    FeedError,
    Outcome,
    Page,
    derive_event_id,
    parse_page,
    prepare,
)
from lienthong.connectors.pull.connector import PollResult, PullConnector, feed_url
from lienthong.connectors.pull.cursor import CursorError, CursorFile

__all__ = [
    "INVALID_CHANGE", "PULL_NAMESPACE", "CursorError", "CursorFile", "FeedError", "Outcome",
    "Page", "PollResult", "PullConnector", "derive_event_id", "feed_url", "parse_page",
    "prepare",
]
