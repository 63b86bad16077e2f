"""Shared test machinery: a validator in this process behind a real HTTP server on an
ephemeral loopback port, and validator processes started with `python -m rpc`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from chain.node.node import Node, dev_validator_key
from chain.protocol.genesis import DEV_MNEMONIC as DEV_MNEMONIC  # re-exported for the tests
from chain.protocol.genesis import Genesis, Params, dev_genesis, parse_genesis
from rpc.client import InferchainClient
from rpc.server import RpcServer

REPO = Path(__file__).resolve().parent.parent
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
    port = runner.addresses[0][1]
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


class ServiceProcess:
    """A long-running service of the project in its own process; `start()` returns once it
    printed its ready line (the value after `ready_prefix`, e.g. its URL)."""

    ready_prefix = ""

    def __init__(self, command: list[str], log_path: Path) -> None:
        self.command = command
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> str:
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.command],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        line = self._read_until_ready(PROCESS_START_TIMEOUT)
        self.url = line.removeprefix(self.ready_prefix).strip()
        return self.url

    def _read_until_ready(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buffer = b""
        while True:
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                if line.startswith(self.ready_prefix):
                    return line
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"{self.command[:2]} not ready in {timeout} s: {self.log_path}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(
                    f"{self.command[:2]} exited before it was ready: {self.log_path}"
                )
            buffer += chunk

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


class ValidatorProcess(ServiceProcess):
    """`python -m rpc` in its own process, on an ephemeral port."""

    ready_prefix = "Listening on "

    def __init__(self, genesis_path: Path, data_dir: Path, *extra: str) -> None:
        self.genesis_path = genesis_path
        self.data_dir = data_dir
        self.extra = extra
        command = ["-m", "rpc", "--genesis", str(genesis_path), "--data-dir", str(data_dir)]
        command += ["--port", "0", "--quiet", *extra]
        super().__init__(command, data_dir.parent / f"{data_dir.name}.log")


class ResourceNodeProcess(ServiceProcess):
    """`python -m resource_node` for dev resource node `index`; `url` is its status URL."""

    ready_prefix = "Status on "

    def __init__(self, rpc_url: str, index: int, state_dir: Path, *extra: str) -> None:
        self.index = index
        command = ["-m", "resource_node", "--rpc", rpc_url, "--dev-index", str(index)]
        command += ["--state-dir", str(state_dir), "--status-port", "0", *extra]
        super().__init__(command, state_dir.parent / f"{state_dir.name}.log")


def write_genesis(path: Path, genesis: Genesis) -> Path:
    path.write_text(json.dumps(genesis.raw, indent=2))
    return path
