"""Ingestion: presigned transactions accepted per second, and this machine's ceilings.

The same client loop (`rpc.client.InferchainClient.call`) drives every server: a validator in
dev mode with automine, the hardhat peer (`bench.peer`), and a bare aiohttp handler that does
no work (`bench.bare`). Every transaction is signed before the clock starts; an error answer
stops the benchmark, so a rate is always a rate of accepted transactions.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import Service, Throughput, throughput, validator
from chain.protocol import crypto
from chain.protocol.types import SubmitTask
from rpc import api
from rpc.client import InferchainClient, RpcError, Wallet, presign

Call = tuple[str, Any]
CONCURRENT_CLIENTS = 8
BATCH_SIZE = 100
COMMIT_TIMEOUT_S = 120.0


class Refused(Exception):
    """A server answered an error to a call the benchmark expects to be accepted."""


def submit_task_calls(wallet: Wallet, chain_id: int, count: int, tag: str) -> list[Call]:
    """`count` presigned submitTask calls of `wallet`, nonces 0.., distinct prompts."""
    calls = []
    for nonce in range(count):
        msg = SubmitTask(
            sender=wallet.address,
            nonce=nonce,
            schema="text",
            target_count=1,
            prompts=f"bench {tag} {nonce}: say something short",
            model_options="",
        )
        tx = presign(msg, chain_id, wallet.private_key)
        calls.append((tx.method, tx.params))
    return calls


def _check(method: str, result: Any) -> None:
    if isinstance(result, RpcError):
        raise Refused(f"{method} refused: {result}")


async def sequential(url: str, calls: Sequence[Call]) -> Throughput:
    """One client, one call at a time."""
    return await concurrent(url, [calls])


async def concurrent(url: str, per_client: Sequence[Sequence[Call]]) -> Throughput:
    """One client (and one connection) per list of calls, all at once; each client's first
    call opens its connection and is not timed."""
    clients = [InferchainClient(url) for _ in per_client]
    latencies: list[float] = []

    async def drive(client: InferchainClient, calls: Sequence[Call]) -> None:
        for method, params in calls[1:]:
            t0 = time.perf_counter()
            try:
                await client.call(method, params)
            except RpcError as exc:
                raise Refused(f"{method} refused: {exc}") from exc
            latencies.append(time.perf_counter() - t0)

    try:
        await asyncio.gather(
            *(c.call(*calls[0]) for c, calls in zip(clients, per_client, strict=True))
        )
        started = time.perf_counter()
        await asyncio.gather(
            *(drive(c, calls) for c, calls in zip(clients, per_client, strict=True))
        )
        elapsed = time.perf_counter() - started
    finally:
        for client in clients:
            await client.close()
    return throughput(len(latencies), elapsed, latencies)


async def batched(url: str, calls: Sequence[Call], size: int = BATCH_SIZE) -> Throughput:
    """One client sending JSON-RPC batches of `size` calls, one batch at a time."""
    latencies: list[float] = []
    async with InferchainClient(url) as client:
        await client.call(*calls[0])
        rest = list(calls[1:])
        started = time.perf_counter()
        for i in range(0, len(rest), size):
            t0 = time.perf_counter()
            results = await client.batch(rest[i : i + size])
            latencies.append(time.perf_counter() - t0)
            for (method, _params), result in zip(rest[i : i + size], results, strict=True):
                _check(method, result)
        elapsed = time.perf_counter() - started
    return throughput(len(rest), elapsed, latencies)


async def wait_committed(url: str, timeout: float = COMMIT_TIMEOUT_S) -> float:
    """Seconds until the validator's mempool is empty (everything admitted is committed)."""
    started = time.perf_counter()
    async with InferchainClient(url) as client:
        while (await client.health())["mempool"]:
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"the mempool did not drain in {timeout} s")
            await asyncio.sleep(0.01)
    return time.perf_counter() - started


MODES = ("sequential", "concurrent", "batched")


async def drive(mode: str, url: str, calls: Sequence[Sequence[Call]]) -> Throughput:
    """Run one way of sending: `calls` holds one list per client (8 for `concurrent`)."""
    if mode == "sequential":
        return await sequential(url, calls[0])
    if mode == "concurrent":
        return await concurrent(url, calls)
    return await batched(url, calls[0])


def validator_calls(genesis_path: Path, count: int) -> dict[str, list[list[Call]]]:
    """Presigned submitTask calls for each way of sending: about `count` timed ones each."""
    chain_id = _chain_id(genesis_path)
    per_client = count // CONCURRENT_CLIENTS + 1
    return {
        "sequential": [submit_task_calls(Wallet.dev(0), chain_id, count + 1, "sequential")],
        "concurrent": [
            submit_task_calls(Wallet.dev(i), chain_id, per_client, f"concurrent{i}")
            for i in range(CONCURRENT_CLIENTS)
        ],
        "batched": [submit_task_calls(Wallet.dev(0), chain_id, count + 1, "batched")],
    }


async def ingest_validator(
    genesis_path: Path, data_dir: Path, mode: str, calls: Sequence[Sequence[Call]]
) -> tuple[Throughput, float]:
    """A fresh automine validator fed `calls`: accepted per second, and the seconds from the
    first call until its mempool was empty (every accepted transaction in a block)."""
    # One sender pipelines every call of `sequential` and `batched`: let the mempool hold them
    # all (the default share, 1000 per sender, is the defence against a flood, not measured).
    share = str(max(len(c) for c in calls))
    with validator(
        genesis_path, data_dir, "--block-time", "0", "--max-pending-per-sender", share
    ) as node:
        started = time.perf_counter()
        accepted = await drive(mode, node.url, calls)
        await wait_committed(node.url)
        return accepted, time.perf_counter() - started


async def bare_ceiling(work_dir: Path, count: int) -> Throughput:
    """Sequential requests per second to an aiohttp handler that does no work."""
    calls = [(api.SUBMIT_TASK, {"n": i}) for i in range(count + 1)]
    with Service(["-m", "bench.bare"], work_dir / "bare.log") as bare:
        return await sequential(bare.url, calls)


def recovery_ceiling(count: int, bursts: int = 3) -> Throughput:
    """secp256k1 public-key recoveries per second through eth-keys (its active backend) on
    one core: the best of `bursts` runs of `count`, as a ceiling is what the core can do."""
    from eth_keys.datatypes import PrivateKey

    key = PrivateKey(bytes(range(1, 33)))
    digests = [crypto.keccak(i.to_bytes(8, "big")) for i in range(count)]
    signatures = [key.sign_msg_hash(d) for d in digests]
    best: Throughput | None = None
    for _ in range(bursts):
        started = time.perf_counter()
        for digest, signature in zip(digests, signatures, strict=True):
            signature.recover_public_key_from_msg_hash(digest)
        burst = throughput(count, time.perf_counter() - started)
        best = burst if best is None or burst.rate > best.rate else best
    assert best is not None
    return best


def _chain_id(genesis_path: Path) -> int:
    return int(json.loads(genesis_path.read_text())["chainId"])
