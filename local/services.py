"""Start and stop the real Kafka broker and PostgreSQL server used locally and by the tests."""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / ".cache"
KAFKA_POM = REPO_ROOT / "local" / "kafka" / "pom.xml"
DEFAULT_DIR = REPO_ROOT / ".local" / "services"

_LOG_TAIL_LINES = 40


class ServiceError(RuntimeError):
    """A service could not be prepared, started or stopped; the message says why."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _log_tail(path: Path, start: int = 0, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last lines of a log written since byte offset ``start``."""
    try:
        with path.open("rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)


def _run(
    cmd: Sequence[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a short command, raising ServiceError with its output when it fails."""
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()[-_LOG_TAIL_LINES:]
        raise ServiceError(f"{what} failed (exit {result.returncode}):\n" + "\n".join(output))
    return result


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise a one-time setup step across processes (e.g. parallel test workers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------- ports


def free_ports(count: int) -> list[int]:
    """Pick distinct free loopback ports (all sockets held open until every port is chosen)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_in_use(port: int) -> bool:
    """Whether something already listens on (or holds) loopback ``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # The servers bind with SO_REUSEADDR too: TIME_WAIT leftovers of our last run don't count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _resolve_ports(data_dir: Path, wanted: dict[str, int | None]) -> dict[str, int]:
    """Ports for the ``wanted`` keys: the explicit ones, else those in ports.json, else free ones.

    The choice is saved so a later instance on the same data_dir (e.g. ``up`` then ``down``, or
    a restart) finds the service where it was.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "ports.json"
    with _file_lock(data_dir / ".ports.lock"):
        saved: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
        missing = [key for key, port in wanted.items() if port is None and key not in saved]
        ports = dict(zip(missing, free_ports(len(missing)), strict=True))
        for key, port in wanted.items():
            if key not in ports:
                ports[key] = port if port is not None else saved[key]
        if any(saved.get(key) != port for key, port in ports.items()):
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({**saved, **ports}, indent=2, sort_keys=True) + "\n")
            tmp.replace(path)
    return ports


def _check_ports_free(ports: dict[str, int], data_dir: Path) -> None:
    busy = [f"{name} port {port}" for name, port in ports.items() if port_in_use(port)]
    if busy:
        raise ServiceError(
            f"{', '.join(busy)} already in use by another process on 127.0.0.1; "
            f"stop it, or pass other ports (saved in {data_dir / 'ports.json'})"
        )


# ---------------------------------------------------------------------------- processes


def _pid_alive(pid: int, marker: str) -> bool:
    """True if ``pid`` is a live (non-zombie) process whose command line contains ``marker``."""
    proc = Path("/proc") / str(pid)
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except (OSError, IndexError):
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap our own exited child
        return False
    # While execve replaces the image (the java launcher re-executes itself) the command line
    # reads empty for a moment; on a loaded machine polling hits that window.
    return marker in cmdline or not cmdline


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------- Kafka


def kafka_version() -> str:
    """The Kafka version pinned by the ``kafka.version`` property of local/kafka/pom.xml."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(KAFKA_POM).getroot()  # noqa: S314 - our own pom, not untrusted input
    version = root.findtext("m:properties/m:kafka.version", "", ns).strip()
    if not version:
        raise ServiceError(f"no <kafka.version> property in {KAFKA_POM}")
    return version


def kafka_libs() -> Path:
    """Ensure the broker jars are in .cache/kafka/<version>/libs (Maven runs once); return that dir.

    The cache is keyed by a hash of the pom, so editing its dependencies refetches.
    """
    version = kafka_version()
    home = CACHE_DIR / "kafka" / version
    libs = home / "libs"
    marker = home / "pom.sha256"
    digest = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()
    with _file_lock(CACHE_DIR / "kafka" / f"{version}.lock"):
        if libs.is_dir() and marker.exists() and marker.read_text().strip() == digest:
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServiceError(
                "Maven (mvn) is needed to fetch the Kafka jars: apt-get install maven"
            )
        staging = home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        _say(f"fetching Kafka {version} jars with Maven (first run only)...")
        started = time.monotonic()
        _run(
            [
                mvn,
                "-B",
                "-q",
                "-Dstyle.color=never",
                "-f",
                str(KAFKA_POM),
                f"-Dmaven.repo.local={CACHE_DIR / 'm2'}",
                f"-Dkafka.libs.dir={staging}",
                "dependency:copy-dependencies",
            ],
            f"Maven fetch of Kafka {version}",
        )
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        marker.write_text(digest + "\n")
        _say(f"fetched {len(list(libs.glob('*.jar')))} jars in {time.monotonic() - started:.1f}s")
    return libs


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServiceError(
            "Java 17+ is needed to run Kafka: apt-get install openjdk-17-jre-headless"
        )
    return java


def _kafka_cluster_id() -> str:
    """A random id in Kafka's own format (URL-safe base64 of 16 random bytes, no padding)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # Kafka avoids these: they read like CLI flags
            return cluster_id


_KAFKA_LOG4J = """\
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
"""


class Kafka:
    """A single-node KRaft Kafka broker (broker and controller in one JVM), data in ``data_dir``."""

    def __init__(
        self, data_dir: Path, port: int | None = None, controller_port: int | None = None
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        ports = _resolve_ports(self.data_dir, {"kafka": port, "kafka_controller": controller_port})
        self.port = ports["kafka"]
        self.controller_port = ports["kafka_controller"]
        self.version = kafka_version()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_file = self.data_dir / "kafka.log"
        self.pid_file = self.data_dir / "kafka.pid"
        self._config = self.data_dir / "server.properties"
        self._log_dirs = self.data_dir / "data"
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"Kafka(bootstrap={self.bootstrap!r}, data_dir={str(self.data_dir)!r})"

    def _server_properties(self) -> str:
        # Internal topics get one partition and no replication: one broker, and tests want a
        # consumer group to become ready fast. Topics are never auto-created, as on MSK by default.
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={self._log_dirs}",
                "num.network.threads=2",
                "num.io.threads=4",
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "share.coordinator.state.topic.num.partitions=1",
                "group.initial.rebalance.delay.ms=0",
                "",
            ]
        )

    def _java_cmd(self, libs: Path, heap: Sequence[str], main: str, *args: str) -> list[str]:
        return [
            _java(),
            *heap,
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            "-Dlog4j2.shutdownHookEnabled=false",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def is_running(self) -> bool:
        pid = _read_pid(self.pid_file)
        return pid is not None and _pid_alive(pid, str(self._config))

    def start(self, timeout: float = 90) -> None:
        """Start the broker (formatting its storage on first use) and wait until it answers."""
        if self.is_running():
            self._wait_ready(time.monotonic() + timeout, log_start=0)
            return
        libs = kafka_libs()
        _check_ports_free(
            {"Kafka": self.port, "Kafka controller": self.controller_port}, self.data_dir
        )
        self._config.write_text(self._server_properties())
        (self.data_dir / "log4j2.properties").write_text(_KAFKA_LOG4J)
        if not (self._log_dirs / "meta.properties").exists():
            _run(
                self._java_cmd(
                    libs,
                    ["-Xmx256m"],
                    "kafka.tools.StorageTool",
                    "format",
                    "--ignore-formatted",
                    "-t",
                    _kafka_cluster_id(),
                    "-c",
                    str(self._config),
                ),
                "Kafka storage format",
            )
        _say(f"starting Kafka {self.version} on {self.bootstrap} ...")
        started = time.monotonic()
        log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                self._java_cmd(libs, ["-Xmx512m", "-Xms256m"], "kafka.Kafka", str(self._config)),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        try:
            self._wait_ready(started + timeout, log_start)
        except ServiceError:
            self.stop(timeout=10)
            raise
        _say(f"Kafka ready in {time.monotonic() - started:.1f}s")

    def _wait_ready(self, deadline: float, log_start: int) -> None:
        """Poll until a metadata request lists a broker; fail fast if the JVM exits."""
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if not self.is_running():
                raise ServiceError(
                    f"Kafka exited during startup\n{_log_tail(self.log_file, log_start)}"
                )
            if _port_open(self.port):
                try:
                    with self._admin(bootstrap_timeout_ms=2000) as admin:
                        if admin.describe_cluster()["brokers"]:
                            return
                        last_error = "metadata lists no broker yet"
                except Exception as exc:  # any client error just means "not ready yet"
                    last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)
        raise ServiceError(
            f"Kafka on {self.bootstrap} not ready in time ({last_error})\n"
            f"{_log_tail(self.log_file, log_start)}"
        )

    def _admin(self, bootstrap_timeout_ms: int = 10000) -> KafkaAdminClient:
        from kafka.admin import KafkaAdminClient

        return KafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id="punk-records-local-services",
            bootstrap_timeout_ms=bootstrap_timeout_ms,
            request_timeout_ms=10000,
        )

    def stop(self, timeout: float = 30) -> None:
        """Stop the broker: SIGTERM (controlled shutdown), SIGKILL after ``timeout``; keeps data."""
        pid = _read_pid(self.pid_file)
        if pid is not None and _pid_alive(pid, str(self._config)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _pid_alive(pid, str(self._config)) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _pid_alive(pid, str(self._config)):
                _say(f"Kafka (pid {pid}) did not stop within {timeout:.0f}s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                while _pid_alive(pid, str(self._config)):
                    time.sleep(0.05)
        if self._proc is not None:
            # Reap our child; never wait unbounded if the pid file pointed somewhere else.
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
            self._proc = None
        self.pid_file.unlink(missing_ok=True)

    def create_topic(self, name: str, partitions: int = 1, timeout: float = 30) -> None:
        """Create ``name`` unless it exists, then wait until every partition has a leader."""
        from kafka.errors import TopicAlreadyExistsError

        with self._admin() as admin:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1}})
            admin.wait_for_topics([name], timeout_ms=int(timeout * 1000))

    def delete_topic(self, name: str, timeout: float = 30) -> None:
        """Delete ``name`` if it exists and wait until it is gone from the metadata."""
        from kafka.errors import UnknownTopicOrPartitionError

        with self._admin() as admin:
            with contextlib.suppress(UnknownTopicOrPartitionError):
                admin.delete_topics([name])
            deadline = time.monotonic() + timeout
            while name in admin.list_topics():
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"topic {name!r} still listed {timeout:.0f}s after its deletion"
                    )
                time.sleep(0.1)


# ---------------------------------------------------------------------------- PostgreSQL


def _pg_version(bin_dir: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in bin_dir.parent.name.split("."))
    except ValueError:
        return (0,)


def _find_postgres_bin() -> Path | None:
    candidates = [
        d
        for d in Path("/usr/lib/postgresql").glob("*/bin")
        if all((d / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres"))
    ]
    return max(candidates, key=_pg_version, default=None)


def postgres_bin() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin; installs Debian's ``postgresql`` if missing."""
    found = _find_postgres_bin()
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ServiceError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql; "
            "install them with: sudo apt-get install -y postgresql"
        )
    with _file_lock(CACHE_DIR / "postgresql-install.lock"):
        found = _find_postgres_bin()
        if found is None:
            _say("installing PostgreSQL (apt-get install postgresql, first run only)...")
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            _run(["apt-get", "update"], "apt-get update", env=env)
            _run(
                ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
                "apt-get install postgresql",
                env=env,
            )
            found = _find_postgres_bin()
    if found is None:
        raise ServiceError(
            "apt-get installed postgresql but no server binaries under /usr/lib/postgresql"
        )
    return found


class Postgres:
    """A private PostgreSQL server on 127.0.0.1 with its cluster in ``data_dir/pgdata``.

    The application role is the cluster's bootstrap superuser, with a password: one initdb call
    sets everything up, and password auth over TCP is what the Lambdas use against RDS.
    ``fast=True`` trades crash safety for speed (fsync, synchronous_commit and full_page_writes
    off); meant for throwaway test clusters.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        user: str = "punk",
        password: str = "punk",  # noqa: S107 - local-only server bound to 127.0.0.1
        dbname: str = "punk_records",
        fast: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = _resolve_ports(self.data_dir, {"postgres": port})["postgres"]
        self.user = user
        self.password = password
        self.dbname = dbname
        self.fast = fast
        self.pgdata = self.data_dir / "pgdata"
        self.log_file = self.data_dir / "postgres.log"
        credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
        self.dsn = f"postgresql://{credentials}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def __repr__(self) -> str:
        return (
            f"Postgres(port={self.port}, dbname={self.dbname!r}, data_dir={str(self.data_dir)!r})"
        )

    # PostgreSQL refuses to run as root: as root, its tools run as the OS user ``postgres``.
    def _as_server_user(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    def _server_user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise ServiceError(
                "running as root, PostgreSQL needs the 'postgres' OS user (created by Debian's "
                "postgresql package): apt-get install -y postgresql"
            ) from None

    def _prepare_dirs(self) -> None:
        """Create pgdata and the log file, owned by the server user, reachable from /."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self.log_file.touch()
        owner = self._server_user()
        if owner is None:
            return
        os.chown(self.pgdata, owner.pw_uid, owner.pw_gid)
        os.chown(self.log_file, owner.pw_uid, owner.pw_gid)
        _grant_traverse(self.data_dir, owner)

    def _conf(self) -> str:
        lines = [
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",  # TCP only: no socket path length or location issues
            "max_connections = 100",
        ]
        if self.fast:
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        return "# Written by local/services.py on every start.\n" + "\n".join(lines) + "\n"

    def _initdb(self, bin_dir: Path) -> None:
        _say(f"initialising PostgreSQL cluster in {self.pgdata} ...")
        pwfile = self.data_dir / ".pwfile"
        pwfile.write_text(self.password + "\n")
        owner = self._server_user()
        if owner is not None:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        pwfile.chmod(0o600)
        try:
            cmd = [
                str(bin_dir / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                self.user,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
            ]
            if self.fast:
                cmd.append("--no-sync")
            _run(self._as_server_user(cmd), "initdb", cwd=self.data_dir)
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.pgdata / "postgresql.conf").open("a") as f:
            f.write("\ninclude_if_exists = 'punk_records.conf'\n")

    def _pg_ctl(self, bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(bin_dir / "pg_ctl"), *args, "-D", str(self.pgdata)]
        # Own session: a started server must outlive this process (``up``) and its Ctrl-C.
        return subprocess.run(
            self._as_server_user(cmd),
            capture_output=True,
            text=True,
            cwd=self.data_dir,
            start_new_session=True,
            check=False,
        )

    def is_running(self) -> bool:
        bin_dir = _find_postgres_bin()
        if bin_dir is None or not (self.pgdata / "PG_VERSION").exists():
            return False
        return self._pg_ctl(bin_dir, "status").returncode == 0

    def start(self, timeout: float = 60) -> None:
        """Start the server (initdb on first use), wait until it accepts logins, create the db."""
        bin_dir = postgres_bin()
        if self.is_running():
            self._ensure_database(time.monotonic() + timeout)
            return
        _check_ports_free({"PostgreSQL": self.port}, self.data_dir)
        started = time.monotonic()
        self._prepare_dirs()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bin_dir)
        conf = self.pgdata / "punk_records.conf"
        conf.write_text(self._conf())
        owner = self._server_user()
        if owner is not None:
            os.chown(conf, owner.pw_uid, owner.pw_gid)
        _say(f"starting PostgreSQL {bin_dir.parent.name} on 127.0.0.1:{self.port} ...")
        log_start = self.log_file.stat().st_size
        wait = str(max(1, int(timeout)))
        result = self._pg_ctl(bin_dir, "start", "-l", str(self.log_file), "-w", "-t", wait)
        if result.returncode != 0:
            raise ServiceError(
                f"PostgreSQL failed to start (pg_ctl exit {result.returncode}): "
                f"{result.stderr.strip()}\n{_log_tail(self.log_file, log_start)}"
            )
        self._ensure_database(started + timeout)
        _say(f"PostgreSQL ready in {time.monotonic() - started:.1f}s")

    def _ensure_database(self, deadline: float) -> None:
        import psycopg
        from psycopg import sql

        admin_dsn = self.dsn.rsplit("/", 1)[0] + "/postgres"
        while True:
            try:
                conn = psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5)
                break
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"PostgreSQL on 127.0.0.1:{self.port} refuses connections: {exc}\n"
                        f"{_log_tail(self.log_file)}"
                    ) from exc
                time.sleep(0.2)
        with conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,))
            if exists.fetchone() is None:
                create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname))
                conn.execute(create)

    def stop(self, timeout: float = 30) -> None:
        """Stop the server (fast shutdown, immediate if that times out); keeps data."""
        if not self.is_running():
            return
        bin_dir = postgres_bin()  # is_running() found it: no install here
        wait = str(max(1, int(timeout)))
        for mode in ("fast", "immediate"):
            if self._pg_ctl(bin_dir, "stop", "-m", mode, "-w", "-t", wait).returncode == 0:
                return
        raise ServiceError(f"PostgreSQL in {self.pgdata} did not stop\n{_log_tail(self.log_file)}")


def _grant_traverse(path: Path, owner: pwd.struct_passwd) -> None:
    """Give ``owner`` search (x) permission on every directory from / down to ``path``.

    Running as root, the server runs as ``postgres`` and must reach its data directory, which
    may sit under a private folder (pytest's /tmp/pytest-of-root is 0700, a clone may live in
    /root). Only the missing bit is added: o+x lets through, it does not let list.
    """
    gids = set(os.getgrouplist(owner.pw_name, owner.pw_gid))
    for directory in [*reversed(path.parents), path]:
        st = directory.stat()
        if st.st_uid == owner.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in gids:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            _say(f"allowing user {owner.pw_name} through {directory} (chmod o+x)")
            try:
                directory.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
            except OSError as exc:
                raise ServiceError(
                    f"user {owner.pw_name} cannot reach {path} ({exc}); "
                    "use a data dir under a world-traversable folder such as /tmp"
                ) from exc


# ---------------------------------------------------------------------------- CLI


def _services(base: Path) -> tuple[Kafka, Postgres]:
    return Kafka(base / "kafka"), Postgres(base / "postgres")


def main(argv: Sequence[str] | None = None) -> int:
    """``prepare`` (fetch and install, no start) / ``up`` / ``down`` / ``status`` for both
    services; data and logs stay under ``--dir``."""
    parser = argparse.ArgumentParser(prog="python -m local.services", description=__doc__)
    parser.add_argument("command", choices=["prepare", "up", "down", "status"])
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help="data dir (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    base: Path = args.dir.resolve()

    if args.command == "prepare":
        try:
            libs, pg_bin = kafka_libs(), postgres_bin()
        except ServiceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"Kafka {kafka_version()} jars: {libs}\nPostgreSQL binaries: {pg_bin}")
        return 0

    if args.command == "status" and not base.exists():
        print(f"kafka     stopped (no data in {base})\npostgres  stopped")
        return 1
    kafka, postgres = _services(base)
    try:
        if args.command == "up":
            kafka.start()
            postgres.start()
        elif args.command == "down":
            kafka.stop()
            postgres.stop()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    states = {
        "kafka": (kafka.is_running(), kafka.bootstrap, kafka.log_file),
        "postgres": (postgres.is_running(), postgres.dsn, postgres.log_file),
    }
    for name, (running, address, log) in states.items():
        print(f"{name:<9} {'running' if running else 'stopped'}  {address}  (log: {log})")
    all_up = all(running for running, _, _ in states.values())
    return 0 if args.command == "down" or all_up else 1


if __name__ == "__main__":
    sys.exit(main())
