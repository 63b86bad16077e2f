"""Serving an aiohttp application on host:port with the defences every HTTP server of the
project has (PROTOCOL 5, "Transport limits"): the validator's (`rpc.__main__`) and the
resource node's HTTP server (`resource_node.server`).

- **Open connections** are capped. Past the cap the connection waiting longest without a
  request in progress is closed to make room; when every one has a request in progress the
  new one is closed at once, before anything is read from it.
- **Header timeout**: a request's line and headers must be complete within
  `header_timeout_s` of the connection, or of the first byte after the previous response.
- **Keep-alive timeout**: a connection quiet for `keepalive_timeout_s` after a response is
  closed.
- **Bodies** are read here, before the handler runs, within `body_timeout_s`, and only while
  the bodies being read and handled fit in `bodies_in_flight_bytes` (a body counts at its
  declared length, or the largest allowed when chunked); past it the request is refused
  (HTTP 503) before its body is read. The answer to a refused or late body is the
  application's own shape (`Refuse`).
- **CORS**: preflights answered and `Access-Control-Allow-Origin` on every answer, when
  configured (`Cors`).
- **The process** (`prepare_process`): the open-files limit raised to its hard limit, and
  repeated warnings and event-loop errors logged once per interval with a count of the rest.
- **The event loop** (`run`): uvloop's where it is installed (it is a dependency on Linux
  and macOS), unless `INFERCHAIN_EVENT_LOOP=asyncio` asks for the standard library's.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import re
import resource
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, TypeVar, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

T = TypeVar("T")

MIB = 1024 * 1024
BACKLOG = 1024  # connections the kernel queues before accept: a burst of honest ones fits
REPORT_INTERVAL_S = 10.0  # refused and closed connections are summed up once per interval
REPEAT_INTERVAL_S = 10.0  # a repeated warning or loop error is logged once per interval
# Descriptors kept free of connections: LevelDB's table cache (up to 1,000 files), the log,
# the peers' sockets. Where the open-files limit leaves less, the cap is lowered to fit.
FD_RESERVE = 1100
MIN_CONNECTIONS = 16
SHUTDOWN_TIMEOUT_S = 5.0
# Once the connections closed since the last trim received this many bytes, the heap is
# trimmed TRIM_DELAY_S later (at most once per delay): RSS comes back down after a flood.
TRIM_AFTER_BYTES = 32 * MIB
TRIM_DELAY_S = 2.0  # what requests in progress get to end when the server stops
CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Content-Type"  # when a preflight names none
CORS_MAX_AGE_S = 600
ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s,]+")

# The answer to a request refused before its handler ran: (request, HTTP status, reason,
# data) -> a response in the application's own shape.
Refuse = Callable[[web.Request, int, str, dict[str, Any]], web.StreamResponse]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def plain_refusal(
    _request: web.Request, status: int, reason: str, data: dict[str, Any]
) -> web.Response:
    """`{"error": reason, ...data}` with `status`: the shape of the plain HTTP routes."""
    return web.json_response({"error": reason, **data}, status=status)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one HTTP server allows (PROTOCOL 5, "Transport limits")."""

    max_connections: int = 1024
    header_timeout_s: float = 10.0
    keepalive_timeout_s: float = 15.0
    body_timeout_s: float = 30.0
    bodies_in_flight_bytes: int = 64 * MIB

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")


@dataclass(frozen=True, slots=True)
class Cors:
    """The origins a browser may call from: `("*",)` for any."""

    origins: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Cors:
        """`*`, or origins separated by commas (`https://app.example,http://localhost:3000`);
        ValueError naming a malformed one."""
        origins = tuple(part.strip() for part in text.split(",") if part.strip())
        if not origins:
            raise ValueError("--cors needs `*` or at least one origin")
        if origins == ("*",):
            return cls(origins)
        for origin in origins:
            if not ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"--cors: {origin!r} is not an origin (scheme://host[:port], or `*` alone)"
                )
        return cls(origins)

    def allowed(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin answer to a request from `origin`, if any."""
        if self.origins == ("*",):
            return "*"
        return origin if origin in self.origins else None


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol behind it, which phase it is in (waiting
    for a request's headers, handling a request, idle after a response) and the timer that
    closes it when the phase lasts too long."""

    __slots__ = ("_doomed", "_guard", "_idle", "_timer", "busy", "inner", "received", "transport")

    def __init__(self, guard: _Guard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self._idle = False  # between a response and the first byte of the next request
        self.received = 0  # bytes
        self._timer: asyncio.TimerHandle | None = None
        self._doomed = False  # evicted before it was made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods
        self.transport = cast(asyncio.Transport, transport)
        self.inner.connection_made(transport)
        if self._doomed:
            self.transport.abort()
        else:
            self._arm(self._guard.limits.header_timeout_s, "header")

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self._idle:
            self._idle = False
            self._guard.wait_again(self)
            self._arm(self._guard.limits.header_timeout_s, "header")
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._guard.forget(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def request_started(self) -> None:
        self.busy = True
        self._idle = False
        self._disarm()
        self._guard.started(self)

    def request_done(self) -> None:
        self.busy = False
        if self.transport is not None and not self.transport.is_closing():
            self._idle = True
            self._guard.wait_again(self)
            self._arm(self._guard.limits.keepalive_timeout_s, "idle")

    def evict(self) -> None:
        self._guard.forget(self)
        if self.transport is None:
            self._doomed = True
        else:
            self._disarm()
            self.transport.abort()

    def _arm(self, delay: float, kind: str) -> None:
        self._disarm()
        timer = self._guard.loop.call_later(delay, self._expire, kind)
        self._timer = timer

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, kind: str) -> None:
        self._timer = None
        if self.transport is not None and not self.busy:
            self._guard.note(f"{kind} timeout")
            self.transport.close()


class _Refused(asyncio.Protocol):
    """A connection over the cap when none can make room: closed as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).abort()


class _Guard:
    """The protocol factory around aiohttp's: counts the open connections, makes room or
    refuses past the cap, and sums up what it refused and closed once per interval."""

    def __init__(
        self,
        server: Callable[[], asyncio.Protocol],
        limits: Limits,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._server = server
        self.limits = limits
        self.loop = loop
        self.open: dict[object, _Connection] = {}  # by aiohttp's protocol (request.protocol)
        self._waiting: dict[_Connection, None] = {}  # no request in progress, longest first
        self._counts: dict[str, int] = {}
        self._report: asyncio.TimerHandle | None = None
        self._released = 0  # bytes received on the connections closed since the last trim
        self._trim: asyncio.TimerHandle | None = None

    def __call__(self) -> asyncio.Protocol:
        if len(self.open) >= self.limits.max_connections:
            victim = next(iter(self._waiting), None)
            if victim is None:
                self.note("refused over the cap")
                return _Refused()
            self.note("closed to make room")
            victim.evict()
        inner = self._server()
        connection = _Connection(self, inner)
        self.open[inner] = connection
        self._waiting[connection] = None
        return connection

    def started(self, connection: _Connection) -> None:
        self._waiting.pop(connection, None)

    def wait_again(self, connection: _Connection) -> None:
        """`connection` waits for a request again: it goes to the end of the line."""
        if connection.inner in self.open:
            self._waiting.pop(connection, None)
            self._waiting[connection] = None

    def forget(self, connection: _Connection) -> None:
        if self.open.pop(connection.inner, None) is None:
            return
        self._waiting.pop(connection, None)
        self._released += connection.received
        if self._released >= TRIM_AFTER_BYTES and self._trim is None:
            self._trim = self.loop.call_later(TRIM_DELAY_S, self._trim_heap)

    def _trim_heap(self) -> None:
        """Give back to the system the memory that closed connections took: freed by Python,
        most of it would stay with the allocator (glibc keeps freed chunks in its arenas),
        and RSS where a flood of bodies took it."""
        self._trim = None
        self._released = 0
        trim_heap()

    def note(self, kind: str) -> None:
        self._counts[kind] = self._counts.get(kind, 0) + 1
        if self._report is None:
            self._report = self.loop.call_later(REPORT_INTERVAL_S, self._log_counts)

    def _log_counts(self) -> None:
        self._report = None
        counts, self._counts = self._counts, {}
        if not counts:
            return
        text = ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items()))
        overloaded = "refused over the cap" in counts or "closed to make room" in counts
        log.log(
            logging.WARNING if overloaded else logging.DEBUG,
            "connections in the last %g s: %s (open %d, cap %d)",
            REPORT_INTERVAL_S,
            text,
            len(self.open),
            self.limits.max_connections,
        )

    def close(self, *, busy: bool) -> None:
        """Close the connections without a request in progress, and with `busy` the rest."""
        for handle in (self._report, self._trim):
            if handle is not None:
                handle.cancel()
        self._report = self._trim = None
        for connection in list(self.open.values() if busy else self._waiting):
            connection.evict()


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


def trim_heap() -> None:
    """glibc's malloc_trim(0): freed memory at the heap's top and inside it back to the
    system. A no-op where the C library has none."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _drop_frames(exc: BaseException) -> None:
    """Drop the tracebacks of `exc` and of the exceptions it chains. They hold the frames of
    the failed body read, and so the bytes read so far, in reference cycles (a frame holds a
    future that holds the exception that holds the frame) that only the cyclic collector
    would free, maybe minutes later: RSS would stay up after the attacker leaves."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__context__ or current.__cause__


def _is_preflight(request: web.Request) -> bool:
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


class HttpService:
    """`app` served on host:port with `limits`, `cors` and `refuse` (module docstring).
    Lifecycle: `start()` binds (OSError when the port is taken; `port` is then the one bound),
    `stop()` closes the listener and every connection."""

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        *,
        limits: Limits | None = None,
        cors: Cors | None = None,
        refuse: Refuse = plain_refusal,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.limits = limits or Limits()
        self.cors = cors
        self._refuse = refuse
        self._in_flight = 0  # bytes of request bodies being read or handled
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._guard: _Guard | None = None

        @web.middleware
        async def defend(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._defend(request, handler)

        app.middlewares.insert(0, defend)
        if cors is not None:
            app.on_response_prepare.append(self._add_cors)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def bodies_in_flight(self) -> int:
        return self._in_flight

    async def start(self) -> None:
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            keepalive_timeout=self.limits.keepalive_timeout_s,
        )
        await runner.setup()
        assert runner.server is not None
        loop = asyncio.get_running_loop()
        guard = _Guard(runner.server, self.limits, loop)
        try:
            server = await loop.create_server(
                guard, self.host, self.port, backlog=BACKLOG, reuse_address=True
            )
        except OSError:
            await runner.cleanup()
            raise
        self._runner, self._server, self._guard = runner, server, guard
        self.port = int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening, close the connections that wait, give the requests in progress up
        to SHUTDOWN_TIMEOUT_S to end, then close what is left."""
        if self._server is not None:
            self._server.close()
        if self._guard is not None:
            self._guard.close(busy=False)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._guard is not None:
            self._guard.close(busy=True)

        self._server = self._runner = self._guard = None

    async def _defend(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        connection = None if self._guard is None else self._guard.open.get(request.protocol)
        if connection is not None:
            connection.request_started()
        reserved = 0
        try:
            if self.cors is not None and _is_preflight(request):
                return self._preflight(request)
            if request.body_exists:
                reserved, refusal = await self._read_body(request)
                if refusal is not None:
                    return refusal
            return await handler(request)
        finally:
            self._in_flight -= reserved
            if connection is not None:
                connection.request_done()

    async def _read_body(self, request: web.Request) -> tuple[int, web.StreamResponse | None]:
        """Read the body into the request (the handler's `read()` then returns it): the bytes
        it holds of the budget, and the refusal to answer instead of the handler's, if any."""
        largest = request.client_max_size
        declared = request.content_length
        if declared is not None and declared > largest:
            return 0, self._too_large(request, largest)
        size = largest if declared is None else declared
        budget = self.limits.bodies_in_flight_bytes
        if self._in_flight + size > budget:
            reason = (
                f"the server is reading {self._in_flight} bytes of request bodies, at most "
                f"{budget}, and this body of {size} does not fit: retry later"
            )
            return 0, self._refuse(request, 503, reason, {"limit": budget, "retry": True})
        self._in_flight += size
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                await request.read()
        except TimeoutError as exc:
            _drop_frames(exc)
            timeout = self.limits.body_timeout_s
            reason = f"the body did not arrive within {timeout:g} s"
            refusal = self._refuse(request, 408, reason, {"limit": timeout})
            # Sent, then the connection closed: aiohttp would otherwise wait (lingering_time)
            # for the rest of a body that is not coming.
            await refusal.prepare(request)
            await refusal.write_eof()
            if isinstance(request.protocol, RequestHandler):
                request.protocol.force_close()
            return size, refusal
        except web.HTTPRequestEntityTooLarge as exc:
            _drop_frames(exc)
            return size, self._too_large(request, largest)
        except ConnectionError as exc:  # the client left: nothing to answer, nothing to log
            _drop_frames(exc)
            return size, web.Response(status=400)
        return size, None

    def _too_large(self, request: web.Request, largest: int) -> web.StreamResponse:
        refusal = self._refuse(
            request, 413, f"the body exceeds {largest} bytes", {"limit": largest}
        )
        # The connection is closed after this answer; aiohttp reads (and drops) what the client
        # still sends for a while first, so that the client gets to read the answer.
        refusal.force_close()
        return refusal

    def _preflight(self, request: web.Request) -> web.StreamResponse:
        assert self.cors is not None
        origin = request.headers.get("Origin")
        if self.cors.allowed(origin) is None:
            return plain_refusal(request, 403, f"the origin {origin} is not allowed", {})
        requested = request.headers.get("Access-Control-Request-Headers", "").strip()
        headers = {
            "Access-Control-Allow-Methods": CORS_METHODS,
            "Access-Control-Allow-Headers": requested or CORS_HEADERS,
            "Access-Control-Max-Age": str(CORS_MAX_AGE_S),
        }
        return web.Response(status=204, headers=headers)

    async def _add_cors(self, request: web.Request, response: web.StreamResponse) -> None:
        assert self.cors is not None
        allowed = self.cors.allowed(request.headers.get("Origin"))
        if allowed is not None:
            response.headers["Access-Control-Allow-Origin"] = allowed
        if allowed != "*":
            response.headers.add("Vary", "Origin")


class _Throttle:
    """Lets one event of each kind through per interval and counts the rest."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval_s
        self._clock = clock
        self._seen: dict[Hashable, tuple[float, int]] = {}

    def admit(self, kind: Hashable) -> int | None:
        """None to leave this event out; else how many of its kind were left out before it."""
        now = self._clock()
        last, left_out = self._seen.get(kind, (float("-inf"), 0))
        if now - last < self._interval:
            self._seen[kind] = (last, left_out + 1)
            return None
        if len(self._seen) > 10_000:  # kinds come from the code; a bound all the same
            self._seen.clear()
        self._seen[kind] = (now, 0)
        return left_out


def _left_out(count: int) -> str:
    return f" ({count} more like it not logged)" if count else ""


class RepeatFilter(logging.Filter):
    """A warning or error whose logger and message template were logged less than an interval
    ago is left out; the next one let through says how many were."""

    def __init__(
        self, interval_s: float = REPEAT_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._throttle = _Throttle(interval_s, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        left_out = self._throttle.admit((record.name, record.levelno, str(record.msg)))
        if left_out is None:
            return False
        if left_out:
            record.msg = f"{record.msg}{_left_out(left_out)}"
        return True


def raise_open_files_limit() -> int:
    """Raise the soft limit of open files to the hard limit; the soft limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, hard, exc)
    return soft


EVENT_LOOP_ENV = "INFERCHAIN_EVENT_LOOP"
EVENT_LOOPS = ("uvloop", "asyncio")


def event_loop_name() -> str:
    """The event loop a server runs on: `INFERCHAIN_EVENT_LOOP` (uvloop or asyncio) when set,
    else uvloop where it is installed, else asyncio. ValueError for any other name."""
    asked = os.environ.get(EVENT_LOOP_ENV, "").strip().lower()
    if asked and asked not in EVENT_LOOPS:
        raise ValueError(f"{EVENT_LOOP_ENV}={asked!r}: expected one of {', '.join(EVENT_LOOPS)}")
    if asked == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if asked == "uvloop":
            raise ValueError(f"{EVENT_LOOP_ENV}=uvloop, but uvloop is not installed") from None
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a server's main coroutine to its end on the loop `event_loop_name` names. uvloop's
    loop does the socket work of aiohttp in C: the validators of a loaded testnet spend
    about a tenth less CPU per task on it (docs/PERFORMANCE.md). A bad `INFERCHAIN_EVENT_LOOP`
    is logged and the process exits with status 2 before anything runs."""
    try:
        name = event_loop_name()
    except ValueError as exc:
        main.close()
        log.error("%s", exc)
        raise SystemExit(2) from None
    if name == "asyncio":
        return asyncio.run(main)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def prepare_process(loop: asyncio.AbstractEventLoop, limits: Limits | None = None) -> Limits:
    """What a serving process does once at start: the open-files limit raised to its hard
    limit, and the connection cap lowered (with a warning) where that limit leaves less room
    than FD_RESERVE beyond it; repeated warnings and the loop's errors throttled
    (`throttle_logs`, `throttle_loop_errors`). The limits to serve with."""
    limits = limits or Limits()
    room = raise_open_files_limit() - FD_RESERVE
    if room < limits.max_connections:
        cap = max(MIN_CONNECTIONS, room)
        log.warning(
            "the open-files limit leaves room for %d connections beside the ledger's files: "
            "the connection cap is %d, not %d",
            room,
            cap,
            limits.max_connections,
        )
        limits = replace(limits, max_connections=cap)
    throttle_logs()
    throttle_loop_errors(loop)
    return limits


def throttle_logs() -> None:
    """A RepeatFilter on every handler of the root logger (once)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(RepeatFilter())


def throttle_loop_errors(loop: asyncio.AbstractEventLoop) -> None:
    """The loop's errors (a failed accept when descriptors run out, ...) logged once per kind
    per interval with a count of the rest; an OSError in one line, without its traceback."""
    throttle = _Throttle(REPEAT_INTERVAL_S)

    def on_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message") or "unhandled exception in the event loop")
        exc = context.get("exception")
        left_out = throttle.admit((message, type(exc)))
        if left_out is None:
            return
        if isinstance(exc, OSError):
            log.error("%s: %s%s", message, exc, _left_out(left_out))
        else:
            loop.default_exception_handler({**context, "message": message + _left_out(left_out)})

    loop.set_exception_handler(on_error)


def _positive(kind: Callable[[str], float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def _cors_text(text: str) -> str:
    if text.strip().lower() != "none":
        try:
            Cors.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def add_arguments(parser: argparse.ArgumentParser, *, cors: bool = True) -> None:
    """The flags of `Limits` (and `--cors`) on a server's command line."""
    defaults = Limits()
    group = parser.add_argument_group("HTTP limits (PROTOCOL 5, Transport limits)")
    if cors:
        group.add_argument(
            "--cors",
            type=_cors_text,
            metavar="ORIGINS",
            help="origins browsers may call from: `*`, comma-separated origins, or `none` "
            "(default: `*` on a dev chain, none otherwise)",
        )
    numbers: tuple[tuple[str, str, Callable[[str], float], str], ...] = (
        ("max_connections", "N", int, "open connections"),
        ("header_timeout_s", "S", float, "seconds for a request's line and headers"),
        ("keepalive_timeout_s", "S", float, "seconds a connection may idle after a response"),
        ("body_timeout_s", "S", float, "seconds for a request's body"),
        ("bodies_in_flight_bytes", "BYTES", int, "bytes of request bodies read at once"),
    )
    for name, metavar, kind, text in numbers:
        flag = "--" + name.removesuffix("_s").removesuffix("_bytes").replace("_", "-")
        group.add_argument(
            flag,
            dest=name,
            type=_positive(kind),
            default=getattr(defaults, name),
            metavar=metavar,
            help=f"{text} (default {getattr(defaults, name)})",
        )


def limits_from(args: argparse.Namespace) -> Limits:
    return Limits(**{name: getattr(args, name) for name in Limits.__slots__})


def cors_from(args: argparse.Namespace, *, dev: bool) -> Cors | None:
    """`--cors` as given; without it `*` on a dev chain (as anvil and hardhat do), else none."""
    text: str | None = args.cors
    if text is None:
        return Cors(("*",)) if dev else None
    if text.strip().lower() == "none":
        return None
    return Cors.parse(text)
