"""A local API Gateway HTTP API (payload format 2.0) in front of the template's functions, on
127.0.0.1: each route goes to the function whose ``HttpApi`` event declares it."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.invoker import FunctionError, Invoke, instance_pool

log = logging.getLogger("local.http_endpoint")

# The routes of the template's HttpApi, as API Gateway route keys (a test checks the template).
ROUTE_KEYS = (
    "POST /events",
    "GET /health",
    "GET /events",
    "GET /events/{event_id}",
    "GET /dead-letters",
    "GET /memory",
    "GET /memory/{entry_id}",
)

# HTTP API quota: the request payload is capped at 10 MB (hard limit).
MAX_REQUEST_BYTES = 10 * 1024 * 1024
# Lambda's synchronous invoke payload: the event sent to the function is capped at 6 MB.
MAX_INVOKE_BYTES = 6 * 1024 * 1024
# Like API Gateway's front door: many connections may wait to be accepted, none for ever.
LISTEN_BACKLOG = 1024
IDLE_TIMEOUT_S = 60.0  # an open connection with no request arriving
READ_TIMEOUT_S = 30.0  # a request whose headers or body stop arriving

# Content types HTTP APIs hand to Lambda as text; every other body (a missing Content-Type
# included) arrives base64-encoded with isBase64Encoded true.
_TEXT_TYPES = ("application/json", "application/xml", "application/javascript")

# Hop-by-hop headers end at the gateway; they never reach the integration.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "expect"}
)

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class ApiInfo:
    """What API Gateway puts in ``requestContext`` besides the request itself."""

    account_id: str = "123456789012"
    api_id: str = "punklocal1"
    stage: str = "$default"
    route_keys: Sequence[str] = ROUTE_KEYS


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What goes back to the client: status, header pairs (repeatable) and body bytes."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def gateway_error(status: int, message: str) -> HttpResponse:
    """A response API Gateway produces itself, e.g. 404 ``{"message":"Not Found"}``."""
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    return HttpResponse(status, [("content-type", "application/json")], body)


def _path_match(pattern: str, path: str) -> dict[str, str] | None:
    """The path parameters if ``path`` matches the route path ``pattern``, else None. A
    ``{name}`` segment matches one non-empty segment, as in API Gateway."""
    wanted, given = pattern.split("/"), path.split("/")
    if len(wanted) != len(given):
        return None
    found: dict[str, str] = {}
    for expected, actual in zip(wanted, given, strict=True):
        if expected.startswith("{") and expected.endswith("}"):
            if not actual:
                return None
            found[expected[1:-1]] = unquote(actual)
        elif expected != actual:
            return None
    return found


def match_route(method: str, path: str, route_keys: Sequence[str] = ROUTE_KEYS) -> str | None:
    """The route key matching ``method`` and ``path``, or None (API Gateway's 404). A route
    without parameters wins over one with them, as API Gateway prefers the most specific."""
    candidates = [
        key
        for key in route_keys
        if key.split(" ", 1)[0] == method.upper()
        and _path_match(key.split(" ", 1)[1], path) is not None
    ]
    return min(candidates, key=lambda key: key.count("{"), default=None)


def path_parameters(route_key: str, path: str) -> dict[str, str]:
    """The values of the route's ``{name}`` segments in ``path``."""
    return _path_match(route_key.split(" ", 1)[1], path) or {}


def dispatch(routes: Mapping[str, Invoke]) -> Invoke:
    """One invoke that passes each event to the function serving its ``routeKey``."""

    def invoke(event: dict[str, Any]) -> Any:
        return routes[event["routeKey"]](event)

    return invoke


def is_text_content_type(content_type: str | None) -> bool:
    """True if API Gateway passes a body of this type as text rather than base64."""
    if not content_type:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime.startswith("text/") or mime in _TEXT_TYPES


def _utf8(body: bytes) -> bool:
    """Whether ``body`` is valid UTF-8. A text body that is not is passed base64-encoded, so
    the function sees the bytes as sent (and can refuse them) rather than replacement marks."""
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


def _request_time(now: datetime) -> str:
    # API Gateway's CLF-style time, always in English and UTC: 26/Nov/2026:06:00:00 +0000
    now = now.astimezone(UTC)
    return f"{now:%d}/{_MONTHS[now.month - 1]}/{now:%Y:%H:%M:%S} +0000"


def new_request_id() -> str:
    """An id shaped like API Gateway's (16 base64 characters)."""
    return base64.b64encode(secrets.token_bytes(11)).decode()


def _trace_id(now: datetime) -> str:
    return f"Root=1-{int(now.timestamp()):08x}-{secrets.token_hex(12)}"


def build_event(
    *,
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    source_ip: str,
    route_key: str,
    server_port: int,
    api: ApiInfo = ApiInfo(),
    request_id: str | None = None,
    now: datetime | None = None,
    protocol: str = "HTTP/1.1",
) -> dict[str, Any]:
    """The payload format 2.0 event API Gateway sends for one request.

    ``target`` is the request line's target (path and query, as sent); ``headers`` are the
    pairs as received, in order, repeats allowed. Optional keys (cookies,
    queryStringParameters, body) are left out when empty, as API Gateway does.
    """
    now = now or datetime.now(UTC)
    request_id = request_id or new_request_id()
    split = urlsplit(target)
    raw_path = split.path or "/"

    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key in _HOP_BY_HOP:
            continue
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    forwarded = merged.get("x-forwarded-for")
    merged["x-forwarded-for"] = f"{forwarded}, {source_ip}" if forwarded else source_ip
    merged["x-forwarded-port"] = str(server_port)
    merged["x-forwarded-proto"] = "http"
    merged.setdefault("x-amzn-trace-id", _trace_id(now))

    domain = merged.get("host", "localhost").rsplit(":", 1)[0] or "localhost"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": split.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = merged
    parameters = path_parameters(route_key, raw_path)
    if parameters:
        event["pathParameters"] = parameters
    if split.query:
        params: dict[str, str] = {}
        for key, value in parse_qsl(split.query, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
        event["queryStringParameters"] = params
    event["requestContext"] = {
        "accountId": api.account_id,
        "apiId": api.api_id,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": method.upper(),
            "path": raw_path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": merged.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": api.stage,
        "time": _request_time(now),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    binary = bool(body) and not (is_text_content_type(merged.get("content-type")) and _utf8(body))
    if body:
        event["body"] = base64.b64encode(body).decode() if binary else body.decode()
    event["isBase64Encoded"] = binary
    return event


def response_from_result(result: Any) -> HttpResponse:
    """Turn a function's result into the HTTP response, by the payload format 2.0 rules.

    A dict with ``statusCode`` is taken as given (headers, cookies as Set-Cookie headers,
    base64 body when ``isBase64Encoded``). Anything else is inferred: status 200,
    ``content-type: application/json``, the result as the body. A malformed response is a 500.
    """
    if not isinstance(result, dict) or "statusCode" not in result:
        body = result if isinstance(result, str) else json.dumps(result)
        return HttpResponse(200, [("content-type", "application/json")], body.encode())
    try:
        status = int(result["statusCode"])
        if not 100 <= status <= 599:
            raise ValueError(status)
        headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
        headers += [("set-cookie", str(c)) for c in result.get("cookies") or []]
        raw = result.get("body")
        text = "" if raw is None else raw if isinstance(raw, str) else json.dumps(raw)
        data: bytes | str = (
            base64.b64decode(text, validate=True) if result.get("isBase64Encoded") else text
        )
    except (TypeError, ValueError, AttributeError) as exc:
        log.warning("malformed function response (%s): answering 500", type(exc).__name__)
        return gateway_error(500, "Internal Server Error")
    return HttpResponse(status, headers, data if isinstance(data, bytes) else data.encode())


def handle_request(
    invoke: Invoke,
    *,
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    source_ip: str,
    server_port: int,
    api: ApiInfo = ApiInfo(),
    protocol: str = "HTTP/1.1",
) -> HttpResponse:
    """Route one request, invoke the function and map its result; the gateway's own errors too."""
    request_id = new_request_id()
    route_key = match_route(method, urlsplit(target).path or "/", api.route_keys)
    if route_key is None:
        response = gateway_error(404, "Not Found")
    elif len(body) > MAX_REQUEST_BYTES:
        response = gateway_error(413, "Request Entity Too Large")
    else:
        event = build_event(
            method=method,
            target=target,
            headers=headers,
            body=body,
            source_ip=source_ip,
            route_key=route_key,
            server_port=server_port,
            api=api,
            request_id=request_id,
            protocol=protocol,
        )
        try:
            response = _invoke_within_limit(invoke, event)
        except FunctionError as exc:
            log.warning("function error for request %s: %s", request_id, exc)
            response = gateway_error(500, "Internal Server Error")
    response.headers.append(("apigw-requestid", request_id))
    return response


def _invoke_within_limit(invoke: Invoke, event: dict[str, Any]) -> HttpResponse:
    """Invoke with ``event`` unless it exceeds Lambda's 6 MB payload: then, as API Gateway,
    ``413 {"message":"Request Too Long"}`` without invoking."""
    size = len(json.dumps(event, separators=(",", ":")).encode())
    if size > MAX_INVOKE_BYTES:
        return gateway_error(413, "Request Too Long")
    return response_from_result(invoke(event))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The socket timeout while a request's line, headers and body arrive; between requests on
    # a kept-alive connection, the idle timeout applies (see handle_one_request).
    timeout = READ_TIMEOUT_S

    def version_string(self) -> str:
        return "punk-local-apigw"

    server: _Server

    def _serve(self) -> None:
        started = time.monotonic()
        try:
            body = self._read_body()
        except (ValueError, TimeoutError):
            # Also a body shorter than its Content-Length that stops arriving: never a hang.
            self._send(gateway_error(400, "Bad Request"))
            self.close_connection = True
            return
        if body is None:
            self._send(gateway_error(413, "Request Entity Too Large"))
            self.close_connection = True
            return
        try:
            response = handle_request(
                self.server.invoke,
                method=self.command,
                target=self.path,
                headers=list(self.headers.items()),
                body=body,
                source_ip=self.client_address[0],
                server_port=self.server.server_address[1],
                api=self.server.api,
                protocol=self.request_version,
            )
        except Exception:  # a bug here must still answer, as the gateway would
            log.exception("request failed inside the local gateway")
            response = gateway_error(500, "Internal Server Error")
        self._send(response)
        log.info(
            "%s %s %d %dms requestId=%s",
            self.command,
            urlsplit(self.path).path,
            response.status,
            (time.monotonic() - started) * 1000,
            response.header("apigw-requestid"),
        )

    def handle_one_request(self) -> None:
        """Wait at most the idle timeout for a request to start, then the read timeout."""
        self.connection.settimeout(self.server.idle_timeout_s)
        super().handle_one_request()

    def parse_request(self) -> bool:
        self.connection.settimeout(self.server.read_timeout_s)
        return super().parse_request()

    def __getattr__(self, name: str) -> Any:
        # Every method reaches the router, which answers 404 for what no route takes (TRACE,
        # CONNECT, made-up ones), as API Gateway does, instead of http.server's 501 page.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _read_body(self) -> bytes | None:
        """The request body (plain or chunked); None when it exceeds the gateway's limit."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailer section
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_REQUEST_BYTES:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError(length)
        if length > MAX_REQUEST_BYTES:
            return None
        body = self.rfile.read(length) if length else b""
        if len(body) < length:  # the client closed before sending all it announced
            raise ValueError(length)
        return body

    def _send(self, response: HttpResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        # Access lines are logged by _serve, without headers (a token must never reach a log).
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        invoke: Invoke,
        api: ApiInfo,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.invoke = invoke
        self.api = api
        self.idle_timeout_s = idle_timeout_s
        self.read_timeout_s = read_timeout_s
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that resets its connection is not the gateway's fault: no traceback for it.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class HttpEndpoint:
    """The local HTTP API: ``start()`` serves on 127.0.0.1 in a thread until ``stop()``."""

    def __init__(
        self,
        invoke: Invoke,
        port: int = 0,
        host: str = "127.0.0.1",
        api: ApiInfo = ApiInfo(),
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self._server = _Server((host, port), invoke, api, idle_timeout_s, read_timeout_s)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HttpEndpoint:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http-endpoint", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HttpEndpoint:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------- CLI


def _state_file(state_dir: Path | None, function: str) -> Path | None:
    if state_dir is None:
        return None
    state_dir.mkdir(parents=True, exist_ok=True)
    return state_dir / f"{function}.instances.json"


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the HTTP API in front of functions under the emulator until SIGTERM/SIGINT."""
    from local.template import http_routes, load_template

    parser = argparse.ArgumentParser(prog="python -m local.http_endpoint", description=__doc__)
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument(
        "--function",
        action="append",
        help="template logical id, repeatable: serve its routes (default: IngestFunction)",
    )
    parser.add_argument("--env-vars", type=Path, help="env file in the sam --env-vars format")
    parser.add_argument("--concurrency", type=int, default=2, help="instances per function")
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="kept up to date with each function's instances and restarts "
        "(<dir>/<function>.instances.json)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    functions = args.function or ["IngestFunction"]
    served = {key: fn for key, fn in http_routes(load_template()).items() if fn in functions}

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with contextlib.ExitStack() as stack:
        pools = {
            fn: stack.enter_context(
                instance_pool(fn, args.concurrency, args.env_vars, _state_file(args.state_dir, fn))
            )
            for fn in functions
        }
        invoke = dispatch({key: pools[fn] for key, fn in served.items()})
        api = ApiInfo(route_keys=tuple(served))
        endpoint = stack.enter_context(HttpEndpoint(invoke, port=args.port, api=api))
        for key, fn in served.items():
            log.info("route %s -> %s", key, fn)
        log.info("serving %s on %s (pid %d)", ", ".join(functions), endpoint.url, os.getpid())
        stop.wait()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
