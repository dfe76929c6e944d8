"""Processes of the local services: ports, pid files, process groups, detached daemons.

Everything here is about the host, nothing about Kafka, PostgreSQL or Lambda: the services
(:mod:`local.kafka_service`, :mod:`local.postgres_service`), the emulator and the stack build
on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

_LOG_TAIL_LINES = 40
# After SIGKILL a process is gone within milliseconds unless the kernel is stuck on it (an
# uninterruptible disk wait); past this, stopping gives up and says so.
KILL_WAIT_S = 10.0


class ServiceError(RuntimeError):
    """A service could not be prepared, started or stopped; the message says why."""


def say(message: str, end: str = "\n") -> None:
    """Progress for people, on stderr (stdout may be a pipe for data)."""
    print(message, end=end, file=sys.stderr, flush=True)


def log_tail(path: Path, start: int = 0, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last lines of a log written since byte offset ``start``."""
    try:
        with path.open("rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)


def run(
    cmd: Sequence[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a short command, raising ServiceError with its output when it fails."""
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()[-_LOG_TAIL_LINES:]
        raise ServiceError(f"{what} failed (exit {result.returncode}):\n" + "\n".join(output))
    return result


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise a one-time setup step across processes (e.g. parallel test workers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def stop_all(stops: Iterable[tuple[str, Callable[[], None]]]) -> None:
    """Call every ``(name, stop)`` even when an earlier one fails, so one stuck service never
    leaves the others running; then raise ServiceError naming every failure."""
    failures = []
    for name, stop in stops:
        try:
            stop()
        except Exception as exc:  # every stop runs; the failures are reported together
            failures.append(f"{name}: {exc}")
    if failures:
        raise ServiceError("could not stop everything:\n" + "\n".join(failures))


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


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def resolve_ports(data_dir: Path, wanted: dict[str, int | None]) -> dict[str, int]:
    """Ports for the ``wanted`` keys: the explicit ones, else those in ports.json, else free ones.

    The choice is saved so a later instance on the same data_dir (e.g. ``up`` then ``down``, or
    a restart) finds the service where it was.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "ports.json"
    with file_lock(data_dir / ".ports.lock"):
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


def check_ports_free(ports: dict[str, int], data_dir: Path) -> None:
    busy = [f"{name} port {port}" for name, port in ports.items() if port_in_use(port)]
    if busy:
        raise ServiceError(
            f"{', '.join(busy)} already in use by another process on 127.0.0.1; "
            f"stop it, or pass other ports (saved in {data_dir / 'ports.json'})"
        )


# ---------------------------------------------------------------------------- pids


def pid_alive(pid: int, marker: str) -> bool:
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


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def cmdline(pid: int) -> str | None:
    """The command line of a live, non-zombie process, else None."""
    proc = Path("/proc") / str(pid)
    try:
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return None


def processes() -> Iterator[tuple[int, str, int, int]]:
    """(pid, state, parent pid, process group) of every process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        yield int(entry.name), fields[0], int(fields[1]), int(fields[2])


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    return [pid for pid, state, _, group in processes() if state != "Z" and group == pgid]


# The emulator runs each function instance in a session of its own; this marks its processes.
EMULATOR_MARKER = "aws-lambda-rie"


def kill_group(pgid: int, timeout: float) -> None:
    """SIGTERM process group ``pgid``, SIGKILL whatever is left after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while group_members(pgid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pgid, os.WNOHANG)
            time.sleep(0.1)
        if not group_members(pgid):
            return


@dataclass
class Daemon:
    """A detached background process of the stack: own session, pid file, log file.

    ``marker`` is a string its command line contains, so a recycled pid is never mistaken for
    it. Stopping it signals its process group. The function emulators it starts run in
    sessions of their own, so their pids are recorded once it is ready (``record_emulators``)
    and they are stopped too, even after the daemon itself was killed with SIGKILL.
    """

    name: str
    pid_file: Path
    log_file: Path
    marker: str
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def _emulators_file(self) -> Path:
        return self.pid_file.with_suffix(".emulators")

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        line = cmdline(pid)
        return pid if line is not None and self.marker in line else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def emulators(self) -> list[int]:
        """The live emulator processes this daemon started (recorded, or its children now)."""
        pids = set()
        with contextlib.suppress(OSError, ValueError):
            pids |= {int(p) for p in self._emulators_file.read_text().split()}
        daemon = self.pid()
        if daemon is not None:
            pids |= {pid for pid, _, parent, _ in processes() if parent == daemon}
        return sorted(p for p in pids if EMULATOR_MARKER in (cmdline(p) or ""))

    def record_emulators(self) -> None:
        self._emulators_file.write_text("".join(f"{pid}\n" for pid in self.emulators()))

    def start(self, args: Sequence[str], env: dict[str, str]) -> int:
        self._stop_emulators()  # orphans of a previous run that was killed
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=env,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        self._proc = proc
        return proc.pid

    def has_exited(self) -> bool:
        """True once the process is gone. Just after start() this asks the child handle: until
        the child has exec'd, its command line is still ours and lacks the marker."""
        if self._proc is not None:
            return self._proc.poll() is not None
        return not self.is_running()

    def stop(self, timeout: float = 15) -> None:
        """Stop the daemon (it stops its emulators), then any emulator left; idempotent."""
        self.record_emulators()
        pid = self.pid()
        if pid is not None:
            kill_group(pid, timeout)
        self._stop_emulators()
        self.pid_file.unlink(missing_ok=True)

    def _stop_emulators(self) -> None:
        for pid in self.emulators():
            kill_group(pid, 5.0)
        self._emulators_file.unlink(missing_ok=True)


def interrupt(_signum: int, _frame: object) -> None:
    """A SIGTERM handler that unwinds like Ctrl-C (KeyboardInterrupt): a run stopped with
    ``kill`` or a timeout still stops the servers it started."""
    raise KeyboardInterrupt
