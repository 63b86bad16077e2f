"""Shared test machinery: a validator in this process behind a real HTTP server on an
ephemeral loopback port, and validator processes started with `python -m rpc`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from chain.genesis import Genesis, Params, dev_genesis, parse_genesis
from chain.node import Node, dev_validator_key
from rpc.client import InferchainClient
from rpc.server import RpcServer

REPO = Path(__file__).resolve().parent.parent
DEV_MNEMONIC = "test test test test test test test test test test test junk"
PROCESS_START_TIMEOUT = 30.0


def make_genesis(**overrides: Any) -> Genesis:
    """The dev genesis (one validator) with `params` overrides by attribute name."""
    params = Params(**{"block_time_ms": 0, **overrides})
    return parse_genesis(dev_genesis(params=params))


@dataclass
class LocalChain:
    node: Node
    url: str
    client: InferchainClient


@contextlib.asynccontextmanager
async def local_chain(
    data_dir: Path, genesis: Genesis | None = None, *, run: bool = True, **node_options: Any
) -> AsyncIterator[LocalChain]:
    """A validator in this process with its RPC on 127.0.0.1:<ephemeral>.

    With `run`, blocks are produced (automine unless the genesis says otherwise); without it,
    the test produces blocks itself with `node.produce_block()`.
    """
    genesis = genesis or make_genesis()
    node = Node(
        genesis, data_dir, dev_validator_key(genesis, None), check_invariants=True, **node_options
    )
    await node.setup()
    runner = web.AppRunner(RpcServer(node).app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    producer = asyncio.create_task(node.run_forever()) if run else None
    client = InferchainClient(url)
    try:
        yield LocalChain(node, url, client)
    finally:
        await client.close()
        node.stop()
        if producer is not None:
            await asyncio.wait_for(producer, 10)
        await runner.cleanup()
        await node.cleanup()


class ValidatorProcess:
    """`python -m rpc` in its own process, on an ephemeral port."""

    def __init__(self, genesis_path: Path, data_dir: Path, *extra: str) -> None:
        self.genesis_path = genesis_path
        self.data_dir = data_dir
        self.extra = extra
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.log_path = data_dir.parent / f"{data_dir.name}.log"

    def start(self) -> str:
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "rpc",
                    "--genesis",
                    str(self.genesis_path),
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    "0",
                    "--quiet",
                    *self.extra,
                ],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        assert self.proc.stdout is not None
        line = _readline_with_timeout(self.proc, PROCESS_START_TIMEOUT)
        if not line.startswith("Listening on "):
            raise RuntimeError(f"validator did not start: {line!r}; see {self.log_path}")
        self.url = line.removeprefix("Listening on ").strip()
        return self.url

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


def _readline_with_timeout(proc: subprocess.Popen[str], timeout: float) -> str:
    import selectors

    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not selector.select(timeout):
            raise TimeoutError(f"no output from the validator within {timeout} s")
        return proc.stdout.readline()
    finally:
        selector.close()


def write_genesis(path: Path, genesis: Genesis) -> Path:
    path.write_text(json.dumps(genesis.raw, indent=2))
    return path
