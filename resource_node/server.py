"""The resource node's HTTP server (aiohttp), on loopback unless told otherwise: the node's
URL, registered on the chain as its `endpoint` (PROTOCOL 7).

- Infernet's node API (`resource_node.infernet`): `GET /info`, `/api/jobs...`.
- Ocean's compute-to-data provider (`resource_node.ocean`): `/api/services/...`.
- `GET /status`: what the node does for the chain: `{address, models, backend, faults,
  inFlight, done, failed, verified, postprocessErrors, validator}` and more counters
  (`ResourceNode.info`), among them `forcedErrors` (results made deliberately wrong, PROTOCOL
  4.13), `reveals: {sent, refused}` and `secrets: {state, canaryRateBps, epoch, base, length,
  revealedHeight, commits}`.
- `GET /health`: `{"status": "ok"}` while the process serves.
- `GET /metrics`: the node's metrics in the Prometheus text format (`resource_node.metrics`).

Every `/api/` route counts against a per-client rate limit (Infernet's default, 60 requests
per 60 s; `--rate-limit`): past it 429 `{error}` with Retry-After, and nothing done.

Lifecycle as every service here: `setup()` binds the port (0 picks a free one, see `url`),
`run_forever()` waits for `stop()`, `cleanup()` closes the listener. It is served by
`rpc.serving` with its default limits, as the validator is (PROTOCOL 5, "Transport limits").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from resource_node.containers import RateLimit
from resource_node.infernet import client_of, retry_later
from resource_node.jobs import RateLimited, RateLimiter
from rpc import serving

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
LIMITED_PREFIX = "/api/"

Handler = Callable[[web.Request], Any]


class NodeServer:
    """Serves the node's routes: `routes` (the APIs), GET /status, GET /health and GET
    /metrics (the `metrics` registry; without one, an empty registry)."""

    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        *,
        routes: Iterable[web.RouteDef] = (),
        rate_limit: RateLimit | None = None,
        host: str = DEFAULT_HOST,
        port: int = 0,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        self._status = status
        self._metrics = metrics if metrics is not None else CollectorRegistry()
        self._routes = list(routes)
        self._limiter = RateLimiter(rate_limit or RateLimit())
        self.host = host
        self.port = port
        self._service: serving.HttpService | None = None
        self._stopping = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._limit])
        app.router.add_get("/status", self._handle_status)
        app.router.add_get("/health", self._handle_health)
        app.router.add_get("/metrics", self._handle_metrics)
        app.add_routes(self._routes)
        return app

    @web.middleware
    async def _limit(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(LIMITED_PREFIX):
            try:
                self._limiter.hit(client_of(request))
            except RateLimited as exc:
                return retry_later(429, exc)
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPNotFound:
            return web.json_response({"error": f"no route {request.path}"}, status=404)
        except web.HTTPMethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.allowed_methods))
            return web.json_response(
                {"error": f"{request.method} is not served at {request.path}; use {allowed}"},
                status=405,
                headers={"Allow": allowed},
            )
        return response

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _handle_status(self, _request: web.Request) -> web.Response:
        return web.json_response(self._status())

    async def _handle_health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _handle_metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self._metrics)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def setup(self) -> None:
        """Bind and listen; OSError (with the port) when the port is taken."""
        service = serving.HttpService(self.app(), self.host, self.port)
        try:
            await service.start()
        except OSError as exc:
            raise OSError(
                exc.errno, f"the node's HTTP server cannot listen on {self.host}:{self.port}: {exc}"
            ) from exc
        self._service = service
        self.port = service.port
        log.info("serving on %s", self.url)

    async def run_forever(self) -> None:
        await self._stopping.wait()

    def stop(self) -> None:
        self._stopping.set()

    async def cleanup(self) -> None:
        if self._service is not None:
            await self._service.stop()
            self._service = None
