"""Nodes per validator: one validator of a dev chain with timed blocks, and resource nodes
(real processes, the deterministic backend) working through it under a modest task load.

Each run starts a fresh network as the launcher does (`testnet.network`, as with
`make testnet` and `--validators 1 --nodes N`), waits until every process is ready, lets the
nodes settle, then for `duration_s` sends presigned SubmitTasks at a steady
rate while a follower, subscribed to `newBlocks` over the validator's WebSocket, notes when
each block arrives. The figures: the interval between consecutive blocks (mean, p50, p99,
largest) against the setting, the validator's CPU share over the window (its user + system
seconds over the wall seconds: 1.0 is one core) and the nodes', and the tasks verified. The
same run with no resource node is the baseline, measured just before, at each block time.

`python -m bench.nodes` runs it alone; `python scripts/bench.py --only nodes` in the report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO, percentile
from bench.e2e import free_port_block, presign_load
from chain.protocol.genesis import Params, dev_genesis, parse_genesis_file
from rpc import api
from rpc.client import InferchainClient, PresignedTx, RpcError, TransportError, Wallet
from testnet.network import Network

log = logging.getLogger(__name__)

NODES = 30
GENESIS = REPO / "genesis.json"
FAST_BLOCK_TIME_MS = 200  # besides the genesis' own blockTimeMs
DURATION_S = 20.0
TASKS_PER_S = 5.0
SETTLE_S = 3.0  # after every process runs, before the window opens
START_BATCH = 4  # resource nodes started at once
WS_SPARE = 4  # WebSockets from loopback beyond one per node (the follower's)
STOP_TIMEOUT_S = 30.0
DEV_ACCOUNTS = 10
TASK_BATCH = 500
# the target of the issue: with 30 resource nodes the block interval stays within 10% of its
# setting (the mean of the window's intervals)
TARGET_RATIO = 1.10


# The figures (pure)


@dataclass(frozen=True, slots=True)
class Intervals:
    """The intervals between consecutive blocks of a window, in ms, against the setting."""

    setting_ms: int
    blocks: int
    mean_ms: float | None
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @property
    def ratio(self) -> float | None:
        """The mean interval over the setting."""
        return None if self.mean_ms is None else self.mean_ms / self.setting_ms

    def to_json(self) -> dict[str, Any]:
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 1)

        return {
            "settingMs": self.setting_ms,
            "blocks": self.blocks,
            "meanMs": r(self.mean_ms),
            "p50Ms": r(self.p50_ms),
            "p99Ms": r(self.p99_ms),
            "maxMs": r(self.max_ms),
            "ratio": None if self.ratio is None else round(self.ratio, 3),
        }


def intervals(arrivals: dict[int, float], setting_ms: int) -> Intervals:
    """The intervals between blocks of consecutive heights, from when each arrived (seconds);
    a height missing from `arrivals` drops the two intervals it would bound."""
    gaps = [(arrivals[h] - arrivals[h - 1]) * 1000.0 for h in sorted(arrivals) if h - 1 in arrivals]
    if not gaps:
        return Intervals(setting_ms, len(arrivals), None, None, None, None)
    ordered = sorted(gaps)
    return Intervals(
        setting_ms,
        len(arrivals),
        statistics.fmean(gaps),
        percentile(ordered, 0.50),
        percentile(ordered, 0.99),
        ordered[-1],
    )


def cpu_share(cpu_before: float, cpu_after: float, wall_s: float) -> float | None:
    """CPU seconds over wall seconds (1.0: one core all the time)."""
    if wall_s <= 0:
        return None
    return round((cpu_after - cpu_before) / wall_s, 3)


# The network


class OneValidator:
    """A validator (dev validator 0) and `nodes` resource nodes, as `testnet.network.Network`
    runs them for the launcher and the tests; the nodes started `START_BATCH` at a time, each
    batch ready before the next (thirty Python processes starting at once on two cores would
    not all be ready within a process's start timeout)."""

    def __init__(
        self, data_dir: Path, genesis_path: Path, block_time_ms: int, nodes: int, log_level: str
    ) -> None:
        genesis = parse_genesis_file(genesis_path.read_bytes(), str(genesis_path))
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(genesis_path, data_dir / "genesis.json")
        self.nodes = nodes
        self.net = Network(
            genesis,
            data_dir,
            [free_port_block(1)],
            block_time_ms=block_time_ms,
            log_level=log_level,
            # every node and the follower connect from 127.0.0.1: room for a socket each
            validator_extra=("--ws-connections", str(nodes + WS_SPARE)),
        )

    @property
    def url(self) -> str:
        return self.net.url(0)

    async def start(self) -> None:
        self.net.spawn_validator(0)
        await self.net.wait_serving()
        for first in range(0, self.nodes, START_BATCH):
            batch = range(first, min(first + START_BATCH, self.nodes))
            await asyncio.gather(*(self.net.start_node(i) for i in batch))

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: the validator's, and the resource nodes' together."""
        validator = self.net.validators[0]
        return {
            "validator": 0.0 if validator is None else process_cpu_seconds(validator.pid),
            "nodes": sum(process_cpu_seconds(p.pid) for p in self.net.nodes.values()),
        }

    async def stop(self) -> None:
        await asyncio.to_thread(self.net.stop, STOP_TIMEOUT_S)
        await self.net.close()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc); 0 once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# One run


async def follow_blocks(url: str, arrivals: dict[int, float], stop: asyncio.Event) -> None:
    """Note when each block's newBlocks notification arrives (the loop's clock), until
    `stop` is set."""
    loop = asyncio.get_running_loop()
    async with (
        InferchainClient(url) as client,
        client.subscription("newBlocks") as blocks,
    ):
        iterator = aiter(blocks)
        while not stop.is_set():
            waiting = asyncio.ensure_future(anext(iterator))
            stopped = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({waiting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if waiting in done:
                event = waiting.result()
                arrivals.setdefault(int(event["height"]), loop.time())
            else:
                waiting.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await waiting
            stopped.cancel()


async def send_load(
    client: InferchainClient, load: Sequence[PresignedTx], rate: float, stop_at: float
) -> tuple[list[str], int]:
    """Send `load` one after the other at `rate` per second until `stop_at` (the loop's
    clock); the task hashes accepted, and the calls refused."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    accepted: list[str] = []
    refused = 0
    for i, tx in enumerate(load):
        at = start + i / rate
        if at >= stop_at:
            break
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            await client.send_presigned(tx)
            accepted.append(tx.digest)
        except (RpcError, TransportError):
            refused += 1
    return accepted, refused


async def statuses(client: InferchainClient, task_hashes: Sequence[str]) -> dict[str, int]:
    """How many of the tasks are in each status."""
    counts: dict[str, int] = {}
    for i in range(0, len(task_hashes), TASK_BATCH):
        calls: list[tuple[str, Any]] = [
            (api.QUERY_TASK, {"taskHash": h}) for h in task_hashes[i : i + TASK_BATCH]
        ]
        for answer in await client.batch(calls):
            status = answer.get("status") if isinstance(answer, dict) else "unknown"
            counts[str(status)] = counts.get(str(status), 0) + 1
    return counts


def params_of(path: Path) -> Params:
    return parse_genesis_file(path.read_bytes(), str(path)).params


def write_genesis(path: Path, nodes: int, params: Params) -> Path:
    """A dev genesis with `params` and `nodes` resource nodes (at least the three of the
    default testnet, so the launcher has the nodes it derives from)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = dev_genesis(resource_nodes=max(nodes, 3), params=params)
    path.write_text(json.dumps(raw, indent=2) + "\n")
    return path


async def measure(
    work_dir: Path,
    nodes: int,
    block_time_ms: int,
    *,
    duration_s: float = DURATION_S,
    tasks_per_s: float = TASKS_PER_S,
    settle_s: float = SETTLE_S,
    log_level: str = "WARNING",
) -> dict[str, Any]:
    """One network of one validator and `nodes` resource nodes: its figures over a window of
    `duration_s` under `tasks_per_s` tasks a second."""
    name = f"nodes-{nodes}-{block_time_ms}"
    genesis_path = write_genesis(work_dir / f"{name}.genesis.json", nodes, params_of(GENESIS))
    net = OneValidator(work_dir / name, genesis_path, block_time_ms, nodes, log_level)
    wallets = [Wallet.dev(k) for k in range(DEV_ACCOUNTS)]
    count = int(duration_s * tasks_per_s) + 1
    started = time.perf_counter()
    await net.start()
    try:
        ready_s = time.perf_counter() - started
        async with InferchainClient(net.url) as client:
            chain_id = await client.chain_id()
            signed = presign_load(wallets, [0] * len(wallets), chain_id, count, f"nodes {nodes}")
            load = [tx for _w, tx in signed]
            await asyncio.sleep(settle_s)  # the nodes' first polls and subscriptions
            loop = asyncio.get_running_loop()
            arrivals: dict[int, float] = {}
            stop = asyncio.Event()
            follower = asyncio.create_task(follow_blocks(net.url, arrivals, stop))
            await asyncio.sleep(0.5)  # subscribed before the window opens
            cpu_before, t0 = net.cpu(), loop.time()
            accepted, refused = await send_load(client, load, tasks_per_s, t0 + duration_s)
            await asyncio.sleep(max(0.0, t0 + duration_s - loop.time()))
            cpu_after, t1 = net.cpu(), loop.time()
            stop.set()
            await follower
            window = {h: t for h, t in arrivals.items() if t0 <= t <= t1}
            counts = await statuses(client, accepted)
    finally:
        await net.stop()
    figures = intervals(window, block_time_ms)
    return {
        "nodes": nodes,
        "blockTimeMs": block_time_ms,
        "durationS": duration_s,
        "tasksPerS": tasks_per_s,
        "readySeconds": round(ready_s, 1),
        "interval": figures.to_json(),
        "validatorCpuShare": cpu_share(cpu_before["validator"], cpu_after["validator"], t1 - t0),
        "nodesCpuShare": cpu_share(cpu_before["nodes"], cpu_after["nodes"], t1 - t0),
        "tasks": {"accepted": len(accepted), "refused": refused, "statuses": counts},
    }


async def nodes_per_validator(
    work_dir: Path,
    nodes: int = NODES,
    block_times: Sequence[int] | None = None,
    *,
    duration_s: float = DURATION_S,
    tasks_per_s: float = TASKS_PER_S,
    settle_s: float = SETTLE_S,
    log_level: str = "WARNING",
) -> dict[str, Any]:
    """At each block time, the baseline without resource nodes, then `nodes` of them; the
    ratio of their mean intervals to the setting, and of one to the other. Block times: by
    default 200 ms and genesis.json's."""
    if block_times is None:
        block_times = (FAST_BLOCK_TIME_MS, params_of(GENESIS).block_time_ms)
    runs = []
    for block_time_ms in block_times:
        pair = {}
        for count in (0, nodes):
            log.info("nodes: %d resource nodes, %d ms blocks", count, block_time_ms)
            pair[count] = await measure(
                work_dir,
                count,
                block_time_ms,
                duration_s=duration_s,
                tasks_per_s=tasks_per_s,
                settle_s=settle_s,
                log_level=log_level,
            )
        base, loaded = pair[0]["interval"]["meanMs"], pair[nodes]["interval"]["meanMs"]
        runs.append(
            {
                "blockTimeMs": block_time_ms,
                "baseline": pair[0],
                "loaded": pair[nodes],
                "loadedOverBaseline": None
                if not base or loaded is None
                else round(loaded / base, 3),
            }
        )
    return {"nodes": nodes, "targetRatio": TARGET_RATIO, "runs": runs}


def targets_of(part: dict[str, Any]) -> list[tuple[str, float | None, float]]:
    """(name, value, bound) of each target, at most the bound."""
    nodes = part["nodes"]
    return [
        (
            f"block interval with {nodes} nodes / setting, {run['blockTimeMs']} ms blocks",
            run["loaded"]["interval"]["ratio"],
            TARGET_RATIO,
        )
        for run in part["runs"]
    ]


def table(part: dict[str, Any]) -> list[str]:
    """The runs as a Markdown table."""
    lines = [
        f"Nodes per validator (one validator, 0 or {part['nodes']} resource nodes, the "
        "deterministic backend; block interval in ms from the newBlocks notifications; CPU "
        "share: CPU seconds over wall seconds)",
        "",
        "| blockTimeMs | nodes | interval mean | p50 | p99 | max | mean / setting "
        "| validator CPU | nodes' CPU | tasks accepted | verified |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in part["runs"]:
        for fig in (run["baseline"], run["loaded"]):
            iv = fig["interval"]
            tasks = fig["tasks"]
            lines.append(
                f"| {fig['blockTimeMs']} | {fig['nodes']} | {iv['meanMs']} | {iv['p50Ms']} "
                f"| {iv['p99Ms']} | {iv['maxMs']} | {iv['ratio']} | {fig['validatorCpuShare']} "
                f"| {fig['nodesCpuShare']} | {tasks['accepted']} "
                f"| {tasks['statuses'].get('verified', 0)} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Block interval with many resource nodes")
    parser.add_argument("--nodes", type=int, default=NODES, help="resource nodes")
    parser.add_argument("--block-time", type=int, action="append", help="block time in ms (repeat)")
    parser.add_argument("--duration", type=float, default=DURATION_S, help="window, seconds")
    parser.add_argument("--rate", type=float, default=TASKS_PER_S, help="tasks per second")
    parser.add_argument("--work-dir", default=str(REPO / ".data" / "bench" / "nodes"))
    parser.add_argument("--json", default=None, help="write the figures here too")
    parser.add_argument("--log-level", default="INFO", type=str.upper)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s: %(message)s")
    part = asyncio.run(
        nodes_per_validator(
            Path(args.work_dir),
            args.nodes,
            args.block_time,
            duration_s=args.duration,
            tasks_per_s=args.rate,
        )
    )
    if args.json:
        Path(args.json).write_text(json.dumps(part, indent=2) + "\n")
    print("\n".join(table(part)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
