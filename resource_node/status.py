"""The resource node's own small HTTP status server (aiohttp), on loopback.

- `GET /info`: what the node is and does: `{address, models, backend, faults, inFlight, done,
  failed, verified, postprocessErrors, validator}` and some more counters (`ResourceNode.info`),
  among them `forcedErrors` (results made deliberately wrong, PROTOCOL 4.13), `reveals: {sent,
  refused}` and `secrets: {state, canaryRateBps, epoch, base, length, revealedHeight,
  commits}`.
- `GET /health`: `{"status": "ok"}` while the process serves.

Lifecycle as every service here: `setup()` binds the port (0 picks a free one, see `url`),
`run_forever()` waits for `stop()`, `cleanup()` closes the listener. It is served by
`rpc.serving` with its default limits, as the validator is (PROTOCOL 5, "Transport limits").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from rpc import serving

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"


class StatusServer:
    """Serves `info()` at GET /info and a liveness answer at GET /health."""

    def __init__(
        self, info: Callable[[], dict[str, Any]], *, host: str = DEFAULT_HOST, port: int = 0
    ) -> None:
        self._info = info
        self.host = host
        self.port = port
        self._service: serving.HttpService | None = None
        self._stopping = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/info", self._handle_info)
        app.router.add_get("/health", self._handle_health)
        return app

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _handle_info(self, _request: web.Request) -> web.Response:
        return web.json_response(self._info())

    async def _handle_health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def setup(self) -> None:
        """Bind and listen; OSError (with the port) when the port is taken."""
        service = serving.HttpService(self.app(), self.host, self.port)
        try:
            await service.start()
        except OSError as exc:
            raise OSError(
                exc.errno, f"status server cannot listen on {self.host}:{self.port}: {exc}"
            ) from exc
        self._service = service
        self.port = service.port
        log.info("status on %s", self.url)

    async def run_forever(self) -> None:
        await self._stopping.wait()

    def stop(self) -> None:
        self._stopping.set()

    async def cleanup(self) -> None:
        if self._service is not None:
            await self._service.stop()
            self._service = None
