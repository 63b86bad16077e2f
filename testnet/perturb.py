"""Faults of a real network, injected into a running testnet, each followed by a check that
the network recovered (after CometBFT's e2e runner perturbations).

- `pause`: SIGSTOP a validator while the others go on, then SIGCONT it;
- `disconnect`: cut every link between a validator and its peers (the dev-chain control of
  `rpc.p2p`), then reconnect it;
- `split`: cut the validators into two halves; neither may commit; then heal;
- `slow-links`: delay every message to and from a validator; the chain goes on;
- `restart`: SIGKILL a validator and start it again on its data;
- `foreign-genesis`: restart a validator with another genesis on its data: it must refuse to
  start, with a clear message; then it starts with its own;
- `kill-node`: SIGKILL a resource node while tasks are in flight, then start it again.

Recovered means: every validator reaches a common height past the one where the fault ended,
with the same block hash and appHash there, and the task submitted before the fault ends
`verified` or `failed`. Both `scripts/testnet.py --perturb` and the fault tests run these
through `Cluster`, which is whatever starts and stops the processes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from rpc.client import TASK_DONE_STATUSES, InferchainClient, RpcError, TransportError, Wallet

CONVERGE_TIMEOUT_S = 60.0
TASK_TIMEOUT_S = 120.0
POLL_S = 0.1
BLOCKS_DOWN = 5  # how many blocks the others make while a validator is paused or cut off
BLOCKS_PAST = 2  # how far past the fault the network must get to count as recovered
SPLIT_OBSERVE_S = 3.0
SLOW_LINK_MS = 300


class Cluster(Protocol):
    """The processes of a running testnet, as the perturbations need them."""

    @property
    def size(self) -> int:
        """How many validators."""

    @property
    def node_count(self) -> int:
        """How many resource nodes."""

    def client(self, k: int) -> InferchainClient: ...

    def url(self, k: int) -> str: ...

    def dev_token(self, k: int) -> str:
        """The token validator k's dev link control asks for (`<data-dir>/dev-token`)."""

    def kill_validator(self, k: int) -> None: ...

    async def start_validator(self, k: int) -> None:
        """Start validator k on its data again; returns once it serves RPC."""

    async def refused_with_foreign_genesis(self, k: int) -> str:
        """Run validator k (stopped) on its data with another genesis; its stderr once it
        exited (raises if it did not refuse to start)."""

    def pause_validator(self, k: int) -> None: ...

    def resume_validator(self, k: int) -> None: ...

    def kill_node(self, i: int) -> None: ...

    async def start_node(self, i: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a perturbation did and whether the network recovered."""

    name: str
    target: str
    recovered: bool
    detail: str
    seconds: float

    def line(self) -> str:
        verdict = "recovered" if self.recovered else "NOT RECOVERED"
        head = f"{self.name:<16} {self.target:<18} {verdict:<14}"
        return f"{head} {self.seconds:5.1f} s  {self.detail}"


async def _wait(probe: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await probe():
        if loop.time() > deadline:
            raise TimeoutError(f"{what} within {timeout:g} s")
        await asyncio.sleep(POLL_S)


async def heights(cluster: Cluster, ks: list[int]) -> dict[int, int]:
    out = {}
    for k in ks:
        with contextlib.suppress(TransportError):
            out[k] = await cluster.client(k).block_number()
    return out


async def wait_for_blocks(cluster: Cluster, ks: list[int], count: int) -> None:
    start = min((await heights(cluster, ks)).values(), default=0)

    async def past() -> bool:
        seen = await heights(cluster, ks)
        return len(seen) == len(ks) and min(seen.values()) >= start + count

    await _wait(past, CONVERGE_TIMEOUT_S, f"validators {ks} making {count} blocks")


async def converge(cluster: Cluster) -> str:
    """Wait until every validator is BLOCKS_PAST blocks past the highest of them now and
    check that they agree there; a description of the common block."""
    everyone = list(range(cluster.size))
    target = max((await heights(cluster, everyone)).values()) + BLOCKS_PAST

    async def reached() -> bool:
        seen = await heights(cluster, everyone)
        return len(seen) == cluster.size and min(seen.values()) >= target

    await _wait(reached, CONVERGE_TIMEOUT_S, f"every validator at height {target}")
    blocks = [await cluster.client(k).get_block(target) for k in everyone]
    views = {(b["hash"], b["appHash"]) for b in blocks}
    if len(views) != 1:
        raise AssertionError(f"validators disagree at height {target}: {sorted(views)}")
    return f"all at block {target} ({blocks[0]['hash'][:10]}…)"


class Probe:
    """A task submitted before a fault; it must end verified or failed after it."""

    def __init__(self, cluster: Cluster, wallet_index: int = 8) -> None:
        self.cluster = cluster
        self.wallet = Wallet.dev(wallet_index)
        self.count = 0

    async def submit(self, k: int) -> str:
        self.count += 1
        client = self.cluster.client(k)
        client.reset_nonce(self.wallet.address)
        receipt = await client.submit_task(
            self.wallet,
            prompts=f'{{"prompt":"probe {self.count}"}}',
            model_options='{"model":"demo","max_tokens":8}',
        )
        return receipt.task_hash

    async def decided(self, k: int, task_hash: str) -> str:
        task = await self.cluster.client(k).wait_for_task(task_hash, timeout=TASK_TIMEOUT_S)
        return str(task["status"])


async def _run(
    name: str,
    target: str,
    cluster: Cluster,
    fault: Callable[[], Awaitable[str]],
    probe_through: int,
) -> Outcome:
    loop = asyncio.get_running_loop()
    began = loop.time()
    probe = Probe(cluster)
    try:
        task_hash = await probe.submit(probe_through)
        detail = await fault()
        detail += "; " + await converge(cluster)
        status = await probe.decided(probe_through, task_hash)
        detail += f"; probe task {status}"
        recovered = status in TASK_DONE_STATUSES
    except (TimeoutError, AssertionError, TransportError, RpcError) as exc:
        return Outcome(name, target, False, str(exc), loop.time() - began)
    return Outcome(name, target, recovered, detail, loop.time() - began)


async def _on_validator(
    name: str, cluster: Cluster, k: int, fault: Callable[[], Awaitable[str]]
) -> Outcome:
    """A fault of validator k; the probe task goes through the next one, which stays up."""
    return await _run(name, f"validator {k}", cluster, fault, (k + 1) % cluster.size)


async def pause(cluster: Cluster, k: int) -> Outcome:
    async def fault() -> str:
        others = [j for j in range(cluster.size) if j != k]
        cluster.pause_validator(k)
        try:
            await wait_for_blocks(cluster, others, BLOCKS_DOWN)
        finally:
            cluster.resume_validator(k)
        return f"paused while the others made {BLOCKS_DOWN} blocks"

    return await _on_validator("pause", cluster, k, fault)


async def disconnect(cluster: Cluster, k: int) -> Outcome:
    async def fault() -> str:
        others = [j for j in range(cluster.size) if j != k]
        try:
            await cut(cluster, [k], others)
            await wait_for_blocks(cluster, others, BLOCKS_DOWN)
        finally:
            await heal(cluster)
        return f"cut off while the others made {BLOCKS_DOWN} blocks"

    return await _on_validator("disconnect", cluster, k, fault)


async def restart(cluster: Cluster, k: int) -> Outcome:
    async def fault() -> str:
        cluster.kill_validator(k)
        await cluster.start_validator(k)
        return "SIGKILLed and started again"

    return await _on_validator("restart", cluster, k, fault)


async def foreign_genesis(cluster: Cluster, k: int) -> Outcome:
    async def fault() -> str:
        cluster.kill_validator(k)
        stderr = await cluster.refused_with_foreign_genesis(k)
        if "holds the chain with genesis" not in stderr or "Traceback" in stderr:
            raise AssertionError(f"unclear refusal: {stderr.strip()[-300:]}")
        await cluster.start_validator(k)
        return "refused another genesis, then started with its own"

    return await _on_validator("foreign-genesis", cluster, k, fault)


async def kill_node(cluster: Cluster, i: int) -> Outcome:
    async def fault() -> str:
        cluster.kill_node(i)
        await wait_for_blocks(cluster, list(range(cluster.size)), BLOCKS_DOWN)
        await cluster.start_node(i)
        return f"SIGKILLed for {BLOCKS_DOWN} blocks, then started again"

    return await _run("kill-node", f"resource node {i}", cluster, fault, 0)


async def slow_links(cluster: Cluster, k: int) -> Outcome:
    """Delay everything to and from validator k by SLOW_LINK_MS; the chain goes on."""

    async def fault() -> str:
        try:
            await set_link(cluster, k, "*", delay_ms=SLOW_LINK_MS)
            for j in range(cluster.size):
                if j != k:
                    await set_link(cluster, j, cluster.url(k), delay_ms=SLOW_LINK_MS)
            await wait_for_blocks(cluster, list(range(cluster.size)), BLOCKS_DOWN)
        finally:
            await heal(cluster)
        return f"{SLOW_LINK_MS} ms on its links while all made {BLOCKS_DOWN} blocks"

    return await _on_validator("slow-links", cluster, k, fault)


async def split(cluster: Cluster) -> Outcome:
    """Cut the validators into two halves: neither has more than 2/3 of the power, so the
    chain must halt (at most a block already precommitted still commits), then heal."""
    n = cluster.size
    halves = [list(range(n // 2)), list(range(n // 2, n))]

    async def fault() -> str:
        everyone = list(range(n))
        try:
            await cut(cluster, *halves)
            halted = max((await heights(cluster, everyone)).values()) + 1
            loop = asyncio.get_running_loop()
            until = loop.time() + SPLIT_OBSERVE_S
            while loop.time() < until:  # watch: no half may commit
                seen = await heights(cluster, everyone)
                if max(seen.values()) > halted:
                    raise AssertionError(f"a half of the split committed: heights {seen}")
                await asyncio.sleep(POLL_S)
        finally:
            await heal(cluster)
        return f"halted at {halted} for {SPLIT_OBSERVE_S:g} s"

    target = f"{halves[0]} | {halves[1]}"
    return await _run("split", target, cluster, fault, halves[1][0])


async def set_link(
    cluster: Cluster, k: int, peer: str, *, drop: bool = False, delay_ms: int = 0
) -> None:
    """Set validator k's link to `peer` ("*": all) through its dev control, with its token."""
    token = cluster.dev_token(k)
    await cluster.client(k).set_p2p_link(peer, token=token, drop=drop, delay_ms=delay_ms)


async def cut(cluster: Cluster, *groups: list[int]) -> None:
    """Cut every link between validators of different groups, both ways."""
    for group in groups:
        for k in group:
            for j in range(cluster.size):
                if j not in group:
                    await set_link(cluster, k, cluster.url(j), drop=True)


async def heal(cluster: Cluster) -> None:
    for k in range(cluster.size):
        with contextlib.suppress(TransportError):
            await set_link(cluster, k, "*", drop=False)


async def one_round(cluster: Cluster, round_: int) -> list[Outcome]:
    """Each perturbation once, on targets that move with `round_`."""
    n = cluster.size
    outcomes = []
    if n >= 4:  # with fewer, one validator down halts the chain (as it should)
        outcomes.append(await pause(cluster, (1 + round_) % n))
        outcomes.append(await disconnect(cluster, (2 + round_) % n))
        outcomes.append(await split(cluster))
        outcomes.append(await slow_links(cluster, round_ % n))
    outcomes.append(await restart(cluster, (3 + round_) % n))
    outcomes.append(await foreign_genesis(cluster, round_ % n))
    if cluster.node_count:
        outcomes.append(await kill_node(cluster, round_ % cluster.node_count))
    return outcomes
