"""Citizen notifications (thông báo cho người dân): the applicant is told by SMS, Zalo OA or
e-mail when the dossier is received, handed on, needs supplements, is late (the apology and
the new date), and when the result is ready or sent by post.

The decisions (templates, channels, quiet hours, message ids, opt-out) are the pure core in
``lienthong.services.domain.citizen``; here are the shell's parts: ``store`` (committed
progress in SQLite), ``senders`` (one interface, three channels), ``service`` (the Kafka and
webhook shell) and ``cli`` (``lienthong citizen-notify``).
"""

from lienthong.connectors.citizen.senders import (
    DeliveryStatus,
    EmailSender,
    Outgoing,
    Sender,
    SendResult,
    SmsSender,
    ZaloSender,
)
from lienthong.connectors.citizen.service import (
    CitizenMetrics,
    CitizenNotifier,
    Topics,
    wording_for,
)
from lienthong.connectors.citizen.store import NoticeStore

__all__ = [
    "CitizenMetrics", "CitizenNotifier", "DeliveryStatus", "EmailSender", "NoticeStore",
    "Outgoing", "SendResult", "Sender", "SmsSender", "Topics", "ZaloSender", "wording_for",
]
