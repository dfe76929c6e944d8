"""The real Kafka broker used locally and by the tests: jars fetched by Maven, one KRaft node."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from local.processes import (
    KILL_WAIT_S,
    REPO_ROOT,
    ServiceError,
    check_ports_free,
    file_lock,
    log_tail,
    pid_alive,
    port_open,
    read_pid,
    resolve_ports,
    run,
    say,
)

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient

CACHE_DIR = REPO_ROOT / ".cache"
KAFKA_POM = REPO_ROOT / "local" / "kafka" / "pom.xml"


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
    with file_lock(CACHE_DIR / "kafka" / f"{version}.lock"):
        if libs.is_dir() and marker.exists() and marker.read_text().strip() == digest:
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServiceError(
                "Maven (mvn) is needed to fetch the Kafka jars: apt-get install maven"
            )
        staging = home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        say(f"fetching Kafka {version} jars with Maven (first run only)...")
        started = time.monotonic()
        run(
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
        say(f"fetched {len(list(libs.glob('*.jar')))} jars in {time.monotonic() - started:.1f}s")
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
        ports = resolve_ports(self.data_dir, {"kafka": port, "kafka_controller": controller_port})
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
        pid = read_pid(self.pid_file)
        return pid is not None and pid_alive(pid, str(self._config))

    def start(self, timeout: float = 90) -> None:
        """Start the broker (formatting its storage on first use) and wait until it answers."""
        if self.is_running():
            self._wait_ready(time.monotonic() + timeout, log_start=0)
            return
        libs = kafka_libs()
        check_ports_free(
            {"Kafka": self.port, "Kafka controller": self.controller_port}, self.data_dir
        )
        self._config.write_text(self._server_properties())
        (self.data_dir / "log4j2.properties").write_text(_KAFKA_LOG4J)
        if not (self._log_dirs / "meta.properties").exists():
            run(
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
        say(f"starting Kafka {self.version} on {self.bootstrap} ...")
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
        say(f"Kafka ready in {time.monotonic() - started:.1f}s")

    def _alive(self) -> bool:
        """Whether the broker process lives. A broker this object started is asked through its
        handle: until the child has exec'd java, its command line is still ours and lacks the
        config path that ``is_running`` looks for (under load that window is long enough to
        fail a start for nothing)."""
        if self._proc is not None:
            return self._proc.poll() is None
        return self.is_running()

    def _wait_ready(self, deadline: float, log_start: int) -> None:
        """Poll until a metadata request lists a broker; fail fast if the JVM exits."""
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if not self._alive():
                raise ServiceError(
                    f"Kafka exited during startup\n{log_tail(self.log_file, log_start)}"
                )
            if port_open(self.port):
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
            f"{log_tail(self.log_file, log_start)}"
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
        pid = read_pid(self.pid_file)
        if pid is not None and pid_alive(pid, str(self._config)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while pid_alive(pid, str(self._config)) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid, str(self._config)):
                say(f"Kafka (pid {pid}) did not stop within {timeout:.0f}s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed_by = time.monotonic() + KILL_WAIT_S
                while pid_alive(pid, str(self._config)):
                    if time.monotonic() > killed_by:
                        raise ServiceError(
                            f"Kafka (pid {pid}) still alive {KILL_WAIT_S:.0f}s after SIGKILL"
                        )
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

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        timeout: float = 30,
        configs: dict[str, str] | None = None,
    ) -> None:
        """Create ``name`` unless it exists (then set ``configs`` on it), and wait until every
        partition has a leader."""
        from kafka.admin import ConfigResource, ConfigResourceType
        from kafka.errors import TopicAlreadyExistsError

        spec = {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}
        with self._admin() as admin:
            try:
                admin.create_topics({name: spec})
            except TopicAlreadyExistsError:
                if configs:
                    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs)])
            admin.wait_for_topics([name], timeout_ms=int(timeout * 1000))

    def topic_configs(self, name: str) -> dict[str, str]:
        """The topic's configuration, as the broker describes it."""
        from kafka.admin import ConfigResource, ConfigResourceType

        with self._admin() as admin:
            described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        return {key: entry["value"] for key, entry in described["topic"][name].items()}

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
