"""The ceiling of this stack: an aiohttp JSON handler that does no work.

`python -m bench.bare` listens on an ephemeral loopback port, prints `Listening on URL` and
answers every POST (one call) with a fixed JSON-RPC result until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import orjson
from aiohttp import web

RESULT = {"txHash": "0x" + "00" * 32}


async def handle(request: web.Request) -> web.Response:
    """Parse the request, answer a fixed result with its id: the least a JSON-RPC server does."""
    call = orjson.loads(await request.read())
    answer = {"jsonrpc": "2.0", "result": RESULT, "id": call.get("id")}
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


async def main() -> None:
    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"Listening on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
