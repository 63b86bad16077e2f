"""Shared test machinery: a validator in this process behind a real HTTP server on an
ephemeral loopback port, and validator and resource node processes (`testnet.process`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from testnet.commands import (
    RESOURCE_NODE_READY,
    VALIDATOR_READY,
    resource_node_args,
    validator_args,
)
from testnet.process import Process

REPO = Path(__file__).resolve().parent.parent


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


class ValidatorProcess(Process):
    """`python -m rpc` in its own process, on an ephemeral port; `start()` returns its URL once
    it serves. `extra` options go to the command as they are."""

    def __init__(self, genesis_path: Path, data_dir: Path, *extra: str) -> None:
        args = validator_args(genesis_path, data_dir, extra=extra)
        log_path = data_dir.parent / f"{data_dir.name}.log"
        super().__init__("validator", args, log_path, ready_prefix=VALIDATOR_READY)


class ResourceNodeProcess(Process):
    """`python -m resource_node` for dev resource node `index`; `url` is its status URL."""

    def __init__(self, rpc_url: str, index: int, state_dir: Path, *extra: str) -> None:
        self.index = index
        args = resource_node_args(rpc_url, index, state_dir=state_dir, status_port=0, extra=extra)
        log_path = state_dir.parent / f"{state_dir.name}.log"
        super().__init__(f"resource node {index}", args, log_path, ready_prefix=RESOURCE_NODE_READY)


def write_genesis(path: Path, genesis: Genesis) -> Path:
    path.write_text(json.dumps(genesis.raw, indent=2))
    return path
