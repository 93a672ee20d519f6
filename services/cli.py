"""The one command line, ``lienthong``, with a subcommand per part of the hub.

Each subcommand lives in the module that owns it. A module listed in ``COMMANDS`` exposes
``add_arguments(parser)`` and ``run(args) -> int``; it is imported only when its subcommand
runs, so ``lienthong replay`` never pays for importing faust or kafka.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lienthong.services.domain.catalogue import Catalogue

class StartupProblem(Exception):
    """What a subcommand cannot start without (an unreadable catalogue, no Kafka address):
    ``main`` prints ``lienthong COMMAND: <message>`` and exits with status 2."""


def load_catalogue_or_stop(path: Any) -> Catalogue:
    """The province catalogue at ``path``, or a ``StartupProblem`` naming the file and why."""
    from lienthong.services.domain.catalogue import CatalogueError, load_catalogue

    try:
        return load_catalogue(path)
    except (OSError, CatalogueError) as exc:
        raise StartupProblem(f"catalogue {path}: {exc}") from None


def require_bootstrap(bootstrap: str | None) -> str:
    """The Kafka address, or a ``StartupProblem`` saying how to give one."""
    if not bootstrap:
        raise StartupProblem("no Kafka address; pass --bootstrap or set KAFKA_BOOTSTRAP_SERVERS")
    return bootstrap


# subcommand -> (module, one-line help). Nested groups ("catalog check") use a space.
COMMANDS: dict[str, tuple[str, str]] = {}


def register(name: str, module: str, summary: str) -> None:
    COMMANDS[name] = (module, summary)


register("up", "lienthong.services.up",
         "run the whole hub on this machine (embedded Kafka, worker, gateway, dashboard, demo)")
register("broker", "lienthong.deploy.embedded.cli", "run the embedded Apache Kafka broker (KRaft)")
register("worker", "lienthong.services.processors.cli",
         "run a stream-processing worker (tracker + deadline sweeper)")
register("replay", "lienthong.services.domain.replay_cli",
         "run the domain core over canonical JSON events, no broker")
register("catalog", "lienthong.services.domain.catalogue_cli",
         "check or publish a province catalogue (catalog check FILE)")
register("gateway", "lienthong.connectors.gateway.cli",
         "run the signed HTTP gateway for agency systems (POST /v1/events)")
register("delivery", "lienthong.connectors.delivery.cli",
         "deliver the deliveries topic to destination agencies over HTTP")
register("dashboard", "lienthong.services.ops.cli",
         "serve the operations dashboard; manage its operators (dashboard users add NAME)")
register("report", "lienthong.services.ops.report_cli",
         "export the agency scoreboard and Decision 766 table for a period (CSV or Excel)")
register("notify", "lienthong.connectors.notify.cli",
         "send alerts to the agency responsible (webhook or e-mail) and a daily digest")
register("conformance", "lienthong.connectors.conformance.cli",
         "check a vendor's integration against a hub: signing, contract, rejections, inbox")
register("correct", "lienthong.services.ops.correct_cli",
         "void a wrong event of a dossier or enter a correcting one (operators allowed to)")
register("citizen-notify", "lienthong.connectors.citizen.cli",
         "tell applicants by SMS, Zalo OA or e-mail what happens to their dossiers")
register("deadletter", "lienthong.connectors.delivery.deadletter_cli",
         "list parked messages or re-send them (deadletter list|resend)")
register("doubles", "lienthong.connectors.doubles.cli",
         "serve test doubles of agency systems, VNPost and DVCQG on one port")
register("simulate", "lienthong.connectors.simulator.cli",
         "play the province's agency systems through the gateway (or write JSONL)")
register("pull", "lienthong.connectors.pull.cli",
         "poll an agency system's change feed into dossier.events (cursor saved after Kafka acks)")
register("postal", "lienthong.connectors.postal.cli",
         "receive VNPost tracking webhooks into dossier.events (POST /v1/postal/vnpost)")
register("portal", "lienthong.connectors.national_portal.cli",
         "reconcile dossier statuses with the national portal (DVCQG); raise portal_drift")
register("backup", "lienthong.services.backup.backup_cli",
         "back up every hub topic, the catalogue, accounts and audit log (manifest + SHA-256)")
register("restore", "lienthong.services.backup.restore_cli",
         "restore a backup into empty topics after checking its hashes (--force to overwrite)")
register("audit", "lienthong.services.audit.cli",
         "hash-chained audit log: audit key|chain|verify|copy|export (tamper-evident record)")
register("chaos", "lienthong.services.reliability.chaos",
         "fault scenarios under load, each checked for lost and repeated outputs (bounded)")


def _version() -> str:
    try:
        return version("lienthong")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<12} {summary}" for name, (_, summary) in sorted(COMMANDS.items()))
    parser = argparse.ArgumentParser(
        prog="lienthong",
        description="lienthong: the inter-agency interconnection hub (liên thông) for one-stop "
        "administrative procedures.",
        epilog=f"commands:\n{lines}\n\nRun 'lienthong COMMAND --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lienthong {_version()}")
    parser.add_argument("command", nargs="?", help="one of the commands below")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not args or args[0].startswith("-"):
        top.parse_args(args)
        top.print_help()
        return 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        top.error(f"unknown command {name!r}; choose from {', '.join(sorted(COMMANDS))}")
    module_name, summary = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"lienthong {name}", description=summary)
    module.add_arguments(parser)
    parsed = parser.parse_args(rest)
    try:
        return int(module.run(parsed) or 0)
    except StartupProblem as problem:
        print(f"lienthong {name}: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
