"""The whole pipeline on this machine, no Docker: ``python -m local.stack up|down|status|send``."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

from local.envelopes import envelope_dict
from local.esm import mapping_settings
from local.kafka_service import Kafka
from local.postgres_service import Postgres
from local.processes import (
    REPO_ROOT,
    Daemon,
    ServiceError,
    free_ports,
    log_tail,
    port_in_use,
    say,
    stop_all,
)

LAYER_PYTHON = REPO_ROOT / "layers" / "punk_records" / "python"
DEFAULT_DIR = REPO_ROOT / ".local"
DEFAULT_API_PORT = 3000
TOPIC = "punk-records.events.v1"
PARTITIONS = 3
INGEST_FUNCTION = "IngestFunction"
CONSUMER_FUNCTION = "ConsumerFunction"
QUERY_FUNCTION = "QueryFunction"
# The query function's SELECT-only login (migration 0002's read-only group role).
QUERY_LOGIN = "punk_query"
# What the local token may do: everything a newcomer tries first (docs/tokens.md).
LOCAL_TOKEN_ID = "local"  # noqa: S105 (the id shown in logs, not a token)
LOCAL_SCOPES = ("events:write", "events:read", "dead_letters:read", "memory:read")
READY_TIMEOUT_S = 120
# The functions' default MAX_RECORD_BYTES (punk_records.config), which the topic must take. This
# process does not import the layer package: like Lambda, only the functions see it.
DEFAULT_MAX_RECORD_BYTES = 1_048_576


class StackError(RuntimeError):
    """A step of ``up`` failed; the message says which and why."""


# ---------------------------------------------------------------------------- the stack


def sample_event() -> dict[str, Any]:
    """A fresh valid envelope (new ids, current time) for ``send`` and the printed curl."""
    return envelope_dict(
        workspace_id="ws-demo",
        satellite_id="sat-local",
        severity="low",
        confidence=0.9,
        payload={"summary": "hello from the local stack"},
    )


class Stack:
    """Kafka, PostgreSQL, the HTTP API + ingest function, and the ESM + consumer function.

    Everything lives under ``root`` (``.local/`` by default): service data, logs, pid files,
    the generated token and ``stack.env``.
    """

    def __init__(self, root: Path = DEFAULT_DIR, fast_postgres: bool = False) -> None:
        self.root = root.resolve()
        self.logs = self.root / "logs"
        services = self.root / "services"
        self.kafka = Kafka(services / "kafka")
        self.postgres = Postgres(services / "postgres", fast=fast_postgres)
        self.state_file = self.root / "stack.json"
        self.env_file = self.root / "stack.env"
        self.functions_env = self.root / "functions.env.json"
        self.esm_ready = self.root / "esm.ready"
        self.api_instances = self.root / "instances"
        self.api = Daemon("api", self.root / "api.pid", self.logs / "api.log", str(self.root))
        self.esm = Daemon("esm", self.root / "esm.pid", self.logs / "esm.log", str(self.root))

    @property
    def max_record_bytes(self) -> int:
        """``MAX_RECORD_BYTES`` from this environment (or its default): the topic's limit."""
        value = os.environ.get("MAX_RECORD_BYTES", str(DEFAULT_MAX_RECORD_BYTES))
        if not value.isdigit():
            raise StackError(f"MAX_RECORD_BYTES must be a number of bytes, not {value!r}")
        return int(value)

    # -- state kept across runs
    def _state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _save_state(self, state: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.chmod(0o600)
        tmp.replace(self.state_file)

    def token(self) -> str:
        return self._state()["token"]

    def api_tokens(self) -> str:
        """``API_TOKENS`` of both functions: the local token, on every workspace, with
        :data:`LOCAL_SCOPES`; only its SHA-256 is in the file."""
        entry = {
            "id": LOCAL_TOKEN_ID,
            "sha256": hashlib.sha256(self.token().encode()).hexdigest(),
            "workspaces": ["*"],
            "scopes": list(LOCAL_SCOPES),
        }
        return json.dumps({"tokens": [entry]})

    def query_database_url(self) -> str:
        """The query function's connection string: its own SELECT-only login."""
        password = self._state()["query_password"]
        return make_conninfo(self.postgres.dsn, user=QUERY_LOGIN, password=password)

    def api_port(self) -> int:
        return int(self._state()["api_port"])

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port()}"

    def ensure_state(self, api_port: int | None) -> None:
        state = self._state()
        state.setdefault("token", secrets.token_urlsafe(24))
        state.setdefault("cursor_key", secrets.token_urlsafe(48))
        state.setdefault("query_password", secrets.token_urlsafe(24))
        if api_port is not None:
            state["api_port"] = api_port or free_ports(1)[0]
        elif "api_port" not in state:
            state["api_port"] = (
                free_ports(1)[0] if port_in_use(DEFAULT_API_PORT) else DEFAULT_API_PORT
            )
        self._save_state(state)

    def environment(self) -> dict[str, str]:
        """What ``stack.env`` holds."""
        return {
            "PUNK_API_URL": self.api_url,
            "PUNK_API_TOKEN": self.token(),
            "PUNK_DATABASE_URL": self.postgres.dsn,
            "PUNK_KAFKA_BOOTSTRAP": self.kafka.bootstrap,
            "PUNK_KAFKA_TOPIC": TOPIC,
        }

    def write_files(self) -> None:
        env = self.environment()
        self.env_file.write_text(
            "# Written by `make up`; source it: set -a; . .local/stack.env; set +a\n"
            + "".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items())
        )
        self.env_file.chmod(0o600)
        # The functions' environment, in the `sam local invoke --env-vars` format.
        functions = {
            "Parameters": {
                "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap,
                "KAFKA_TOPIC": TOPIC,
                "KAFKA_AUTH_MODE": "none",
                "DATABASE_URL": self.postgres.dsn,
                "MAX_RECORD_BYTES": str(self.max_record_bytes),
            },
            INGEST_FUNCTION: {"API_TOKENS": self.api_tokens()},
            CONSUMER_FUNCTION: {},
            QUERY_FUNCTION: {
                "API_TOKENS": self.api_tokens(),
                "CURSOR_KEY": self._state()["cursor_key"],
                "DATABASE_URL": self.query_database_url(),
            },
        }
        self.functions_env.write_text(json.dumps(functions, indent=2) + "\n")
        self.functions_env.chmod(0o600)
        self.logs.mkdir(parents=True, exist_ok=True)
        for name, target in (
            ("kafka.log", self.kafka.log_file),
            ("postgres.log", self.postgres.log_file),
        ):
            link = self.logs / name
            if not link.is_symlink():
                link.unlink(missing_ok=True)
                link.symlink_to(target)

    def _child_env(self) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(LAYER_PYTHON), os.environ.get("PYTHONPATH")) if p)
        return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}

    # -- up
    def up(self, api_port: int | None = None) -> None:
        """Start (or reuse) every part, wait until each is ready; raise StackError."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.ensure_state(api_port)
        steps: list[tuple[str, Callable[[], str]]] = [
            ("Kafka", self._start_kafka),
            ("PostgreSQL", self._start_postgres),
            (f"topic {TOPIC}", self._create_topic),
            ("migrations", self._migrate),
            ("HTTP API + ingest and query functions", self._start_api),
            ("event source mapping + consumer function", self._start_esm),
        ]
        for number, (what, step) in enumerate(steps, 1):
            say(f"[{number}/{len(steps)}] {what} ...")
            started = time.monotonic()
            try:
                outcome = step()
            except (ServiceError, StackError) as exc:
                raise StackError(f"{what} failed: {exc}") from None
            say(f"      {outcome} ({time.monotonic() - started:.1f}s)")

    def _start_kafka(self) -> str:
        reused = self.kafka.is_running()
        self.kafka.start()
        return f"{'already running' if reused else 'started'} on {self.kafka.bootstrap}"

    def _start_postgres(self) -> str:
        reused = self.postgres.is_running()
        self.postgres.start()
        self.write_files()
        return f"{'already running' if reused else 'started'} on 127.0.0.1:{self.postgres.port}"

    def _create_topic(self) -> str:
        # The broker must take every record the producer may send (MAX_RECORD_BYTES).
        limit = str(self.max_record_bytes)
        self.kafka.create_topic(TOPIC, PARTITIONS, configs={"max.message.bytes": limit})
        return f"{PARTITIONS} partitions, max.message.bytes {limit}"

    def _migrate(self) -> str:
        # In a child with the layer on PYTHONPATH, the way Lambda imports the package.
        result = subprocess.run(
            [sys.executable, "-m", "local.migrate", "--query-login-url", self.query_database_url()],
            env={**self._child_env(), "DATABASE_URL": self.postgres.dsn},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError((result.stdout + result.stderr).strip())
        return result.stdout.strip()

    def _start_api(self) -> str:
        url = self.api_url
        if self.api.is_running():
            self._wait(self.api, lambda: self._healthy(url), "GET /health to answer 200")
            return f"already running on {url}"
        if port_in_use(self.api_port()):
            raise StackError(
                f"port {self.api_port()} is taken by another process; "
                f"free it or change api_port in {self.state_file}"
            )
        self.api.start(
            [
                "local.http_endpoint",
                "--port",
                str(self.api_port()),
                "--function",
                INGEST_FUNCTION,
                "--function",
                QUERY_FUNCTION,
                "--env-vars",
                str(self.functions_env),
                "--state-dir",
                str(self.api_instances),
            ],
            self._child_env(),
        )
        self._wait(self.api, lambda: self._healthy(url), "GET /health to answer 200")
        return f"ready on {url}"

    def _start_esm(self) -> str:
        settings = mapping_settings()
        where = f"{TOPIC} as group {settings.group_id}"
        if self.esm.is_running():
            self._wait(self.esm, self.esm_ready.exists, "partition assignment")
            return f"already running, polling {where}"
        self.esm_ready.unlink(missing_ok=True)  # left behind by a poller that was killed
        self.esm.start(
            [
                "local.esm",
                "--bootstrap-servers",
                self.kafka.bootstrap,
                "--topic",
                TOPIC,
                "--group-id",
                settings.group_id,
                "--starting-position",
                settings.starting_position,
                "--batch-size",
                str(settings.batch_size),
                "--window-ms",
                str(settings.window_ms),
                "--function",
                CONSUMER_FUNCTION,
                "--env-vars",
                str(self.functions_env),
                "--ready-file",
                str(self.esm_ready),
            ],
            self._child_env(),
        )
        self._wait(self.esm, self.esm_ready.exists, "partition assignment")
        return (
            f"polling {where} (batch size {settings.batch_size}, "
            f"window {settings.window_ms} ms, from {settings.starting_position})"
        )

    def _wait(self, daemon: Daemon, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready():
            daemon.record_emulators()
            if daemon.has_exited():
                raise StackError(f"the {daemon.name} process exited\n{log_tail(daemon.log_file)}")
            if time.monotonic() > deadline:
                raise StackError(
                    f"no {what} within {READY_TIMEOUT_S}s\n{log_tail(daemon.log_file)}"
                )
            time.sleep(0.2)
        daemon.record_emulators()

    @staticmethod
    def _healthy(url: str) -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:  # noqa: S310 - our URL
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    # -- down / status
    def down(self) -> None:
        """Stop everything ``up`` started; idempotent. Data and the token stay."""
        for daemon in (self.esm, self.api):
            daemon.stop()
        self.esm_ready.unlink(missing_ok=True)
        stop_all([("Kafka", self.kafka.stop), ("PostgreSQL", self.postgres.stop)])

    def instances(self, function: str = INGEST_FUNCTION) -> dict[str, Any]:
        """A function's instances behind the HTTP API and how often one was replaced
        (``{"restarts": n, "instances": [{"number", "pid", "started", "invocations"}]}``)."""
        try:
            return json.loads((self.api_instances / f"{function}.instances.json").read_text())
        except (OSError, ValueError):
            return {"restarts": 0, "instances": []}

    def status(self) -> dict[str, tuple[bool, str]]:
        """Each part: (running, where)."""
        port = self._state().get("api_port")
        api_pid, esm_pid = self.api.pid(), self.esm.pid()
        api = f"http://127.0.0.1:{port}"
        if api_pid:
            api += f" (pid {api_pid})"
            for function in (INGEST_FUNCTION, QUERY_FUNCTION):
                pool = self.instances(function)
                pids = ", ".join(str(i["pid"]) for i in pool["instances"])
                api += (
                    f"; {function}: {len(pool['instances'])} instances (pids {pids}), "
                    f"restarts {pool['restarts']}"
                )
        return {
            "kafka": (self.kafka.is_running(), self.kafka.bootstrap),
            "postgres": (self.postgres.is_running(), self.postgres.dsn),
            "api": (api_pid is not None, api),
            "esm": (
                esm_pid is not None,
                f"topic {TOPIC}" + (f" (pid {esm_pid})" if esm_pid else ""),
            ),
        }

    # -- send
    def send(self, body: bytes) -> tuple[int, str]:
        """POST ``body`` to ``/events`` with the stack's token; return (status, response text)."""
        request = urllib.request.Request(  # noqa: S310 - our own local URL
            f"{self.api_url}/events",
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=35) as response:  # noqa: S310
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")


def _psql() -> str:
    if shutil.which("psql"):
        return "psql"
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))
    return str(candidates[-1]) if candidates else "psql"


def summary(stack: Stack) -> str:
    env = stack.environment()
    sample = sample_event()
    body = json.dumps(sample, separators=(",", ":"))
    query = (
        "SELECT event_id, type, workspace_id, received_at FROM events "
        "ORDER BY received_at DESC LIMIT 5"
    )
    return "\n".join(
        [
            "",
            "Punk Records is up.",
            f"  API URL       {env['PUNK_API_URL']}",
            f"  API token     {env['PUNK_API_TOKEN']}  (id {LOCAL_TOKEN_ID!r}: "
            f"{', '.join(LOCAL_SCOPES)} on every workspace)",
            f"  database URL  {env['PUNK_DATABASE_URL']}",
            f"  Kafka         {env['PUNK_KAFKA_BOOTSTRAP']}  topic {TOPIC}",
            f"  logs          {stack.logs}/",
            f"  settings      {stack.env_file}",
            "",
            "Send an event:",
            f"  curl -sS -X POST {env['PUNK_API_URL']}/events \\",
            f"    -H 'Authorization: Bearer {env['PUNK_API_TOKEN']}' \\",
            "    -H 'Content-Type: application/json' \\",
            f"    -d '{body}'",
            "",
            "Read it back a moment later (GET /events, keyset pages; docs/query.md):",
            f"  curl -sS '{env['PUNK_API_URL']}/events?workspace_id={sample['workspace_id']}"
            "&limit=10' \\",
            f"    -H 'Authorization: Bearer {env['PUNK_API_TOKEN']}'",
            "",
            "Or in PostgreSQL:",
            f"  {_psql()} '{env['PUNK_DATABASE_URL']}' -c '{query}'",
            "",
            "Stop everything: make down",
        ]
    )


# ---------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``up`` / ``down`` / ``status`` / ``send``."""
    parser = argparse.ArgumentParser(prog="python -m local.stack", description=__doc__)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state dir (%(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start or reuse everything, wait until ready")
    up.add_argument("--api-port", type=int, help=f"default {DEFAULT_API_PORT}, 0 = any free port")
    up.add_argument("--fast-postgres", action="store_true", help="no fsync (throwaway data)")
    sub.add_parser("down", help="stop everything up started")
    sub.add_parser("status", help="say what runs")
    send = sub.add_parser("send", help="POST a sample event, or a JSON file of events")
    send.add_argument("file", nargs="?", type=Path, help="one event, an array, or {'events': []}")
    args = parser.parse_args(argv)

    stack = Stack(args.dir, fast_postgres=getattr(args, "fast_postgres", False))
    if args.command == "up":
        started = time.monotonic()
        try:
            stack.up(args.api_port)
        except StackError as exc:
            say(f"error: {exc}\n(`make down` stops what did start)")
            return 1
        print(summary(stack))
        say(f"ready in {time.monotonic() - started:.1f}s")
        return 0
    if args.command == "down":
        stack.down()
        print("stopped")
        return 0
    if args.command == "status":
        states = stack.status()
        for name, (running, where) in states.items():
            print(f"{name:<9} {'running' if running else 'stopped':<8} {where}")
        print(f"logs in {stack.logs}/")
        return 0 if all(running for running, _ in states.values()) else 1
    if not stack.api.is_running():
        say("the stack is not running: make up")
        return 1
    body = args.file.read_bytes() if args.file else json.dumps(sample_event()).encode()
    status, text = stack.send(body)
    print(f"HTTP {status}")
    with contextlib.suppress(ValueError):
        text = json.dumps(json.loads(text), indent=2)
    print(text)
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
