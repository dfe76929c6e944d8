"""Run a template function under the real Lambda runtime, no Docker: ``python -m local.emulator``.

The Runtime Interface Emulator that ships inside the ``aws-sam-cli`` wheel serves Lambda's invoke
API (``POST /2015-03-31/functions/function/invocations``) and runs ``awslambdaric``, the runtime
interface client AWS's Python images use, with the function's handler. The function gets what
``sam local invoke`` would give it: its code directory as working directory, the layer's
``python/`` folder on ``PYTHONPATH`` (``/opt/python`` in Lambda), the environment from
``template.yaml`` (Globals, then the function) overlaid by an ``--env-vars`` file, and Lambda's
own variables (name, memory, timeout, region, credentials).

Differences from Lambda: the interpreter is this virtualenv's Python (not the template's
runtime version) and the host's network, file system and limits apply.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from local.processes import KILL_WAIT_S, REPO_ROOT, free_ports
from local.template import DEFAULT_REGION, TEMPLATE, function_spec, load_env_vars

SAM_VENV = REPO_ROOT / ".cache" / "sam-venv"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"

_ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
_REPORT = re.compile(r"^REPORT RequestId: (?P<request_id>\S+)\t(?P<fields>.*)$", re.MULTILINE)


class EmulatorError(RuntimeError):
    """The emulator could not be found or started, or did not answer; the message says why."""


# ---------------------------------------------------------------------------- emulator binary


def rie_binary(machine: str | None = None) -> Path:
    """The Runtime Interface Emulator for this machine's architecture, from the SAM CLI wheel.

    ``AWS_LAMBDA_RIE`` overrides the path. Raise EmulatorError when it is not installed.
    """
    override = os.environ.get("AWS_LAMBDA_RIE")
    if override:
        return _executable(Path(override))
    raw = (machine or platform.machine()).lower()
    arch = _ARCHITECTURES.get(raw)
    if arch is None:
        raise EmulatorError(f"no Runtime Interface Emulator for the {raw} architecture")
    name = f"aws-lambda-rie-{arch}"
    found = sorted(SAM_VENV.glob(f"lib/python3*/site-packages/samcli/local/rapid/{name}"))
    if not found:
        raise EmulatorError(
            f"{name} not found under {SAM_VENV}; install the AWS SAM CLI with `make sam-venv`"
        )
    return _executable(found[-1])


def _executable(path: Path) -> Path:
    if not path.is_file():
        raise EmulatorError(f"{path} does not exist")
    # Wheels do not always keep the execute bit.
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# ---------------------------------------------------------------------------- function


class LambdaFunction:
    """One instance of a template function under the emulator: a Lambda execution environment.

    ``with LambdaFunction("IngestFunction", env_overrides={...}) as fn: fn.invoke(event)``.
    The first invocation is the cold start (the emulator starts the runtime then); later ones
    reuse the same process, so module-level clients survive between invocations as in Lambda.
    One invocation runs at a time. Output goes to a temporary file, or appends to ``log_file``.
    """

    def __init__(
        self,
        logical_id: str,
        *,
        env_vars: Path | None = None,
        env_overrides: Mapping[str, str] | None = None,
        parameter_overrides: Mapping[str, str] | None = None,
        template: Path = TEMPLATE,
        region: str | None = None,
        python: str = sys.executable,
        log_file: Path | None = None,
    ) -> None:
        self.region = region or os.environ.get("AWS_REGION") or DEFAULT_REGION
        self.spec = function_spec(logical_id, template, parameter_overrides, self.region)
        self.environment = self._environment(load_env_vars(env_vars, self.spec), env_overrides)
        self._python = python
        self._log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log_text = ""
        self._port = 0
        self._lock = threading.Lock()

    def _environment(
        self, from_file: Mapping[str, str], overrides: Mapping[str, str] | None
    ) -> dict[str, str]:
        spec = self.spec
        paths = [str(path) for path in spec.layer_dirs]
        runtime = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "PYTHONPATH": os.pathsep.join(paths),
            "PYTHONUNBUFFERED": "1",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "_HANDLER": spec.handler,
            "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout_s),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.logical_id}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            # Lambda hands the function its role's credentials; locally they are fake so that
            # nothing can reach a real account by accident.
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            # What `sam local invoke` sets; Powertools' Tracer turns itself off on it.
            "AWS_SAM_LOCAL": "true",
        }
        return {**runtime, **spec.environment, **from_file, **(overrides or {})}

    # -- lifecycle

    def start(self, timeout: float = 15) -> None:
        """Start the emulator on a free 127.0.0.1 port; raise EmulatorError if it cannot."""
        if self._process is not None:
            return
        binary = rie_binary()  # before the temporary directory: a missing binary leaks nothing
        # Two distinct ports: the invoke API and the emulator's own runtime API.
        self._port, runtime_port = free_ports(2)
        self._workdir = Path(tempfile.mkdtemp(prefix=f"lambda-{self.spec.logical_id}-"))
        command = [
            str(binary),
            "--log-level",
            "error",
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{self._port}",
            # Its own runtime API would default to 127.0.0.1:9001, which a second instance
            # could not bind.
            "--runtime-api-address",
            f"127.0.0.1:{runtime_port}",
            self._python,
            "-m",
            "awslambdaric",
            self.spec.handler,
        ]
        try:
            with self._log_path.open("ab") as log:
                self._process = subprocess.Popen(  # its own group: stop() ends it and the runtime
                    command,
                    cwd=self.spec.code_dir,
                    env=self.environment,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._wait_listening(timeout)
        except BaseException:  # never leave an emulator behind, whatever stopped the wait
            self.stop()
            raise

    def _wait_listening(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while not self._listening():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise EmulatorError(
                    f"the emulator for {self.spec.logical_id} did not start:\n"
                    + self.logs()[-2000:]
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 5) -> None:
        """Stop the emulator and the runtime process; keep the logs readable."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(KILL_WAIT_S)
        if self._workdir is not None:
            self._log_text = self.logs()
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    @property
    def pid(self) -> int | None:
        """The emulator's process id (its process group), or None when not started."""
        return None if self._process is None else self._process.pid

    def alive(self) -> bool:
        """Whether the emulator process is still running (a crashed or killed one is not)."""
        return self._process is not None and self._process.poll() is None

    def exit_status(self) -> int | None:
        """The emulator's exit status once it has exited (negative: killed by that signal)."""
        return None if self._process is None else self._process.poll()

    def _listening(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", self._port)) == 0

    def __enter__(self) -> LambdaFunction:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- invoking

    def invoke(self, event: Any) -> Any:
        """Invoke the function once with ``event``; return its decoded result.

        An unhandled exception comes back, as from Lambda, as a result of the form
        ``{"errorMessage", "errorType", "stackTrace", ...}`` (the emulator sends no
        X-Amz-Function-Error header). Raise EmulatorError if the emulator does not answer.
        """
        if self._process is None:
            raise EmulatorError("start() the function before invoking it")
        body = json.dumps(event).encode()
        with self._lock:
            # http.client rather than urllib: no proxy from the environment may get in the way.
            conn = http.client.HTTPConnection(
                "127.0.0.1", self._port, timeout=self.spec.timeout_s + 30
            )
            try:
                conn.request("POST", INVOKE_PATH, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                raw = response.read()
            except OSError as exc:
                raise EmulatorError(
                    f"{self.spec.logical_id}: the emulator did not answer: {exc}"
                ) from exc
            finally:
                conn.close()
        if response.status != 200:
            raise EmulatorError(
                f"{self.spec.logical_id}: emulator answered {response.status}: {raw[:500]!r}"
            )
        return json.loads(raw) if raw.strip() else None

    # -- logs

    @property
    def _log_path(self) -> Path:
        if self._log_file is not None:
            return self._log_file
        assert self._workdir is not None
        return self._workdir / "output.log"

    def logs(self) -> str:
        """Everything the emulator and the function wrote so far (START/END/REPORT included)."""
        if self._workdir is None and self._log_file is None:
            return self._log_text
        try:
            return self._log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def reports(self) -> list[dict[str, str]]:
        """The fields of every ``REPORT`` line so far (see :func:`parse_reports`)."""
        return parse_reports(self.logs())

    @property
    def init_duration_ms(self) -> float | None:
        """``Init Duration`` from the first REPORT line, or None before the first invocation.

        The emulator starts the runtime inside the first invocation, so this figure is close to
        zero and the first REPORT's ``Duration`` includes the import of the handler module.
        """
        for report in self.reports():
            if "Init Duration" in report:
                return float(report["Init Duration"].split()[0])
        return None


def parse_reports(logs: str) -> list[dict[str, str]]:
    """The fields of every ``REPORT`` line in ``logs``, e.g. ``{"Duration": "12.3 ms", ...}``."""
    found = []
    for match in _REPORT.finditer(logs):
        fields = dict(
            part.split(": ", 1) for part in match.group("fields").split("\t") if ": " in part
        )
        found.append({"RequestId": match.group("request_id"), **fields})
    return found


def is_function_error(result: Any) -> bool:
    """Whether an invoke result is Lambda's error payload rather than the handler's return value."""
    return (
        isinstance(result, dict)
        and "errorType" in result
        and "errorMessage" in result
        and "statusCode" not in result
    )


# ---------------------------------------------------------------------------- CLI


def _parameter_overrides(items: Sequence[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise EmulatorError(f"--parameter-overrides wants Name=Value, not {item!r}")
        overrides[name.removeprefix("ParameterKey=")] = value
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    """``invoke <FunctionLogicalId> [-e event.json] [--env-vars env.json]``: sam local invoke.

    The function's logs go to stderr and its result to stdout; the exit status is 1 when the
    function raised.
    """
    parser = argparse.ArgumentParser(
        prog="python -m local.emulator", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    invoke = commands.add_parser("invoke", help="invoke a template function once")
    invoke.add_argument("function", help="logical id in the template, e.g. IngestFunction")
    invoke.add_argument(
        "-e", "--event", type=Path, help="event JSON file ('-' for stdin; default {})"
    )
    invoke.add_argument("-n", "--env-vars", type=Path, help="sam local invoke --env-vars JSON file")
    invoke.add_argument(
        "--parameter-overrides",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="template parameters",
    )
    invoke.add_argument("-t", "--template", type=Path, default=TEMPLATE)
    args = parser.parse_args(argv)

    function: LambdaFunction | None = None
    try:
        if args.event is None:
            event: Any = {}
        elif str(args.event) == "-":
            event = json.load(sys.stdin)
        else:
            event = json.loads(args.event.read_text(encoding="utf-8"))
        function = LambdaFunction(
            args.function,
            env_vars=args.env_vars,
            parameter_overrides=_parameter_overrides(args.parameter_overrides),
            template=args.template,
        )
        with function:
            result = function.invoke(event)
    except (EmulatorError, OSError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if function is not None:
            sys.stderr.write(function.logs())
    print(json.dumps(result))
    return 1 if is_function_error(result) else 0


if __name__ == "__main__":
    sys.exit(main())
