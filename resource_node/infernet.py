"""Ritual Infernet's node REST API on a resource node (PROTOCOL 7.2), over `JobEngine`.

- `GET /info`: `{containers: Container[], pending: {offchain, onchain}}`.
- `POST /api/jobs`: a JobRequest -> `{id}`; 400 `{error[, params]}` for a request the node
  refuses.
- `POST /api/jobs/batch`: JobRequest[] -> `{id} | {error[, params]}` per request, in order,
  200 even when some fail.
- `GET /api/jobs?id=..&id=..&intermediate=true`: JobResult[]; without `id`, the caller's job
  ids (`pending=true|false` filters); an id the caller has no job of is 404 `{error}`.
- `POST /api/jobs/stream`: the job id as the first line, then the output as it comes.

A caller is known by its address (`request.remote`); busy is 503 with Retry-After, a
container's own rate limit 429.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from chain.protocol import wire
from resource_node.jobs import (
    MAX_IDS,
    Busy,
    JobEngine,
    JobRequestError,
    RateLimited,
    UnknownJobs,
)

BOOLEANS = {"true": True, "false": False}


def client_of(request: web.Request) -> str:
    """The caller's address, as Infernet knows a client."""
    return request.remote or "unknown"


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def retry_later(status: int, exc: Busy | RateLimited) -> web.Response:
    response = error(status, str(exc))
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def refusal(exc: JobRequestError | Busy | RateLimited) -> web.Response:
    """A job the node does not take: 400 `{error[, params]}`, busy 503, rate-limited 429."""
    if isinstance(exc, JobRequestError):
        return web.json_response(exc.to_json(), status=400)
    return retry_later(503 if isinstance(exc, Busy) else 429, exc)


async def json_body(request: web.Request) -> Any:
    """The request's JSON body; JobRequestError when it is not JSON."""
    raw = await request.read()
    try:
        return wire.parse_json(raw)
    except ValueError as exc:
        raise JobRequestError(f"Invalid JSON body: {exc}") from exc


def boolean(request: web.Request, name: str) -> bool | None:
    """A `true|false` query parameter; JobRequestError naming it otherwise."""
    value = request.query.get(name)
    if value is None:
        return None
    if value.lower() not in BOOLEANS:
        raise JobRequestError(f"{name} must be true or false", **{name: value})
    return BOOLEANS[value.lower()]


class InfernetApi:
    """The routes, over an engine and the node's count of chain work in progress."""

    def __init__(self, engine: JobEngine, onchain: Callable[[], int]) -> None:
        self.engine = engine
        self.onchain = onchain

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/info", self.info),
            web.post("/api/jobs", self.create),
            web.post("/api/jobs/batch", self.batch),
            web.get("/api/jobs", self.read),
            web.post("/api/jobs/stream", self.stream),
        ]

    def info_document(self) -> dict[str, Any]:
        return {
            "containers": [c.config.info() for c in self.engine.containers.values()],
            "pending": {
                "offchain": self.engine.running + self.engine.reserved,
                "onchain": self.onchain(),
            },
        }

    async def info(self, _request: web.Request) -> web.Response:
        return web.json_response(self.info_document())

    async def create(self, request: web.Request) -> web.Response:
        try:
            job_id = self.engine.create(await json_body(request), client_of(request))
        except (JobRequestError, Busy, RateLimited) as exc:
            return refusal(exc)
        return web.json_response({"id": job_id})

    async def batch(self, request: web.Request) -> web.Response:
        try:
            answers = self.engine.create_batch(await json_body(request), client_of(request))
        except JobRequestError as exc:
            return web.json_response(exc.to_json(), status=400)
        return web.json_response(answers)

    async def read(self, request: web.Request) -> web.Response:
        ids = request.query.getall("id", [])
        try:
            intermediate = boolean(request, "intermediate")
            pending = boolean(request, "pending")
        except JobRequestError as exc:
            return error(400, exc.error)
        if not ids:
            return web.json_response(self.engine.ids(client_of(request), pending))
        if len(ids) > MAX_IDS:
            return error(400, f"at most {MAX_IDS} ids at a time, got {len(ids)}")
        try:
            results = self.engine.results(ids, client_of(request), bool(intermediate))
        except UnknownJobs as exc:
            return error(404, str(exc))
        return web.json_response(results)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        try:
            job_id, chunks = await self.engine.stream(await json_body(request), client_of(request))
        except (JobRequestError, Busy, RateLimited) as exc:
            return refusal(exc)
        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await response.prepare(request)
        try:
            await response.write(job_id.encode() + b"\n")
            async for chunk in chunks:
                await response.write(chunk.encode())
            await response.write_eof()
        except ConnectionError:  # the client left: the job goes on, and is kept
            pass
        return response
