"""The Infernet node API's refusals, over HTTP: every 400 of a JobRequest (on `/api/jobs` and
`/api/jobs/stream`), each checked to create nothing; the batch's own 400s; 404 for an id the
caller has no job of; 400 for a bad boolean; 429 with Retry-After past the rate limit, and 503
with Retry-After when every slot for running jobs is taken."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conformance.infernet.support import (
    BUSY_CLIENT,
    LIMITED_CLIENT,
    MAIN_CLIENT,
    Caller,
    CallerFactory,
    Target,
    check_created,
    check_error,
    check_plain_error,
    prompt,
    stream_served,
)

UNKNOWN_CONTAINER = "no-such-container-conformance"
FRESH_CLIENT = "127.0.0.7"  # a client of the limited node with a window of its own


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A JobRequest the node must refuse with 400: its body (raw bytes, or a value sent as
    JSON) made from the target, and the answer expected: exactly `expected` when given,
    else an `{error[, params]}` whose text names each of `mentions`."""

    name: str
    body: Callable[[Target], Any]
    expected: Callable[[Target], dict[str, Any]] | None = None
    mentions: tuple[str, ...] = ()
    owned_only: bool = False
    needs_internal: bool = False


BAD_REQUESTS = [
    BadRequest("bad JSON", lambda t: b'{"containers": [', mentions=("json",)),
    BadRequest("not an object", lambda t: [{"containers": [t.first]}], mentions=("object",)),
    BadRequest(
        "no containers",
        lambda t: {"containers": [], "data": {}},
        expected=lambda t: {"error": "No containers specified"},
    ),
    BadRequest(
        "containers not a list", lambda t: {"containers": t.first}, mentions=("containers",)
    ),
    BadRequest(
        "unknown container",
        lambda t: {"containers": [t.first, UNKNOWN_CONTAINER], "data": {}},
        expected=lambda t: {
            "error": "Container not supported",
            "params": {"container": UNKNOWN_CONTAINER},
        },
    ),
    BadRequest(
        "first not external",
        lambda t: {"containers": [t.internal, t.first], "data": {}},
        expected=lambda t: {
            "error": "First container must be external",
            "params": {"first_container": t.internal},
        },
        needs_internal=True,
    ),
    BadRequest(
        "allowed_ips refusal",
        lambda t: {"containers": ["first", "local"], "data": {}},
        expected=lambda t: {
            "error": "Container not allowed for address",
            "params": {"container": "local", "address": MAIN_CLIENT},
        },
        owned_only=True,
    ),
    BadRequest(
        "unknown field",
        lambda t: {"containers": [t.first], "data": {}, "colour": "blue"},
        mentions=("colour",),
    ),
    BadRequest(
        "data not an object", lambda t: {"containers": [t.first], "data": [1]}, mentions=("data",)
    ),
    BadRequest(
        "bad prompt",
        lambda t: {"containers": [t.first], "data": {"prompt": 3}},
        mentions=("prompt",),
    ),
    BadRequest(
        "bad seed",
        lambda t: {"containers": [t.first], "data": {"prompt": "p", "seed": -1}},
        mentions=("seed",),
    ),
]


def send(body: Any) -> dict[str, Any]:
    return {"raw": body} if isinstance(body, bytes) else {"body": body}


@pytest.mark.parametrize("row", BAD_REQUESTS, ids=[row.name for row in BAD_REQUESTS])
async def test_a_bad_job_request_is_400_and_creates_nothing(
    infernet: Target, caller: Caller, row: BadRequest
) -> None:
    if row.owned_only and not infernet.owned:
        pytest.skip("needs the suite's container local (allowed_ips 10.0.0.0/8)")
    if row.needs_internal and infernet.internal is None:
        pytest.skip(f"{infernet.url} lists no container with external false")
    before = await caller.ids()
    paths = ["/api/jobs"]
    if await stream_served(infernet, caller):
        paths.append("/api/jobs/stream")
    for path in paths:
        status, answer = await caller.post(path, **send(row.body(infernet)))
        assert status == 400, (path, status, answer)
        check_error(answer)
        if row.expected is not None:
            assert answer == row.expected(infernet), (path, answer)
        text = json.dumps(answer).lower()
        for word in row.mentions:
            assert word.lower() in text, f"{path}: the error does not name {word!r}: {answer}"
    assert await caller.ids() == before


@pytest.mark.parametrize(
    ("raw", "mention"),
    [
        (b"[{", "json"),
        (json.dumps({"containers": ["x"]}).encode(), "array"),
    ],
    ids=["bad JSON", "not an array"],
)
async def test_a_bad_batch_is_400_and_creates_nothing(
    caller: Caller, raw: bytes, mention: str
) -> None:
    before = await caller.ids()
    status, answer = await caller.post("/api/jobs/batch", raw=raw)
    assert status == 400, answer
    assert mention in check_error(answer)["error"].lower(), answer
    assert await caller.ids() == before


async def test_an_unknown_id_is_404(infernet: Target, caller: Caller) -> None:
    unknown = str(uuid.uuid4())
    status, answer = await caller.get(f"/api/jobs?id={unknown}")
    assert status == 404, answer
    assert unknown in check_plain_error(answer)
    known = await caller.create([infernet.first], prompt("known"))
    status, answer = await caller.get(f"/api/jobs?id={known}&id={unknown}")
    assert status == 404, answer
    error = check_plain_error(answer)
    assert unknown in error and known not in error


@pytest.mark.parametrize(
    ("query", "name"),
    [("pending=maybe", "pending"), ("pending=", "pending"), ("intermediate=yes", "intermediate")],
)
async def test_a_bad_boolean_is_400(
    infernet: Target, caller: Caller, query: str, name: str
) -> None:
    job_id = await caller.create([infernet.first], prompt("boolean"))
    path = f"/api/jobs?{query}" if name == "pending" else f"/api/jobs?id={job_id}&{query}"
    status, answer = await caller.get(path)
    assert status == 400, answer
    assert name in check_plain_error(answer)


async def test_past_the_rate_limit_every_api_route_is_429_with_retry_after(
    limited_url: str, callers: CallerFactory
) -> None:
    """The limited node takes 3 requests per 600 s from a client: the fourth, and any after
    it, is 429 with Retry-After; /info is no /api/ route and still answers."""
    client = await callers(LIMITED_CLIENT, url=limited_url)
    for _ in range(3):
        assert await client.ids() == []
    status, answer, headers = await client.request(
        "POST", "/api/jobs", body={"containers": ["first"], "data": {}}
    )
    assert status == 429, answer
    check_error(answer)
    assert int(headers["Retry-After"]) >= 1, headers
    for method, path, body in (("GET", "/api/jobs", None), ("POST", "/api/jobs/batch", [])):
        status, answer, headers = await client.request(method, path, body=body)
        assert status == 429, (path, answer)
        assert int(headers["Retry-After"]) >= 1
    status, info = await client.get("/info")
    assert status == 200, info
    # another client has its own window
    fresh = await callers(FRESH_CLIENT, url=limited_url)
    assert await fresh.ids() == []


async def test_with_every_slot_taken_a_job_is_503_with_retry_after(
    limited_url: str, callers: CallerFactory
) -> None:
    """The limited node runs one job at a time: while `slow` runs (for seconds), the next
    job is refused with 503 and Retry-After, and nothing is created."""
    client = await callers(BUSY_CLIENT, url=limited_url)
    status, answer = await client.post("/api/jobs", {"containers": ["slow"], "data": {}})
    assert status == 200, answer
    running = check_created(answer)
    status, answer, headers = await client.request(
        "POST", "/api/jobs", body={"containers": ["first"], "data": {}}
    )
    assert status == 503, answer
    check_error(answer)
    assert int(headers["Retry-After"]) >= 1, headers
    assert await client.ids() == [running]
    assert (await client.info())["pending"]["offchain"] == 1
