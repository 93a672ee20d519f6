"""The runner of the vendor conformance kit: sends each case over HTTP and judges it.

Requests to the gateway are signed as DESIGN section 7 says: by the kit with the agency's key
from the vendor's keys file (``reference``), or, when the vendor names its own signer program,
by that program (``vendor``): it is run as ``SIGNER METHOD PATH`` with the body on standard
input and prints the four headers as a JSON object. Deliveries to the vendor's inbox are posted
as the hub's delivery service posts them (``Idempotency-Key``; signed as ``LIENTHONG`` when the
keys file holds a hub key). Rows with ``answers_of`` send nothing: they judge the answers
already given to the named row (the receipt rows look at the retried delivery's answers).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from lienthong.connectors.conformance.cases import (
    Answer,
    Case,
    Verdict,
    gateway_cases,
    inbox_cases,
)
from lienthong.connectors.http import KeyRing, new_nonce, signed_headers
from lienthong.services.domain.receipts import ReceiptKeys

HUB_AGENCY = "LIENTHONG"  # how the hub signs its deliveries (connectors/delivery)
WRONG_KEY = b"not-the-agency-key-0123456789abcdef"


class SignerFailed(RuntimeError):
    """The vendor's signer program did not print the four headers."""


@dataclass(frozen=True)
class Row:
    case: Case
    verdict: Verdict


def run_signer(command: str, method: str, path: str, body: bytes,
               timeout: float = 10.0) -> dict[str, str]:
    """Headers from the vendor's signer: ``COMMAND METHOD PATH`` < body, JSON on stdout."""
    try:
        done = subprocess.run([*shlex.split(command), method, path], input=body,
                              capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SignerFailed(f"cannot run the signer {command!r}: {exc}") from exc
    if done.returncode != 0:
        raise SignerFailed(f"the signer exited {done.returncode}: "
                           f"{done.stderr.decode(errors='replace')[:300]}")
    try:
        headers = json.loads(done.stdout)
    except ValueError as exc:
        raise SignerFailed(f"the signer printed no JSON object: {exc}") from exc
    if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise SignerFailed("the signer must print a JSON object of header names to strings")
    return headers


class Kit:
    """Runs the cases against a gateway (and an inbox) for one agency."""

    def __init__(self, gateway: str, agency: str, keys: KeyRing, *, inbox: str | None = None,
                 signer: str | None = None, to_agency: str = "000.00.00.H99",
                 other_agency: str = "000.00.99.H99", timeout: float = 15.0,
                 receipt_keys: ReceiptKeys | None = None) -> None:
        self.gateway = gateway.rstrip("/")
        self.base_path = urlsplit(self.gateway).path.rstrip("/")
        self.agency = agency
        self.keys = keys
        self.inbox = inbox
        self.signer = signer
        self.to_agency = to_agency
        self.other_agency = other_agency
        self.timeout = timeout
        self.receipt_keys = receipt_keys  # the agency's public keys; None: signatures unchecked
        self._answers: dict[str, tuple[Answer, Answer | None]] = {}

    def cases(self, now: datetime) -> list[Case]:
        cases = gateway_cases(self.agency, now, to_agency=self.to_agency,
                              other_agency=self.other_agency,
                              vendor_signer=self.signer is not None)
        if self.inbox is not None:
            cases += inbox_cases(self.agency, now, self.receipt_keys)
        return cases

    def run(self, now: datetime | None = None) -> list[Row]:
        live = self.keys.live_keys(self.agency)
        now = now or datetime.now().astimezone()
        self._answers.clear()
        with httpx.Client(timeout=self.timeout) as client:
            rows = []
            for case in self.cases(now):
                if case.answers_of is not None:
                    rows.append(Row(case, self._judge_again(case)))
                    continue
                if case.target == "gateway" and not live:
                    rows.append(Row(case, Verdict(False, f"the keys file has no live key of "
                                                  f"{self.agency}")))
                    continue
                try:
                    rows.append(Row(case, self._run(client, case)))
                except (httpx.HTTPError, SignerFailed) as exc:
                    rows.append(Row(case, Verdict(False, f"{type(exc).__name__}: {exc}")))
            return rows

    # -- one case --------------------------------------------------------------------------
    def _run(self, client: httpx.Client, case: Case) -> Verdict:
        if case.target == "inbox":
            assert self.inbox is not None
            first = self._send(client, self.inbox, case, self._hub_headers(case))
            again = (self._send(client, self.inbox, case, self._hub_headers(case))
                     if case.twice else None)
            self._answers[case.row] = (first, again)
            return case.judge(first, again)
        url = self.gateway + case.path
        path = self.base_path + case.path
        mode = case.signing.mode
        if mode == "replay":
            headers = self._sign(path, case.body)
            primed = self._send(client, url, case, headers)
            if primed.status != 202:
                return Verdict(False, f"the first, fresh request was not accepted "
                               f"({primed.status}): check the agency's key")
            return case.judge(self._send(client, url, case, headers), None)
        headers = self._headers(mode, path, case.body)
        first = self._send(client, url, case, headers)
        again = (self._send(client, url, case, self._headers(mode, path, case.body))
                 if case.twice else None)
        return case.judge(first, again)

    def _judge_again(self, case: Case) -> Verdict:
        assert case.answers_of is not None
        answers = self._answers.get(case.answers_of)
        if answers is None:
            return Verdict(False, f"nothing to judge: the delivery of {case.answers_of} got "
                           "no answer (see that row)")
        return case.judge(*answers)

    def _headers(self, mode: str, path: str, body: bytes) -> dict[str, str]:
        if mode == "vendor":
            assert self.signer is not None
            return run_signer(self.signer, "POST", path, body)
        if mode == "wrong_key":
            return signed_headers(self.agency, WRONG_KEY, "POST", path, body)
        if mode == "stale":
            return self._sign(path, body, now=time.time() - 600)
        if mode == "none":
            return {}
        return self._sign(path, body)

    def _sign(self, path: str, body: bytes, now: float | None = None) -> dict[str, str]:
        key = self.keys.live_keys(self.agency)[0]
        return signed_headers(self.agency, key.secret, "POST", path, body, now,
                              nonce=new_nonce())

    def _hub_headers(self, case: Case) -> dict[str, str]:
        headers = dict(case.headers)
        hub = self.keys.live_keys(HUB_AGENCY)
        if hub:
            assert self.inbox is not None
            target = urlsplit(self.inbox)
            path = target.path + (f"?{target.query}" if target.query else "")
            headers.update(signed_headers(HUB_AGENCY, hub[0].secret, "POST", path or "/",
                                          case.body))
        return headers

    @staticmethod
    def _send(client: httpx.Client, url: str, case: Case,
              headers: dict[str, str]) -> Answer:
        response = client.post(url, content=case.body,
                               headers={"Content-Type": "application/json", **headers})
        try:
            data: Any = response.json()
        except ValueError:
            data = None
        return Answer(response.status_code, data, dict(response.headers), response.text[:500])


def table(rows: Sequence[Row]) -> str:
    """The pass/fail table, one line per row, then the count."""
    width = max((len(r.case.row) for r in rows), default=10)
    lines = [f"{'check':<{width}}  result  detail"]
    for r in rows:
        mark = "PASS" if r.verdict.passed else "FAIL"
        lines.append(f"{r.case.row:<{width}}  {mark:<6}  {r.case.checks}: {r.verdict.detail}")
    failed = sum(not r.verdict.passed for r in rows)
    lines.append("")
    lines.append(f"{len(rows) - failed} passed, {failed} failed")
    return "\n".join(lines) + "\n"
