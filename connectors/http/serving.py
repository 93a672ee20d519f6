"""Running an aiohttp app as a command: listen, say where, serve until SIGINT/SIGTERM, clean up.

    await serve_app(app, args.host, args.port,
                    banner=lambda port: f"lienthong gateway listening on http://...:{port}")

Every long-running ``lienthong`` server shares this block so that they all stop the same way:
the first SIGINT or SIGTERM sets the stop event, the app's cleanup runs (publishers flushed,
spools closed) and the call returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable

from aiohttp import web


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT or SIGTERM (where the loop supports signal handlers)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


def bound_port(site: web.TCPSite, asked: int) -> int:
    """The port ``site`` listens on (the one the system picked when ``asked`` was 0)."""
    sockets = getattr(site._server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else asked


@contextlib.asynccontextmanager
async def listening(app: web.Application, host: str = "127.0.0.1",
                    port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (0: a free port) while the block runs; yields the base
    URL ``http://host:port``. Used by the servers below, the doubles and the tests."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        yield f"http://{host}:{bound_port(site, port)}"
    finally:
        await runner.cleanup()


async def serve_app(app: web.Application, host: str, port: int, *,
                    banner: Callable[[int], str],
                    stop: asyncio.Event | None = None) -> None:
    """Serve ``app`` on ``host:port`` until ``stop`` is set or a stop signal arrives.

    ``banner(bound_port)`` is printed (flushed) once the socket listens, so a parent process or
    a test can read the port from the first line of output.
    """
    async with listening(app, host, port) as url:
        print(banner(int(url.rsplit(":", 1)[1])), flush=True)
        stop = stop or asyncio.Event()
        stop_on_signals(stop)
        await stop.wait()
