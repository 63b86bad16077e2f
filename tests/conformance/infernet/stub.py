"""A failing OpenAI-compatible backend for the `broken` container of the node the suite starts:
an aiohttp server on 127.0.0.1 (ephemeral port) that lists one model at `GET /v1/models`, as
the openai backend's start-up probe needs, and answers every `POST /v1/completions` and
`POST /v1/chat/completions` with HTTP 500.

It runs on an event loop of its own in a daemon thread, so a session-scoped fixture can keep it
up across tests whose loops come and go.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from aiohttp import web

STUB_MODEL = "stub-failing-model"
FAILURE = "the stub backend always fails"
START_TIMEOUT_S = 10.0


async def models(_request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": STUB_MODEL, "object": "model"}]})


async def fail(_request: web.Request) -> web.Response:
    return web.json_response({"error": {"message": FAILURE, "type": "server_error"}}, status=500)


def stub_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", fail)
    app.router.add_post("/v1/chat/completions", fail)
    return app


class FailingOpenAIServer:
    """`start()` serves the stub and returns its base URL; `stop()` closes it and its loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="failing-openai-stub", daemon=True
        )
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _start(self) -> str:
        runner = web.AppRunner(stub_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    def start(self) -> str:
        self._thread.start()
        future: Future[str] = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.url = future.result(START_TIMEOUT_S)
        return self.url

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(
                START_TIMEOUT_S
            )
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT_S)
        self._loop.close()
