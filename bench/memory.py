"""Memory over finished tasks: a dev-chain validator process (`python -m rpc`) is given tasks
until `tasks` of them are finished, and its RSS (VmRSS) is read every `step` finished tasks.

The cheapest way to finish a task is to let it fail: the genesis sets both deadlines to one
block, so a task submitted in block h fails (and is refunded) at the end of block h + 1, one
signed transaction per task. Tasks come from `senders` dev accounts in JSON-RPC batches of
presigned SubmitTasks, one batch at a time (the RSS of many batches in flight at once is
their burst, not the finished tasks), each resent from its first refused call (a full
mempool, the per-sender cap) until it is in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import rss_parts, validator
from chain.protocol.genesis import Params, dev_genesis, params_to_json
from chain.protocol.types import SubmitTask
from rpc.client import InferchainClient, RpcError, Wallet, presign

log = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_TASKS = 50_000
DEFAULT_STEP = 10_000
SENDERS = 10
BATCH = 500  # calls per JSON-RPC batch: half the default per-sender cap of the mempool
FINISH_TIMEOUT_S = 300.0  # for one step's tasks to fail once submitted
POLL_S = 0.2
RETRY_S = 0.05  # after a refused batch (the mempool full): let a block take some out


def memory_genesis(senders: int = SENDERS) -> dict[str, Any]:
    """The dev genesis with automine and one-block deadlines, `senders` funded accounts."""
    params = Params(block_time_ms=0, compute_deadline_blocks=1, verify_deadline_blocks=1)
    genesis = dev_genesis(params=params, dev_accounts=senders)
    assert genesis["params"] == params_to_json(params)
    return genesis


def _memory(pid: int) -> dict[str, float]:
    """RSS and its anonymous part (the process's own memory) and file-backed part (LevelDB's
    mapped table files), in MiB."""
    parts = rss_parts(pid)
    return {
        "rssMiB": round(parts["rss"] / MIB, 1),
        "anonMiB": round(parts.get("anon", 0) / MIB, 1),
        "fileMiB": round(parts.get("file", 0) / MIB, 1),
    }


async def send_in_order(client: InferchainClient, calls: list[tuple[str, Any]]) -> int:
    """Send `calls` (one sender's, consecutive nonces) until every one is admitted; the
    number of refusals met on the way."""
    refused = 0
    while calls:
        results = await client.batch(calls)
        taken = 0
        for result in results:
            if isinstance(result, RpcError):
                refused += 1
                break
            taken += 1
        calls = calls[taken:]
        if calls:
            await asyncio.sleep(RETRY_S)
    return refused


async def wait_finished(client: InferchainClient, count: int, timeout: float) -> dict[str, Any]:
    """taskStats once `count` tasks have failed or been verified."""
    deadline = time.monotonic() + timeout
    while True:
        stats = await client.task_stats()
        if stats.get("failed", 0) + stats.get("verified", 0) >= count:
            return stats
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} tasks not finished after {timeout:.0f} s: {stats}")
        await asyncio.sleep(POLL_S)


async def memory_over_tasks(
    work_dir: Path, tasks: int = DEFAULT_TASKS, step: int = DEFAULT_STEP, senders: int = SENDERS
) -> dict[str, Any]:
    """RSS of a fresh validator after every `step` finished tasks, up to `tasks`."""
    genesis = memory_genesis(senders)
    chain_id = int(genesis["chainId"])
    genesis_path = work_dir / "memory-genesis.json"
    genesis_path.parent.mkdir(parents=True, exist_ok=True)
    genesis_path.write_bytes(orjson.dumps(genesis, option=orjson.OPT_INDENT_2))
    wallets = [Wallet.dev(i) for i in range(senders)]
    nonces = [0] * senders
    samples: list[dict[str, Any]] = []
    refused = 0
    started = time.perf_counter()
    with validator(genesis_path, work_dir / "memory-ledger") as service:
        async with InferchainClient(service.url, timeout=120.0) as client:
            samples.append({"finished": 0, **_memory(service.pid)})
            submitted = 0
            while submitted < tasks:
                goal = min(tasks, submitted + step)
                while submitted < goal:  # one batch at a time: the load, not its burst
                    for i, wallet in enumerate(wallets):
                        count = min(BATCH, goal - submitted)
                        if count <= 0:
                            break
                        calls = []
                        for nonce in range(nonces[i], nonces[i] + count):
                            msg = SubmitTask(
                                wallet.address, nonce, "text", 1, f"memory {nonce}", ""
                            )
                            tx = presign(msg, chain_id, wallet.private_key)
                            calls.append((tx.method, tx.params))
                        nonces[i] += count
                        submitted += count
                        refused += await send_in_order(client, calls)
                stats = await wait_finished(client, submitted, FINISH_TIMEOUT_S)
                sample = {"finished": submitted, **_memory(service.pid)}
                samples.append(sample)
                log.info("memory: %d tasks finished, %s (%s)", submitted, sample, stats)
    first = samples[1] if len(samples) > 1 else samples[0]
    return {
        "tasks": tasks,
        "step": step,
        "senders": senders,
        "samples": samples,
        "refusedOnTheWay": refused,
        "growthAfterFirstStepMiB": round(samples[-1]["rssMiB"] - first["rssMiB"], 1),
        "anonGrowthAfterFirstStepMiB": round(samples[-1]["anonMiB"] - first["anonMiB"], 1),
        "seconds": round(time.perf_counter() - started, 1),
    }
