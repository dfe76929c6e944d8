"""A bounded load of POST /events from clients that retry as a careful satellite would.

Each worker sends batches of fresh events. A batch is retried with the very same body on a
``5xx`` or a connection error (never on a ``4xx``), waiting what ``Retry-After`` says (capped, so
a test stays short), until it is answered ``202`` or the retry deadline passes. Every answer is
recorded with its time, so a test can say what happened before and after a fault healed.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

# Longest wait between two tries of one batch, whatever Retry-After says.
MAX_BACKOFF_S = 1.0


@dataclass(frozen=True, slots=True)
class Answer:
    """One try: when it ended (monotonic), its status (0: connection error), Retry-After."""

    at: float
    status: int
    retry_after: str | None
    error: str = ""
    elapsed_s: float = 0.0
    code: str = ""


@dataclass
class LoadResult:
    """What the clients saw: every answer, the acknowledged ids, the batches never accepted."""

    answers: list[Answer] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    abandoned: list[list[str]] = field(default_factory=list)

    def server_errors(self, since: float = 0.0) -> list[Answer]:
        """5xx answers from ``since`` on, not counting a 503 that carries Retry-After."""
        return [
            a
            for a in self.answers
            if a.at >= since and a.status >= 500 and not (a.status == 503 and a.retry_after)
        ]

    def unavailable_without_retry_after(self) -> list[Answer]:
        return [a for a in self.answers if a.status == 503 and not a.retry_after]

    def first_accepted_after(self, moment: float) -> float | None:
        return min((a.at for a in self.answers if a.at >= moment and a.status == 202), default=None)

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for answer in self.answers:
            counts[answer.status] = counts.get(answer.status, 0) + 1
        return dict(sorted(counts.items()))


def event(workspace_id: str) -> dict[str, Any]:
    """A fresh valid envelope."""
    return {
        "event_id": str(uuid.uuid4()),
        "schema_version": 1,
        "ts": datetime.now(UTC).isoformat(),
        "workspace_id": workspace_id,
        "satellite_id": "sat-load",
        "trace_id": str(uuid.uuid4()),
        "type": "finding.logged",
        "severity": "low",
        "confidence": 0.5,
        "payload": {"note": "load", "password": "hunter2"},
    }


class Load:
    """``workers`` threads posting batches of ``batch`` events for ``duration_s`` seconds (or
    until :meth:`stop_after`); each batch then gets until ``retry_deadline_s`` after the load
    ended to be accepted."""

    def __init__(
        self,
        url: str,
        token: str,
        workspace_id: str,
        *,
        workers: int = 2,
        batch: int = 5,
        duration_s: float = 8.0,
        retry_deadline_s: float = 90.0,
        pause_s: float = 0.05,
        timeout_s: float = 35.0,
    ) -> None:
        split = urlsplit(url)
        self._host, self._port = split.hostname or "127.0.0.1", split.port or 80
        self._token = token
        self._workspace = workspace_id
        self._batch = batch
        self._duration_s = duration_s
        self._retry_deadline_s = retry_deadline_s
        self._pause_s = pause_s
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self.result = LoadResult()
        self.started = 0.0
        self._stop_at = 0.0
        self._threads = [
            threading.Thread(target=self._work, name=f"load-{n}", daemon=True)
            for n in range(workers)
        ]

    def start(self) -> Load:
        self.started = time.monotonic()
        self._stop_at = self.started + self._duration_s
        for thread in self._threads:
            thread.start()
        return self

    def stop_after(self, seconds: float) -> None:
        """End the load ``seconds`` from now (batches in flight still get their retries)."""
        self._stop_at = time.monotonic() + seconds

    def join(self) -> LoadResult:
        for thread in self._threads:
            thread.join(max(0.0, self._stop_at - time.monotonic()) + self._retry_deadline_s + 60)
        assert not any(t.is_alive() for t in self._threads), "a load worker hung"
        return self.result

    def accepted(self) -> int:
        with self._lock:
            return len(self.result.acked)

    def _work(self) -> None:
        while time.monotonic() < self._stop_at:
            give_up_at = self._stop_at + self._retry_deadline_s
            events = [event(self._workspace) for _ in range(self._batch)]
            ids = [e["event_id"] for e in events]
            with self._lock:
                self.result.sent.extend(ids)
            body = json.dumps(events).encode()
            if self._post_until_accepted(body, give_up_at):
                with self._lock:
                    self.result.acked.extend(ids)
            else:
                with self._lock:
                    self.result.abandoned.append(ids)
            time.sleep(self._pause_s)

    def _post_until_accepted(self, body: bytes, give_up_at: float) -> bool:
        while True:
            answer = self._post(body)
            with self._lock:
                self.result.answers.append(answer)
            if answer.status == 202:
                return True
            if 400 <= answer.status < 500 or time.monotonic() >= give_up_at:
                return False
            try:
                wait = float(answer.retry_after or 0.2)
            except ValueError:
                wait = 0.2
            time.sleep(min(max(wait, 0.05), MAX_BACKOFF_S))

    def post_once(self, body: bytes) -> Answer:
        """One try, recorded like the workers' ones."""
        answer = self._post(body)
        with self._lock:
            self.result.answers.append(answer)
        return answer

    def _post(self, body: bytes) -> Answer:
        started = time.monotonic()
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        try:
            conn.request(
                "POST",
                "/events",
                body,
                {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            raw = response.read()
            status, retry_after = response.status, response.getheader("Retry-After")
            error = ""
        except (OSError, http.client.HTTPException) as exc:
            status, retry_after, error, raw = 0, None, f"{type(exc).__name__}: {exc}", b""
        finally:
            conn.close()
        now = time.monotonic()
        return Answer(now, status, retry_after, error, now - started, _code(raw))


def _code(raw: bytes) -> str:
    """The ``error`` field of a JSON error body (or API Gateway's ``message``), else ""."""
    try:
        body = json.loads(raw)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    return str(body.get("error") or body.get("message") or "")
