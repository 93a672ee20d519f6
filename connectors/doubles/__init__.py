"""Test doubles that are real HTTP servers on 127.0.0.1: agency systems (inbox honouring
``Idempotency-Key``, change feed, faults on demand), VNPost (shipments, tracking webhooks) and
the national portal DVCQG (status syncs, status queries)."""

from lienthong.connectors.doubles.agencies import AgencyDoubles, Faults, Inbox
from lienthong.connectors.doubles.dvcqg import PortalDouble
from lienthong.connectors.doubles.server import (
    Doubles,
    endpoint_for,
    point_catalogue_at,
    point_catalogue_data_at,
    running,
)
from lienthong.connectors.doubles.vnpost import VNPostDouble, tracking_number_for

__all__ = [
    "AgencyDoubles", "Doubles", "Faults", "Inbox", "PortalDouble", "VNPostDouble",
    "endpoint_for", "point_catalogue_at", "point_catalogue_data_at", "running",
    "tracking_number_for",
]
