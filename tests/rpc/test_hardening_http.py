"""The HTTP servers' defences that need no validator process (PROTOCOL 1, nesting; PROTOCOL 5,
"Transport limits"): the depth scan every JSON body goes through before a parser sees it
(`wire.json_depth`, `wire.parse_json`), the recursion limit a dependency raises and
`crypto.dev_private_key` sets back, and `rpc.serving` serving a small application on a real
loopback port (connection cap, header and keep-alive timeouts, bodies, CORS). The same attacks
against validator processes are in tests/e2e/test_http_attacks.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.protocol import wire
from rpc import serving
from tests.helpers import REPO
from tests.strategies import scanned_json_depth

WAIT_S = 15.0  # the longest any condition below is waited for


# The depth scan


def reference_depth(value: Any) -> int:
    """The nesting of arrays and objects in a parsed JSON value (0 for a scalar); by a work
    list, not recursion, since it measures values deeper than the interpreter's stack."""
    deepest = 0
    todo = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, list | dict):
            depth += 1
            children = item.values() if isinstance(item, dict) else item
            todo.extend((child, depth) for child in children)
        deepest = max(deepest, depth)
    return deepest


# Strings full of what a scan could mistake for structure: quotes, backslashes, brackets.
TRICKY_TEXT = st.text(alphabet=st.sampled_from('"\\[]{}:,ab é\n\u2028'), max_size=12)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    TRICKY_TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(TRICKY_TEXT, inner, max_size=4)
    ),
    max_leaves=40,
)


def encodings(value: Any) -> list[bytes]:
    texts = [
        json.dumps(value).encode(),
        json.dumps(value, ensure_ascii=False, indent=1).encode(),
    ]
    with contextlib.suppress(TypeError):  # an integer beyond 64 bits
        texts.append(orjson.dumps(value))
    return texts


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_the_depth_scan_agrees_with_the_depth_of_the_parsed_value(value: Any) -> None:
    for text in encodings(value):
        assert wire.json_depth(text) == reference_depth(value), text


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=3000), JSON_VALUES)
def test_the_depth_scan_counts_deep_nesting_around_any_value(depth: int, value: Any) -> None:
    """Nesting far past what the peeling passes take (the running sum does the rest)."""
    text = b"[" * depth + json.dumps(value).encode() + b"]" * depth
    assert wire.json_depth(text) == depth + reference_depth(value)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_the_depth_scan_never_raises_and_is_exact_where_a_parser_accepts(body: bytes) -> None:
    depth = wire.json_depth(body)
    assert isinstance(depth, int) and depth >= 0
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return
    assert depth == reference_depth(value)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, st.binary(max_size=40), st.integers(min_value=0, max_value=60))
def test_the_depth_scan_of_a_text_cut_and_spoiled_is_at_least_what_a_parser_opened(
    value: Any, junk: bytes, extra: int
) -> None:
    """Invalid JSON: a parser opens the brackets of the valid prefix before it fails; the
    scan never says fewer than those."""
    text = b"[" * extra + json.dumps(value).encode()
    for cut in range(0, len(text) + 1, max(1, len(text) // 7)):
        prefix = text[:cut]
        opened = scanned_json_depth(prefix.decode("latin-1"))
        assert wire.json_depth(prefix + junk) >= opened, prefix + junk


@pytest.mark.parametrize("long_number", [False, True], ids=["orjson", "standard library"])
def test_parse_json_refuses_nesting_past_the_limit_before_either_parser(long_number: bool) -> None:
    number = b"123456789012345678901234567890" if long_number else b"1"
    limit = wire.MAX_JSON_DEPTH
    at_limit = b"[" * limit + number + b"]" * limit
    assert wire.json_depth(at_limit) == limit
    with pytest.raises(ValueError, match=f"nested {limit + 1} deep or more, at most {limit}"):
        wire.parse_json(b"[" + at_limit + b"]")
    # refused at the first run of more than 1024 opening brackets, not counted to the end
    with pytest.raises(ValueError, match="nested 1025 deep or more, at most 1024"):
        wire.parse_json(b"[" * 100_000 + number + b"]" * 100_000)
    before = sys.getrecursionlimit()
    value = wire.parse_json(at_limit)  # the standard library's parser gets room for it
    assert reference_depth(value) == limit
    assert sys.getrecursionlimit() == before


def test_orjson_refuses_nesting_past_the_limit_by_itself() -> None:
    """parse_json scans the depth only of a text orjson refuses: orjson's own limit must be
    MAX_JSON_DEPTH, arrays and objects alike."""
    limit = wire.MAX_JSON_DEPTH
    for opening, closing in ((b"[", b"]"), (b'{"k":', b"}")):
        at_limit = opening * limit + b"1" + closing * limit
        orjson.loads(at_limit)
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(opening + at_limit + closing)


def reference_parse(body: bytes) -> Any:
    """parse_json as it was: the depth scanned first, then one of the two parsers."""
    wire.check_json_depth(body)
    if not wire.has_long_number(body):
        return orjson.loads(body)
    return wire.parse_json(body)  # this path is as it was: the scan, then the other parser


def test_brackets_in_strings_do_not_count_towards_the_limit() -> None:
    text = orjson.dumps({"prompt": "[" * 5000 + '\\"' + "{" * 5000})
    assert wire.json_depth(text) == 1
    assert wire.parse_json(text) == {"prompt": "[" * 5000 + '\\"' + "{" * 5000}


def test_deriving_a_dev_key_leaves_the_recursion_limit_as_it_was() -> None:
    """Importing eth_account imports py_ecc, which raises the limit to 100,000; the one place
    that imports it sets it back (a fresh interpreter: this one may have imported it)."""
    script = (
        "import sys\n"
        "before = sys.getrecursionlimit()\n"
        "from chain.protocol import crypto\n"
        "from chain.protocol.genesis import DEV_MNEMONIC\n"
        "crypto.dev_private_key(DEV_MNEMONIC, 0)\n"
        "import py_ecc\n"
        "print(before, sys.getrecursionlimit())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    before, after = out.stdout.split()
    assert after == before


# rpc.serving on a small application


def small_app() -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"got": len(body)})

    async def hello(_request: web.Request) -> web.Response:
        return web.json_response({"hello": "world"})

    app.router.add_post("/echo", echo)
    app.router.add_get("/hello", hello)
    return app


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    services: list[serving.HttpService] = []

    async def start(**options: Any) -> serving.HttpService:
        service = serving.HttpService(small_app(), "127.0.0.1", 0, **options)
        await service.start()
        services.append(service)
        return service

    yield start
    for service in services:
        await service.stop()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sends until it closes the connection (waited for up to WAIT_S)."""
    chunks = []
    async with asyncio.timeout(WAIT_S):
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One HTTP response, head and body by its Content-Length (waited for up to WAIT_S)."""
    async with asyncio.timeout(WAIT_S):
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        assert length is not None, head
        return head + await reader.readexactly(int(length.group(1)))


def test_limits_refuse_a_value_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="max_connections must be positive, got 0"):
        serving.Limits(max_connections=0)
    with pytest.raises(ValueError, match="header_timeout_s must be positive"):
        serving.Limits(header_timeout_s=-1)


def test_cors_origins_parse_and_a_malformed_one_is_named() -> None:
    assert serving.Cors.parse("*").allowed("https://anything.example") == "*"
    cors = serving.Cors.parse("https://app.example, http://localhost:3000")
    assert cors.allowed("http://localhost:3000") == "http://localhost:3000"
    assert cors.allowed("https://evil.example") is None
    with pytest.raises(ValueError, match=r"'app\.example' is not an origin"):
        serving.Cors.parse("https://ok.example,app.example")


async def test_a_connection_without_complete_headers_is_closed_after_the_header_timeout(
    serve: Any,
) -> None:
    service = await serve(limits=serving.Limits(header_timeout_s=0.5))
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n")  # the head never ends
    assert await read_until_closed(reader) == b""
    writer.close()


async def test_an_idle_keepalive_connection_is_closed_after_the_keepalive_timeout(
    serve: Any,
) -> None:
    service = await serve(limits=serving.Limits(keepalive_timeout_s=0.5))
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await read_until_closed(reader)  # answered, then closed once idle
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"hello": "world"}')
    writer.close()


async def test_past_the_cap_the_longest_waiting_connection_makes_room(serve: Any) -> None:
    service = await serve(limits=serving.Limits(max_connections=4, header_timeout_s=60))
    idle = [await asyncio.open_connection("127.0.0.1", service.port) for _ in range(4)]
    # a fifth connection, which sends its request at once
    async with (
        aiohttp.ClientSession() as session,
        asyncio.timeout(WAIT_S),
        session.get(f"{service.url}/hello") as resp,
    ):
        assert resp.status == 200
    # the first idle connection was closed to make room
    assert await read_until_closed(idle[0][0]) == b""
    for _, writer in idle:
        writer.close()


async def test_past_the_cap_with_every_connection_busy_a_new_one_is_closed_unread(
    serve: Any,
) -> None:
    service = await serve(limits=serving.Limits(max_connections=2, body_timeout_s=60))
    busy = []
    for _ in range(2):  # each in a request: headers in, body still to come
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        busy.append((reader, writer))
    async with asyncio.timeout(WAIT_S):
        while service.bodies_in_flight < 20:
            await asyncio.sleep(0.01)
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await read_until_closed(reader) == b""  # closed, nothing answered
    for busy_reader, busy_writer in busy:  # the busy ones finish as usual
        busy_writer.write(b"defghij")
        head = await asyncio.wait_for(busy_reader.readuntil(b"\r\n\r\n"), WAIT_S)
        assert head.startswith(b"HTTP/1.1 200")
        busy_writer.close()
    writer.close()


async def test_a_body_that_stalls_is_answered_408_and_its_bytes_are_released(serve: Any) -> None:
    service = await serve(limits=serving.Limits(body_timeout_s=0.5))
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    answer = await read_until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b'"error": "the body did not arrive within 0.5 s"' in answer
    assert service.bodies_in_flight == 0
    writer.close()


async def test_bodies_past_the_budget_are_refused_503_before_they_are_read(serve: Any) -> None:
    service = await serve(limits=serving.Limits(bodies_in_flight_bytes=1000, body_timeout_s=60))
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 800\r\n\r\nstalled")
    async with asyncio.timeout(WAIT_S):
        while service.bodies_in_flight < 800:
            await asyncio.sleep(0.01)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{service.url}/echo", data=b"y" * 300) as resp:
            assert resp.status == 503
            refusal = await resp.json()
        assert refusal["limit"] == 1000 and refusal["retry"] is True
        assert "does not fit: retry later" in refusal["error"]
        async with session.post(f"{service.url}/echo", data=b"y" * 200) as resp:
            assert (resp.status, await resp.json()) == (200, {"got": 200})  # this one fits
    writer.write(b"z" * 793)  # the stalled body ends; its share is freed
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    assert head.startswith(b"HTTP/1.1 200")
    assert service.bodies_in_flight == 0
    writer.close()


async def test_a_declared_body_over_the_size_limit_is_refused_unread(serve: Any) -> None:
    service = await serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
    answer = await read_response(reader)  # answered before the body is sent
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"limit": 1048576' in answer
    assert service.bodies_in_flight == 0
    writer.close()


async def test_without_cors_there_are_no_cors_headers_and_no_preflight(serve: Any) -> None:
    service = await serve()
    async with aiohttp.ClientSession() as session:
        headers = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        async with session.options(f"{service.url}/echo", headers=headers) as resp:
            assert resp.status == 405
            assert "Access-Control-Allow-Origin" not in resp.headers
        async with session.get(f"{service.url}/hello", headers=headers) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers


async def test_listed_origins_are_echoed_and_others_refused(serve: Any) -> None:
    service = await serve(cors=serving.Cors.parse("https://app.example"))
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-a"}
    async with aiohttp.ClientSession() as session:
        headers = {"Origin": "https://app.example", **preflight}
        async with session.options(f"{service.url}/echo", headers=headers) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
            assert resp.headers["Access-Control-Allow-Headers"] == "x-a"
            assert resp.headers["Access-Control-Max-Age"] == "600"
        async with session.get(f"{service.url}/hello", headers=headers) as resp:
            assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
            assert resp.headers["Vary"] == "Origin"
        other = {"Origin": "https://evil.example", **preflight}
        async with session.options(f"{service.url}/echo", headers=other) as resp:
            assert resp.status == 403
            assert await resp.json() == {"error": "the origin https://evil.example is not allowed"}
            assert "Access-Control-Allow-Origin" not in resp.headers


def test_repeated_warnings_are_logged_once_per_interval_with_a_count() -> None:
    now = [0.0]
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("tests.hardening.repeats")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = Keep()
    handler.addFilter(serving.RepeatFilter(interval_s=10, clock=lambda: now[0]))
    logger.addHandler(handler)
    try:
        for k in range(1000):
            logger.warning("accept failed: %d", k)
        logger.info("an info line passes every time")
        logger.info("an info line passes every time")
        now[0] = 10.0
        logger.warning("accept failed: %d", 1000)
    finally:
        logger.removeHandler(handler)
    assert records == [
        "accept failed: 0",
        "an info line passes every time",
        "an info line passes every time",
        "accept failed: 1000 (999 more like it not logged)",
    ]


async def test_loop_errors_are_one_line_per_kind_per_interval_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What asyncio reports when accept() runs out of descriptors, a thousand times: one
    line, the OSError's text and no traceback (a fresh loop: the handler stays on it)."""
    loop = asyncio.new_event_loop()
    try:
        serving.throttle_loop_errors(loop)
        error = OSError(24, "Too many open files")
        with caplog.at_level(logging.ERROR, logger="rpc.serving"):
            for _ in range(1000):
                loop.call_exception_handler(
                    {"message": "socket.accept() out of system resource", "exception": error}
                )
    finally:
        loop.close()
    lines = [r for r in caplog.records if r.name == "rpc.serving"]
    assert [r.getMessage() for r in lines] == [
        "socket.accept() out of system resource: [Errno 24] Too many open files"
    ]
    assert lines[0].exc_info is None


def test_the_connection_cap_is_lowered_to_fit_the_open_files_limit() -> None:
    """A process whose hard limit of open files is 1,300 serves at most 200 connections
    (1,100 descriptors are kept for the ledger and the rest), and says so."""
    script = (
        "import asyncio, logging, resource\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (1000, 1300))\n"
        "from rpc import serving\n"
        "loop = asyncio.new_event_loop()\n"
        "limits = serving.prepare_process(loop, serving.Limits())\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], limits.max_connections)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1300", "200"]
    assert "the connection cap is 200, not 1024" in out.stderr


# Runs of brackets around the limit, inside and outside strings, with closed pairs between.
LIMIT_PIECES = st.one_of(
    st.integers(min_value=1, max_value=wire.MAX_JSON_DEPTH + 2).map(lambda n: b"[" * n),
    st.integers(min_value=1, max_value=wire.MAX_JSON_DEPTH + 2).map(lambda n: b"]" * n),
    st.sampled_from([b"[]", b"[],", b",", b'{"k":', b"}", b'"[[["', b'"\\"["', b"1"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(LIMIT_PIECES, max_size=12).map(b"".join))
def test_the_depth_check_refuses_exactly_what_the_full_count_finds_too_deep(body: bytes) -> None:
    """The check may stop counting at the first run past the limit: it refuses every text the
    full count finds too deep, and any other it refuses is one no parser accepts (a run of
    brackets after more closing than opening ones)."""
    too_deep = wire.json_depth(body) > wire.MAX_JSON_DEPTH
    try:
        wire.check_json_depth(body)
    except ValueError:
        if not too_deep:
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(body)
    else:
        assert not too_deep


@settings(max_examples=300, deadline=None)
@given(st.lists(LIMIT_PIECES | st.just(b"123456789012345678901234567890"), max_size=12))
def test_parse_json_answers_as_the_depth_scan_first_would(pieces: list[bytes]) -> None:
    body = b"".join(pieces)
    try:
        expected: Any = ("ok", reference_parse(body))
    except ValueError as exc:
        expected = ("refused", "nested" in str(exc))
    try:
        got: Any = ("ok", wire.parse_json(body))
    except ValueError as exc:
        got = ("refused", "nested" in str(exc))
    assert got == expected
