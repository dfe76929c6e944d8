"""The real PostgreSQL server used locally and by the tests: Debian's binaries, own cluster."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from local.processes import (
    REPO_ROOT,
    ServiceError,
    check_ports_free,
    file_lock,
    log_tail,
    resolve_ports,
    run,
    say,
)

CACHE_DIR = REPO_ROOT / ".cache"


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
    with file_lock(CACHE_DIR / "postgresql-install.lock"):
        found = _find_postgres_bin()
        if found is None:
            say("installing PostgreSQL (apt-get install postgresql, first run only)...")
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            run(["apt-get", "update"], "apt-get update", env=env)
            run(
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
        self.port = resolve_ports(self.data_dir, {"postgres": port})["postgres"]
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
        say(f"initialising PostgreSQL cluster in {self.pgdata} ...")
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
            run(self._as_server_user(cmd), "initdb", cwd=self.data_dir)
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
        check_ports_free({"PostgreSQL": self.port}, self.data_dir)
        started = time.monotonic()
        self._prepare_dirs()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bin_dir)
        conf = self.pgdata / "punk_records.conf"
        conf.write_text(self._conf())
        owner = self._server_user()
        if owner is not None:
            os.chown(conf, owner.pw_uid, owner.pw_gid)
        say(f"starting PostgreSQL {bin_dir.parent.name} on 127.0.0.1:{self.port} ...")
        log_start = self.log_file.stat().st_size
        wait = str(max(1, int(timeout)))
        result = self._pg_ctl(bin_dir, "start", "-l", str(self.log_file), "-w", "-t", wait)
        if result.returncode != 0:
            raise ServiceError(
                f"PostgreSQL failed to start (pg_ctl exit {result.returncode}): "
                f"{result.stderr.strip()}\n{log_tail(self.log_file, log_start)}"
            )
        self._ensure_database(started + timeout)
        say(f"PostgreSQL ready in {time.monotonic() - started:.1f}s")

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
                        f"{log_tail(self.log_file)}"
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
        raise ServiceError(f"PostgreSQL in {self.pgdata} did not stop\n{log_tail(self.log_file)}")


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
            say(f"allowing user {owner.pw_name} through {directory} (chmod o+x)")
            try:
                directory.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
            except OSError as exc:
                raise ServiceError(
                    f"user {owner.pw_name} cannot reach {path} ({exc}); "
                    "use a data dir under a world-traversable folder such as /tmp"
                ) from exc
