"""A network of validator and resource node processes on loopback for the consensus and
fault tests: `testnet.network.Network` (the `perturb.Cluster` the testnet supervisor runs too),
with `--check-invariants`, on ports chosen by the OS before the network starts (the peers must
know each other's URLs), started and read the way the tests need.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from chain.protocol.genesis import Genesis, Params, dev_genesis, parse_genesis
from testnet import perturb
from testnet.network import Network
from testnet.process import Process
from tests.helpers import write_genesis

T = TypeVar("T")

POLL_S = 0.05


def free_ports(count: int) -> list[int]:
    """Ports the OS considers free now (all held open together, so they are distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def network_genesis(validators: int, block_time_ms: int = 200, **params: Any) -> Genesis:
    return parse_genesis(
        dev_genesis(
            validators=validators,
            params=Params(block_time_ms=block_time_ms, **params),
        )
    )


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout: float,
    what: str,
) -> T:
    """Poll `probe` until `done(value)`; fail with `what` and the last value after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {value}")
        await asyncio.sleep(POLL_S)


class LocalNetwork(Network):
    """N validator processes of one genesis in `root`; `close()` kills whatever still runs."""

    def __init__(self, root: Path, genesis: Genesis, *validator_extra: str) -> None:
        super().__init__(
            genesis,
            root,
            free_ports(len(genesis.validators)),
            check_invariants=True,
            validator_extra=validator_extra,
        )
        write_genesis(self.genesis_path, genesis)

    def start(self, k: int) -> Process:
        """Start validator k; returns once it listens."""
        process = self.spawn_validator(k)
        process.wait_ready()
        return process

    def start_all(self) -> None:
        for k in range(self.size):
            self.start(k)

    def kill(self, k: int) -> None:
        self.kill_validator(k)

    def running(self) -> list[int]:
        return [k for k, p in enumerate(self.validators) if p is not None and p.running()]

    def log(self, k: int) -> str:
        process = self.validators[k]
        return process.log_path.read_text() if process is not None else ""

    def start_resource_node(self, i: int) -> Process:
        """Start resource node i; returns once it serves its status."""
        process = self.spawn_node(i)
        process.wait_ready()
        return process

    def kill_resource_node(self, i: int) -> None:
        self.kill_node(i)

    # Reads

    async def heights(self, ks: list[int] | None = None) -> dict[int, int]:
        """The heights of validators `ks` (default: those running) that answer."""
        return await perturb.heights(self, self.running() if ks is None else ks)

    async def wait_heights(self, ks: list[int], height: int, timeout: float = 30.0) -> None:
        await eventually(
            lambda: self.heights(ks),
            lambda seen: len(seen) == len(ks) and min(seen.values()) >= height,
            timeout,
            f"validators {ks} at height {height}",
        )

    async def blocks(self, k: int, last: int) -> list[dict[str, Any]]:
        return [await self.clients[k].get_block(h) for h in range(1, last + 1)]

    async def assert_same_chain(self, ks: list[int], last: int) -> None:
        """Validators `ks` hold the same blocks 1..last, with the same hashes and appHashes."""
        reference = [(b["hash"], b["appHash"]) for b in await self.blocks(ks[0], last)]
        for k in ks[1:]:
            mine = [(b["hash"], b["appHash"]) for b in await self.blocks(k, last)]
            assert mine == reference, f"validator {k} and validator {ks[0]} differ"
