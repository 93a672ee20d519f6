"""A local SMTP sink (hộp thư thử): a real SMTP server on 127.0.0.1 that keeps every message it
accepts, parsed, for tests and demos of e-mailed alerts and digests.

Speaks just enough of RFC 5321 for ``smtplib``: EHLO/HELO, MAIL, RCPT, DATA (with dot
unstuffing), RSET, NOOP, QUIT. No authentication, no TLS: it never leaves the loopback.

    async with SmtpSink() as sink:
        ...send to 127.0.0.1:sink.port...
        await sink.wait_for(1)
        sink.messages[0].message["Subject"]
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

MAX_MESSAGE = 10 * 1024 * 1024


@dataclass(frozen=True)
class Received:
    """One accepted message: the envelope and the parsed content."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    message: EmailMessage

    def text(self) -> str:
        body = self.message.get_body(preferencelist=("plain",))
        return "" if body is None else str(body.get_content())  # type: ignore[union-attr]


def _address(arg: str) -> str:
    start, end = arg.find("<"), arg.rfind(">")
    return arg[start + 1:end] if 0 <= start < end else arg.split(":", 1)[-1].strip()


class SmtpSink:
    """An SMTP server that accepts everything and remembers it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 fail_rcpt: bool = False) -> None:
        self.host, self.port = host, port
        self.fail_rcpt = fail_rcpt      # answer 451 to RCPT: a relay that is down for a while
        self.messages: list[Received] = []
        self._server: asyncio.Server | None = None
        self._arrived = asyncio.Condition()

    async def start(self) -> SmtpSink:
        self._server = await asyncio.start_server(self._session, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SmtpSink:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least ``count`` messages arrived; the messages so far."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.messages) >= count), timeout)
        return list(self.messages)

    async def _session(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        async def reply(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        mail_from: str | None = None
        rcpt: list[str] = []
        try:
            await reply("220 lienthong-smtp-sink ESMTP ready")
            while True:
                raw = await reader.readline()
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                if verb == "EHLO":
                    await reply("250-lienthong-smtp-sink")
                    await reply("250-8BITMIME")
                    await reply("250-SMTPUTF8")
                    await reply(f"250 SIZE {MAX_MESSAGE}")
                elif verb == "HELO":
                    await reply("250 lienthong-smtp-sink")
                elif verb == "MAIL":
                    mail_from, rcpt = _address(arg), []
                    await reply("250 OK")
                elif verb == "RCPT":
                    if mail_from is None:
                        await reply("503 MAIL first")
                    elif self.fail_rcpt:
                        await reply("451 try again later")
                    else:
                        rcpt.append(_address(arg))
                        await reply("250 OK")
                elif verb == "DATA":
                    if mail_from is None or not rcpt:
                        await reply("503 RCPT first")
                        continue
                    await reply("354 end with <CRLF>.<CRLF>")
                    data = await self._read_data(reader)
                    message = BytesParser(policy=policy.default).parsebytes(data)
                    async with self._arrived:
                        self.messages.append(Received(mail_from, tuple(rcpt),
                                                      message))  # type: ignore[arg-type]
                        self._arrived.notify_all()
                    mail_from, rcpt = None, []
                    await reply("250 OK queued")
                elif verb == "RSET":
                    mail_from, rcpt = None, []
                    await reply("250 OK")
                elif verb == "NOOP":
                    await reply("250 OK")
                elif verb == "QUIT":
                    await reply("221 bye")
                    break
                else:
                    await reply("502 command not implemented")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @staticmethod
    async def _read_data(reader: asyncio.StreamReader) -> bytes:
        lines: list[bytes] = []
        size = 0
        while True:
            raw = await reader.readline()
            if not raw or raw in (b".\r\n", b".\n"):
                break
            if raw.startswith(b".."):
                raw = raw[1:]  # dot unstuffing (RFC 5321 4.5.2)
            size += len(raw)
            if size <= MAX_MESSAGE:
                lines.append(raw)
        return b"".join(lines)
