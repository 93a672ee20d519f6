"""The one settings loader: every tunable of the hub, read from the environment.

Each field names the environment variable that sets it and its default. Components receive a
``Settings`` from the composition root; nothing else reads ``os.environ``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


# The sample province shipped with the source tree (the default catalogue of the demo).
SAMPLE_CATALOGUE = Path(__file__).resolve().parents[1] / "examples" / "province-h99.yaml"


@dataclass(frozen=True)
class Settings:
    """Hub settings. ``Settings.from_env()`` reads ``LIENTHONG_*`` and ``KAFKA_*`` variables."""

    #: KAFKA_BOOTSTRAP_SERVERS — use an existing cluster; unset means the embedded broker.
    kafka_bootstrap_servers: str | None = field(
        default=None, metadata={"env": "KAFKA_BOOTSTRAP_SERVERS"}
    )
    #: LIENTHONG_DATA_DIR — broker data, spools, local state.
    data_dir: Path = field(default=Path("var"), metadata={"env": "LIENTHONG_DATA_DIR"})
    #: LIENTHONG_CATALOG — the province catalogue (YAML or JSON).
    catalog_path: Path = field(default=SAMPLE_CATALOGUE,
                               metadata={"env": "LIENTHONG_CATALOG"})
    #: LIENTHONG_APP_ID — faust app id; workers with the same id share partitions.
    app_id: str = field(default="lienthong", metadata={"env": "LIENTHONG_APP_ID"})
    #: LIENTHONG_PARTITIONS — partitions of dossier.events and deliveries.
    partitions: int = field(default=8, metadata={"env": "LIENTHONG_PARTITIONS"})
    #: LIENTHONG_REPLICATION — replication factor of hub topics (3 in production).
    replication_factor: int = field(default=1, metadata={"env": "LIENTHONG_REPLICATION"})
    #: LIENTHONG_GATEWAY_PORT — the inbound gateway's HTTP port.
    gateway_port: int = field(default=8400, metadata={"env": "LIENTHONG_GATEWAY_PORT"})
    #: LIENTHONG_WORKER_PORT — the worker's web port (/metrics, dashboard).
    worker_port: int = field(default=6066, metadata={"env": "LIENTHONG_WORKER_PORT"})
    #: LIENTHONG_HOST — address servers bind to.
    host: str = field(default="127.0.0.1", metadata={"env": "LIENTHONG_HOST"})
    #: LIENTHONG_CACHE_DIR — downloaded tools, e.g. the embedded Kafka broker's jars.
    cache_dir: Path = field(default=Path.home() / ".cache" / "lienthong",
                            metadata={"env": "LIENTHONG_CACHE_DIR"})
    #: LIENTHONG_KAFKA_VERSION — embedded broker version; unset means the one pinned in the pom.
    kafka_version: str | None = field(default=None, metadata={"env": "LIENTHONG_KAFKA_VERSION"})
    #: LIENTHONG_CLOCK — "wall", or "scaled:ISO-INSTANT:SPEED" for accelerated demo/test time.
    clock: str = field(default="wall", metadata={"env": "LIENTHONG_CLOCK"})
    #: LIENTHONG_KEYS_FILE — per-agency HMAC keys (never in the repository).
    keys_file: Path | None = field(default=None, metadata={"env": "LIENTHONG_KEYS_FILE"})
    #: LIENTHONG_TOPIC_PREFIX — prepended to every hub topic name (isolates test runs or
    #: several hubs on one cluster); empty by default.
    topic_prefix: str = field(default="", metadata={"env": "LIENTHONG_TOPIC_PREFIX"})
    #: LIENTHONG_DASHBOARD_PORT — the operations dashboard's HTTP port (pages, /events, /metrics).
    dashboard_port: int = field(default=8500, metadata={"env": "LIENTHONG_DASHBOARD_PORT"})
    #: LIENTHONG_DASHBOARD_USERS — operator accounts file (never in the repository).
    dashboard_users: Path | None = field(default=None,
                                         metadata={"env": "LIENTHONG_DASHBOARD_USERS"})

    #: LIENTHONG_AUDIT_KEY — the hub's Ed25519 private key (PEM) that signs audit checkpoints
    #: (never in the repository; ``lienthong audit key --create FILE`` makes one).
    audit_key_file: Path | None = field(default=None, metadata={"env": "LIENTHONG_AUDIT_KEY"})

    #: LIENTHONG_SMTP_PASSWORD — password for the SMTP relay of ``lienthong notify`` (only
    #: when the relay asks for a login; never on the command line).
    smtp_password: str | None = field(default=None, repr=False,
                                      metadata={"env": "LIENTHONG_SMTP_PASSWORD"})

    #: LIENTHONG_CITIZEN_PORT — ``citizen-notify``'s HTTP port: providers' webhooks (delivery
    #: reports, replies, Zalo events), /metrics, /healthz.
    citizen_port: int = field(default=8600, metadata={"env": "LIENTHONG_CITIZEN_PORT"})
    #: LIENTHONG_CITIZEN_PUBLIC_URL — where providers reach those webhooks (behind the data
    #: centre's reverse proxy); unset: http://HOST:CITIZEN_PORT.
    citizen_public_url: str | None = field(default=None,
                                           metadata={"env": "LIENTHONG_CITIZEN_PUBLIC_URL"})
    #: LIENTHONG_CITIZEN_QUIET_HOURS — local hours with no SMS ("21:00-07:00", or "off").
    citizen_quiet_hours: str = field(default="21:00-07:00",
                                     metadata={"env": "LIENTHONG_CITIZEN_QUIET_HOURS"})
    #: LIENTHONG_SMS_URL — the brandname SMS gateway's base URL; unset: no SMS.
    sms_url: str | None = field(default=None, metadata={"env": "LIENTHONG_SMS_URL"})
    #: LIENTHONG_SMS_TOKEN — its API token (secret: environment only).
    sms_token: str | None = field(default=None, repr=False,
                                  metadata={"env": "LIENTHONG_SMS_TOKEN"})
    #: LIENTHONG_SMS_BRANDNAME — the registered sender name shown on the phone.
    sms_brandname: str = field(default="MOTCUA", metadata={"env": "LIENTHONG_SMS_BRANDNAME"})
    #: LIENTHONG_ZALO_URL — the Zalo OA API's base URL (https://openapi.zalo.me); unset: no Zalo.
    zalo_url: str | None = field(default=None, metadata={"env": "LIENTHONG_ZALO_URL"})
    #: LIENTHONG_ZALO_TOKEN — the OA's access token (secret: environment only).
    zalo_token: str | None = field(default=None, repr=False,
                                   metadata={"env": "LIENTHONG_ZALO_TOKEN"})
    #: LIENTHONG_CITIZEN_CALLBACK_TOKEN — the ``?token=`` providers put on webhook calls.
    citizen_callback_token: str | None = field(
        default=None, repr=False, metadata={"env": "LIENTHONG_CITIZEN_CALLBACK_TOKEN"})

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings from the environment; ``overrides`` (e.g. command-line options) win.

        An override of ``None`` means "not given" and leaves the environment's value; text is
        converted like the environment's (``"8"`` for an int field, a path for a Path field).
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = overrides.get(f.name)
            source = f"--{f.name.replace('_', '-')}"
            if raw is None:
                raw, source = _env(f.metadata["env"]), f.metadata["env"]
            if raw is None:
                continue
            values[f.name] = _convert(f.type, raw, source)
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        return cls(**values)


def _convert(kind: Any, raw: Any, source: str) -> Any:
    if not isinstance(raw, str):
        return raw
    name = kind if isinstance(kind, str) else getattr(kind, "__name__", "")
    if "int" in name:
        try:
            return int(raw)
        except ValueError as exc:
            raise ValueError(f"{source}={raw!r} is not an integer") from exc
    if "Path" in name:
        return Path(raw)
    return raw
