"""Alerts told to the agency responsible (webhook or e-mail), and a daily digest per agency:
``routing`` decides who hears what, ``service`` reads the topics and sends."""

from lienthong.connectors.notify.routing import AlertRouter, Contact, Notice, contact_for
from lienthong.connectors.notify.service import (
    Dispatcher,
    MailSender,
    NotifyService,
    SentLog,
    SmtpSettings,
    WebhookSender,
)

__all__ = [
    "AlertRouter", "Contact", "Dispatcher", "MailSender", "Notice", "NotifyService", "SentLog",
    "SmtpSettings", "WebhookSender", "contact_for",
]
