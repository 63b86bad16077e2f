"""End to end: verified tasks per second and submit-to-verified latency on the default testnet.

`end_to_end` starts `scripts/testnet.py` (4 validators, 3 resource nodes, the deterministic
backend) on a fresh data directory, waits until its status line shows every process, every
validator answers and a round of warm-up tasks is verified, then offers submitTask at a fixed
rate for a fixed time, open loop: every transaction is signed before the clock starts and
sent at its scheduled time, whatever the answers to the earlier ones. Ten dev accounts send,
account i always to validator i mod 4 and one transaction at a time (a nonce must not
overtake the one before it), so the load enters the network at every validator.

Latency is measured from a task's scheduled send time to the moment the block that decided it
was first seen: a follower asks the validators' `GET /health` in turn every few milliseconds
and notes when each height appears, and at each new height reads what the heights since
settled (`getBlockEvents`) and each task settled (queryTask, once). A task's `finishedHeight`
then gives its time, and its `createdHeight`, result height, verdict height and the height
that decided the result (`decidedHeight`) say where the time went (the `breakdown`): the
figures come from the chain, the follower only supplies the clock.

The target: p50 at most 4 block intervals plus the simulated inference time of the backend.
It was 3 (submit, result, verdict) before forced errors; they add a block: a task is settled
(verified) only once the submitters of its decided results reveal their secrets (PROTOCOL
4.13), which they do after the block that decided them, so the path is submit -> result ->
verdicts of the assigned verifiers (decided) -> reveal (settled). `target.boundMs` counts
the block interval as observed (block time plus the rounds of consensus, which under load take
about as long as a 200 ms block time), `target.nominalBoundMs` as the configured block time.
The deterministic backend of the testnet simulates no delay (no `tokens_per_second`), so its
inference time is the time it takes to compute an output, measured here: hundredths of a
millisecond.

`python -m bench.e2e` runs both block times at their LOADS and prints the reports as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import profile
from bench.common import REPO, percentile, throughput
from chain.protocol.types import SubmitTask
from resource_node.backends import InferenceRequest, request_from_task
from resource_node.backends.deterministic import DeterministicBackend
from rpc import api, serving
from rpc.client import (
    TASK_DONE_STATUSES,
    InferchainClient,
    PresignedTx,
    RpcError,
    TransportError,
    Wallet,
    presign,
)
from rpc.errors import MEMPOOL_FULL

log = logging.getLogger(__name__)

VALIDATORS = 4
RESOURCE_NODES = 3
DEV_ACCOUNTS = 10
TESTNET = REPO / "scripts" / "testnet.py"
PROMPT_OPTIONS = '{"model":"demo","max_tokens":16}'
START_TIMEOUT_S = 60.0
WARMUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 45.0
REQUEST_TIMEOUT_S = 10.0
FOLLOW_INTERVAL_S = 0.01  # between two GET /health, each to the next validator
SETTLE_TIMEOUT_S = 30.0
DURATION_S = 30.0
# Offered submitTask per second by block time: busy, not overloaded. On a noisy 2-core machine
# the default testnet kept up with 40 per second at 200 ms (p50 0.5 s, p99 1.3 s) and at
# 1000 ms (p50 2.4 s, p99 5.8 s); half of that leaves room for a noisy neighbour.
LOADS: dict[int, float] = {1000: 10.0, 200: 20.0}
BATCH_LIMIT = 500  # queryTask calls per batch (the server takes up to 1000)
PORT_RANGE = (20000, 30000)

INFERENCE_SAMPLES = 500
# Block intervals of the latency target: submit, result, verdicts (decided), reveal (settled).
TARGET_BLOCKS = 4


# Processes


def free_port_block(count: int, attempts: int = 200) -> int:
    """A port P such that P .. P + count - 1 are free on loopback now (outside the range the
    OS hands out for outgoing connections, so a client socket is unlikely to take one)."""
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(PORT_RANGE[0], PORT_RANGE[1] - count)
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports in {PORT_RANGE}")


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """A process of the testnet, told apart from a later one with the same id by its start."""

    pid: int
    start_ticks: int
    role: str  # "validator", "node" or "other"


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _role(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "other"
    if b"resource_node" in argv:
        return "node"
    if b"rpc" in argv:
        return "validator"
    return "other"


def children_of(parent: int) -> list[ProcInfo]:
    """The live child processes of `parent` (scanning /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[1]) == parent:
            out.append(ProcInfo(int(entry.name), int(fields[19]), _role(int(entry.name))))
    return out


def alive(info: ProcInfo) -> bool:
    fields = _stat_fields(info.pid)
    return fields is not None and int(fields[19]) == info.start_ticks and fields[0] != "Z"


def cpu_seconds(info: ProcInfo) -> float:
    """User + system CPU time of a process so far; 0 once it is gone."""
    fields = _stat_fields(info.pid)
    if fields is None or int(fields[19]) != info.start_ticks:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Testnet:
    """`scripts/testnet.py` as a subprocess: started fresh, ready when its status line shows
    every validator and resource node, stopped with SIGINT (its children with it)."""

    def __init__(
        self,
        data_dir: Path,
        block_time_ms: int,
        *,
        nodes: int,
        log_level: str = "INFO",
        guard: bool = True,
        validators: int = VALIDATORS,
        event_loop: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.block_time_ms = block_time_ms
        self.nodes = nodes
        self.validators = validators
        self.log_level = log_level
        self.guard = guard  # the validators' overload guard (PROTOCOL 5.11)
        self.event_loop = event_loop  # INFERCHAIN_EVENT_LOOP of every process; None: default
        self.port = 0
        self.urls: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.children: dict[int, ProcInfo] = {}
        self.last_status = ""
        self._ready = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.event_loop is not None:
            env[serving.EVENT_LOOP_ENV] = self.event_loop
        return env

    async def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port_block(self.validators)
        self.urls = [f"http://127.0.0.1:{self.port + k}" for k in range(self.validators)]
        args = [str(TESTNET), "--fresh", "--no-demo", "--block-time", str(self.block_time_ms)]
        args += [
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--node-port",
            "0",
            "--no-ao",
        ]
        args += ["--validators", str(self.validators), "--nodes", str(self.nodes)]
        args += ["--log-level", self.log_level]
        if not self.guard:
            args.append("--no-overload-guard")
        with (self.data_dir.parent / f"{self.data_dir.name}.log").open("ab") as launcher_log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                cwd=REPO,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=launcher_log,
                env=self._env(),
            )
        self._reader = asyncio.create_task(self._read_stdout())
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            raise RuntimeError(
                f"the testnet was not ready in {timeout_s:g} s; last status "
                f"{self.last_status!r}; logs in {self.data_dir}"
            ) from None
        if self.proc.returncode is not None:
            raise RuntimeError(f"the testnet exited with {self.proc.returncode}; see its logs")
        self.note_children()

    async def _read_stdout(self) -> None:
        """Keep the pipe drained; the status line says when every process runs."""
        assert self.proc is not None and self.proc.stdout is not None
        want = (
            f"validators {self.validators}/{self.validators}",
            f"nodes {self.nodes}/{self.nodes}",
        )
        while line := await self.proc.stdout.readline():
            text = line.decode(errors="replace").strip()
            if text.startswith("height "):
                self.last_status = text
                if all(part in text for part in want):
                    self._ready.set()
        self._ready.set()  # it exited: start() notices

    def note_children(self) -> None:
        if self.proc is not None:
            self.children.update((p.pid, p) for p in children_of(self.proc.pid))

    def processes(self) -> list[tuple[str, int]]:
        """(name, pid) of each validator and resource node, in the order they started, and
        of this process (the load), for `bench.profile`."""
        counts: dict[str, int] = {}
        out = [("load", os.getpid())]
        for info in sorted(self.children.values(), key=lambda i: i.start_ticks):
            if info.role in ("validator", "node") and alive(info):
                index = counts[info.role] = counts.get(info.role, -1) + 1
                out.append((f"{info.role}-{index}", info.pid))
        return out

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far by role (validators, resource nodes, the launcher)."""
        out = {"validators": 0.0, "nodes": 0.0}
        for info in self.children.values():
            if info.role == "validator":
                out["validators"] += cpu_seconds(info)
            elif info.role == "node":
                out["nodes"] += cpu_seconds(info)
        if self.proc is not None:
            fields = _stat_fields(self.proc.pid)
            if fields is not None:
                ticks = int(fields[11]) + int(fields[12])
                out["launcher"] = ticks / os.sysconf("SC_CLK_TCK")
        return out

    async def stop(self) -> None:
        """SIGINT to the launcher (it stops its processes in order), then make sure that no
        process of the run is left: SIGKILL by id to anything still there."""
        proc = self.proc
        if proc is None:
            return
        self.note_children()
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("the testnet launcher did not stop in %g s: killed", STOP_TIMEOUT_S)
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 5.0)
        for info in self.children.values():
            if alive(info):
                log.warning("process %d (%s) outlived the testnet: killed", info.pid, info.role)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(info.pid, signal.SIGKILL)
        self.proc = None


# The load


@dataclass(slots=True)
class Sent:
    """One submitTask of the load and what became of it (filled in as the run goes)."""

    tx: PresignedTx
    wallet: int
    validator: int
    scheduled: float
    sent_at: float | None = None
    answered_at: float | None = None
    error: str | None = None
    status: str | None = None
    task: dict[str, Any] | None = None
    refusals: int = 0  # -32007 "overloaded" answers, each followed by its retryAfterMs

    @property
    def task_hash(self) -> str:
        return self.tx.digest

    @property
    def accepted(self) -> bool:
        return self.answered_at is not None and self.error is None


def presign_load(
    wallets: list[Wallet], nonces: list[int], chain_id: int, count: int, tag: str
) -> list[tuple[int, PresignedTx]]:
    """`count` SubmitTasks, round-robin over `wallets` from their next nonces."""
    out = []
    next_nonce = list(nonces)
    for i in range(count):
        w = i % len(wallets)
        msg = SubmitTask(
            sender=wallets[w].address,
            nonce=next_nonce[w],
            schema="text",
            target_count=1,
            prompts=json.dumps({"prompt": f"bench e2e {tag} {i}: say something short"}),
            model_options=PROMPT_OPTIONS,
        )
        next_nonce[w] += 1
        out.append((w, presign(msg, chain_id, wallets[w].private_key)))
    return out


class Follower:
    """Heights as they appear (GET /health of each validator in turn) and, at each new height,
    what the heights not yet read settled (`getBlockEvents`, one call per height): each task
    settled is then read once (queryTask, batched per validator). The load's own reads stay
    one call per height and one per task, however many tasks are open: a follower that asked
    for every open task at every height took 4% of the validators' time at 120 tasks per
    second, more past the capacity."""

    def __init__(self, clients: list[InferchainClient]) -> None:
        self.clients = clients
        self.seen_at: dict[int, float] = {}
        self.height = 0
        self.events_height = 0  # the heights up to this one are read (getBlockEvents)
        self.tracked: dict[str, Sent] = {}
        self.health_errors = 0
        self.query_errors = 0
        self._refreshing = False
        self._refresh_again = False
        self._jobs: set[asyncio.Task[None]] = set()

    def track(self, sent: Sent) -> None:
        self.tracked[sent.task_hash] = sent

    def open(self) -> list[Sent]:
        return [s for s in self.tracked.values() if s.status not in TASK_DONE_STATUSES]

    async def run(self, stop: asyncio.Event) -> None:
        """One loop per validator, staggered: a validator slow to answer delays only its own
        loop, and together they ask every FOLLOW_INTERVAL_S."""
        period = FOLLOW_INTERVAL_S * len(self.clients)
        await asyncio.gather(
            *(
                self._follow(client, stop, k * FOLLOW_INTERVAL_S, period)
                for k, client in enumerate(self.clients)
            )
        )
        if self._jobs:
            await asyncio.gather(*self._jobs, return_exceptions=True)

    async def _follow(
        self, client: InferchainClient, stop: asyncio.Event, phase: float, period: float
    ) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), phase)
        while not stop.is_set():
            try:
                height = int((await client.health())["height"])
            except (TransportError, KeyError, ValueError):
                self.health_errors += 1
                height = 0
            if height > self.height:
                now = loop.time()
                if self.height:  # the first look only says where the chain is
                    for h in range(self.height + 1, height + 1):
                        self.seen_at.setdefault(h, now)
                else:  # before the load: its tasks are in the heights after it
                    self.events_height = height
                self.height = height
                self._start_refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)

    def _start_refresh(self) -> None:
        if self._refreshing:
            self._refresh_again = True
            return
        self._refreshing = True
        job = asyncio.create_task(self._refresh())
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _refresh(self) -> None:
        try:
            while True:
                self._refresh_again = False
                await self.refresh()
                if not self._refresh_again:
                    return
        finally:
            self._refreshing = False

    async def refresh(self) -> None:
        """Read the events of each height up to the highest seen, from the validators in turn
        (the next one when one is not there yet), then the tasks they settled."""
        settled: list[Sent] = []
        while self.events_height < self.height:
            height = self.events_height + 1
            events = await self._events(height)
            if events is None:
                break  # no validator answered for it yet: again at the next height
            for event in events:
                if event.get("event") == "settled":
                    sent = self.tracked.get(event.get("taskHash", ""))
                    if sent is not None:
                        settled.append(sent)
            self.events_height = height
        await self.query([s for s in settled if s.accepted])

    async def _events(self, height: int) -> list[dict[str, Any]] | None:
        for k in range(len(self.clients)):
            client = self.clients[(height + k) % len(self.clients)]
            try:
                answer = await client.call(api.GET_BLOCK_EVENTS, {"height": height})
            except RpcError:
                continue  # not at that height yet
            except TransportError:
                self.query_errors += 1
                continue
            events = answer.get("events") if isinstance(answer, dict) else None
            if isinstance(events, list):
                return events
        return None

    async def last_word(self) -> None:
        """Once the load is over: the heights not read yet, then every accepted task still
        undecided (queryTask)."""
        await self.refresh()
        await self.query([s for s in self.open() if s.accepted])

    async def query(self, tasks: list[Sent]) -> None:
        """queryTask for each of `tasks`, at the validator it went to."""
        by_validator: dict[int, list[Sent]] = {}
        for sent in tasks:
            by_validator.setdefault(sent.validator, []).append(sent)
        await asyncio.gather(
            *(
                self._query(self.clients[v], group[i : i + BATCH_LIMIT])
                for v, group in by_validator.items()
                for i in range(0, len(group), BATCH_LIMIT)
            )
        )

    async def _query(self, client: InferchainClient, group: list[Sent]) -> None:
        calls: list[tuple[str, Any]] = [(api.QUERY_TASK, {"taskHash": s.task_hash}) for s in group]
        try:
            answers = await client.batch(calls)
        except (TransportError, RpcError):
            self.query_errors += 1
            return
        for sent, answer in zip(group, answers, strict=True):
            if isinstance(answer, dict):
                sent.status = answer.get("status")
                sent.task = answer

    def time_of(self, height: int | None) -> float | None:
        return None if height is None else self.seen_at.get(height)


OVERLOAD_MAX_WAIT_MS = 2000  # a retryAfterMs is followed up to this long at once
OVERLOAD_GIVE_UP_S = 120.0  # a task refused for this long after its time is given up


def overloaded_retry_ms(exc: RpcError) -> int | None:
    """The retryAfterMs of a task refused as past the network's capacity (PROTOCOL 5.11)."""
    data = exc.data or {}
    if exc.code != MEMPOOL_FULL or data.get("limit") != "openTasks":
        return None
    retry = data.get("retryAfterMs")
    return max(int(retry), 10) if isinstance(retry, int) else None


async def offer_load(
    clients: list[InferchainClient],
    load: list[tuple[int, PresignedTx]],
    follower: Follower,
    rate: float,
) -> list[Sent]:
    """Send `load` open loop at `rate` per second: transaction i at start + i / rate, each
    account's one after the other (its lock), each to its account's validator."""
    loop = asyncio.get_running_loop()
    locks = [asyncio.Lock() for _ in range(DEV_ACCOUNTS)]
    start = loop.time() + 0.05
    records: list[Sent] = []
    jobs: list[asyncio.Task[None]] = []

    async def send(sent: Sent) -> None:
        async with locks[sent.wallet]:
            sent.sent_at = loop.time()
            try:
                while True:
                    try:
                        answer = await clients[sent.validator].send_presigned(sent.tx)
                        break
                    except RpcError as exc:  # overloaded: back off as told, send it again
                        retry_ms = overloaded_retry_ms(exc)
                        if retry_ms is None or loop.time() - sent.scheduled > OVERLOAD_GIVE_UP_S:
                            raise
                        sent.refusals += 1
                        await asyncio.sleep(min(retry_ms, OVERLOAD_MAX_WAIT_MS) / 1000)
            except (RpcError, TransportError) as exc:
                sent.error = str(exc)[:300]
                return
            finally:
                sent.answered_at = loop.time()
            if not isinstance(answer, dict) or answer.get("taskHash") != sent.task_hash:
                sent.error = f"unexpected answer {answer!r}"[:300]

    for i, (w, tx) in enumerate(load):
        at = start + i / rate
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = Sent(tx, w, w % len(clients), at)
        records.append(sent)
        follower.track(sent)
        jobs.append(asyncio.create_task(send(sent)))
    await asyncio.gather(*jobs)
    return records


async def settle(follower: Follower, timeout: float) -> bool:
    """Until every accepted task is decided, or `timeout`; True if all were."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while any(s.accepted for s in follower.open()):
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


# Figures


def measure_inference_ms(samples: int = INFERENCE_SAMPLES) -> dict[str, Any]:
    """What one inference of the testnet's backend costs: `DeterministicBackend()` as the
    testnet starts its nodes (no --backend-opt), on prompts like the load's. Its simulated
    delay is words / tokens_per_second, none when tokens_per_second is 0 (the default)."""
    backend = DeterministicBackend()
    requests: list[InferenceRequest] = []
    for i in range(samples):
        task = {
            "prompts": json.dumps({"prompt": f"bench e2e inference {i}: say something short"}),
            "modelOptions": PROMPT_OPTIONS,
            "schema": "text",
        }
        requests.append(request_from_task(task, seed=i))
    words = 0
    started = time.perf_counter()
    for request in requests:
        words += backend.compute(request)[1]
    computed_s = (time.perf_counter() - started) / samples
    speed = backend.tokens_per_second
    simulated_s = words / samples / speed if speed > 0 else 0.0
    return {
        "backend": backend.name,
        "tokensPerSecond": speed,
        "simulatedDelayMs": round(simulated_s * 1000, 3),
        "computeMs": round(computed_s * 1000, 4),
        "totalMs": round((simulated_s + computed_s) * 1000, 4),
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _spread(samples_s: list[float]) -> dict[str, float] | None:
    if not samples_s:
        return None
    return {
        "p50": _ms(percentile(samples_s, 0.5)),
        "p99": _ms(percentile(samples_s, 0.99)),
        "mean": _ms(sum(samples_s) / len(samples_s)),
        "max": _ms(max(samples_s)),
    }


def _histogram(values: Iterable[int]) -> dict[str, int]:
    counts: dict[int, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return {str(k): counts[k] for k in sorted(counts)}


@dataclass(slots=True)
class _Stages:
    """Per decided task: heights and times of each step, for the breakdown."""

    submit_to_created: list[float] = field(default_factory=list)
    created_to_result: list[float] = field(default_factory=list)
    result_to_verdict: list[float] = field(default_factory=list)
    verdict_to_decided: list[float] = field(default_factory=list)
    decided_to_final: list[float] = field(default_factory=list)
    result_blocks: list[int] = field(default_factory=list)
    verdict_blocks: list[int] = field(default_factory=list)
    decided_blocks: list[int] = field(default_factory=list)
    final_blocks: list[int] = field(default_factory=list)
    total_blocks: list[int] = field(default_factory=list)


def breakdown(verified: list[Sent], follower: Follower) -> dict[str, Any]:
    """Where the time went, from the heights queryTask reports and when each was seen:
    submit -> SubmitTask in a block (createdHeight) -> first result in a block ->
    first verdict on it in a block -> that result decided (decidedHeight) -> task settled
    (finishedHeight: after the reveals, PROTOCOL 4.13)."""
    st = _Stages()
    for sent in verified:
        task = sent.task or {}
        created, finished = task.get("createdHeight"), task.get("finishedHeight")
        results = sorted(task.get("executionInfo") or [], key=lambda e: e.get("rank", 0))
        if not isinstance(created, int) or not isinstance(finished, int) or not results:
            continue
        result_h = int(results[0]["height"])
        verdicts = [int(v["height"]) for v in results[0].get("verifications", [])]
        verdict_h = min(verdicts) if verdicts else finished
        decided = results[0].get("decidedHeight")
        decided_h = decided if isinstance(decided, int) else finished
        heights = (created, result_h, verdict_h, decided_h, finished)
        times = [follower.time_of(h) for h in heights]
        st.result_blocks.append(result_h - created)
        st.verdict_blocks.append(verdict_h - result_h)
        st.decided_blocks.append(decided_h - verdict_h)
        st.final_blocks.append(finished - decided_h)
        st.total_blocks.append(finished - created)
        if any(t is None for t in times):
            continue
        t_created, t_result, t_verdict, t_decided, t_final = (t for t in times if t is not None)
        st.submit_to_created.append(t_created - sent.scheduled)
        st.created_to_result.append(t_result - t_created)
        st.result_to_verdict.append(t_verdict - t_result)
        st.verdict_to_decided.append(t_decided - t_verdict)
        st.decided_to_final.append(t_final - t_decided)
    return {
        "ms": {
            "submitToCreatedBlock": _spread(st.submit_to_created),
            "createdToResultBlock": _spread(st.created_to_result),
            "resultToVerdictBlock": _spread(st.result_to_verdict),
            "verdictToDecidedBlock": _spread(st.verdict_to_decided),
            "decidedToSettledBlock": _spread(st.decided_to_final),
        },
        "blocks": {
            "createdToResult": _histogram(st.result_blocks),
            "resultToVerdict": _histogram(st.verdict_blocks),
            "verdictToDecided": _histogram(st.decided_blocks),
            "decidedToSettled": _histogram(st.final_blocks),
            "createdToDecided": _histogram(st.total_blocks),
        },
    }


def block_interval_s(follower: Follower, first: float, last: float) -> tuple[int, float | None]:
    """Blocks first seen in [first, last] and the mean time between them."""
    heights = sorted(h for h, t in follower.seen_at.items() if first <= t <= last)
    if len(heights) < 2:
        return len(heights), None
    span = follower.seen_at[heights[-1]] - follower.seen_at[heights[0]]
    return len(heights), span / (heights[-1] - heights[0])


async def txs_per_block(client: InferchainClient, heights: list[int]) -> dict[str, float] | None:
    """Mean and largest transaction count of the blocks at `heights` (read after the run)."""
    counts: list[int] = []
    for i in range(0, len(heights), BATCH_LIMIT):
        calls: list[tuple[str, Any]] = [
            (api.GET_BLOCK, {"height": h}) for h in heights[i : i + BATCH_LIMIT]
        ]
        for answer in await client.batch(calls):
            if isinstance(answer, dict) and isinstance(answer.get("txs"), list):
                counts.append(len(answer["txs"]))
    if not counts:
        return None
    return {"mean": round(sum(counts) / len(counts), 1), "max": max(counts)}


def write_records(data_dir: Path, records: list[Sent], follower: Follower) -> Path:
    """Every task of the run and when each height was seen, on the wall clock (as the logs
    of the testnet's processes), for a closer look: `<data dir>.records.json`."""
    offset = time.time() - asyncio.get_running_loop().time()

    def wall(t: float | None) -> float | None:
        return None if t is None else round(t + offset, 4)

    tasks = []
    for sent in records:
        task = sent.task or {}
        tasks.append(
            {
                "taskHash": sent.task_hash,
                "validator": sent.validator,
                "scheduled": wall(sent.scheduled),
                "sent": wall(sent.sent_at),
                "answered": wall(sent.answered_at),
                "error": sent.error,
                "status": sent.status,
                "createdHeight": task.get("createdHeight"),
                "finishedHeight": task.get("finishedHeight"),
                "results": [
                    {
                        "node": e.get("resourceNode"),
                        "height": e.get("height"),
                        "status": e.get("status"),
                        "verdicts": [
                            {"node": v.get("verifier"), "height": v.get("height")}
                            for v in e.get("verifications", [])
                        ],
                    }
                    for e in task.get("executionInfo") or []
                ],
            }
        )
    seen = {str(h): wall(t) for h, t in sorted(follower.seen_at.items())}
    path = data_dir.parent / f"{data_dir.name}.records.json"
    path.write_text(json.dumps({"seenAt": seen, "tasks": tasks}) + "\n")
    return path


# The benchmark


async def wait_ready(clients: list[InferchainClient], nodes: int) -> float:
    """Every validator answers, then warm-up tasks (one per resource node) until a round of
    them is verified: the resource nodes poll and the pipeline runs end to end. (A node still
    starting lets a task fail at its compute deadline; that round is tried again.) Returns the
    seconds the warm-up took."""
    for client in clients:
        await client.health()
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + WARMUP_TIMEOUT_S
    while True:
        receipts = []
        for i in range(max(nodes, 1)):
            client = clients[i % len(clients)]
            receipt = await client.submit_task(
                Wallet.dev(DEV_ACCOUNTS - 1 - i),
                prompts=json.dumps({"prompt": f"bench e2e warm-up {i} at {loop.time()}"}),
                model_options=PROMPT_OPTIONS,
            )
            receipts.append((client, receipt.task_hash))
        statuses = []
        for client, task_hash in receipts:
            remaining = max(deadline - loop.time(), 1.0)
            task = await client.wait_for_task(task_hash, timeout=remaining)
            statuses.append(task["status"])
        if all(status == "verified" for status in statuses):
            return loop.time() - started
        if loop.time() > deadline:
            raise RuntimeError(f"no warm-up round verified in {WARMUP_TIMEOUT_S:g} s")
        log.info("warm-up tasks %s: again", statuses)


async def end_to_end(
    work_dir: Path,
    block_time_ms: int,
    *,
    offered_per_s: float,
    duration_s: float,
    nodes: int = RESOURCE_NODES,
    settle_timeout_s: float = SETTLE_TIMEOUT_S,
    log_level: str = "INFO",
    guard: bool = True,
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    """One run on a fresh default testnet at `block_time_ms`: `offered_per_s` submitTask per
    second for `duration_s` seconds, open loop, then up to `settle_timeout_s` for the last
    tasks to be decided. A JSON-ready report, times in milliseconds. The testnet, its logs
    and `<run>.records.json` (every task, when each height was seen) stay in `work_dir`."""
    if offered_per_s <= 0 or duration_s <= 0:
        raise ValueError("offered_per_s and duration_s must be positive")
    wallets = [Wallet.dev(i) for i in range(DEV_ACCOUNTS)]
    inference = measure_inference_ms()
    testnet = Testnet(
        work_dir / f"e2e-{block_time_ms}ms",
        block_time_ms,
        nodes=nodes,
        log_level=log_level,
        guard=guard,
        # py-spy sees no Python frame while uvloop's loop waits or does its I/O in C, so
        # waiting and working would look alike: a profiled network runs on asyncio's loop
        event_loop=None if profile_dir is None else "asyncio",
    )
    wall_started = time.perf_counter()
    clients: list[InferchainClient] = []
    try:
        await testnet.start()
        startup_s = time.perf_counter() - wall_started
        clients = [InferchainClient(url, timeout=REQUEST_TIMEOUT_S) for url in testnet.urls]
        warmup_s = await wait_ready(clients, nodes)
        chain_id = await clients[0].chain_id()
        nonces = [int((await clients[0].get_account(w.address))["pendingNonce"]) for w in wallets]
        count = max(1, round(offered_per_s * duration_s))
        load = presign_load(wallets, nonces, chain_id, count, f"{block_time_ms}")

        loop = asyncio.get_running_loop()
        follower = Follower(clients)
        stop_following = asyncio.Event()
        following = asyncio.create_task(follower.run(stop_following))
        sampler = None if profile_dir is None else profile.Sampler(profile_dir, duration_s)
        if sampler is not None:
            unsampled = await sampler.start(testnet.processes())
            if unsampled:
                log.warning("%s", unsampled)
        cpu_before, load_before = testnet.cpu(), os.getloadavg()[0]
        started = loop.time()
        records = await offer_load(clients, load, follower, offered_per_s)
        load_s = loop.time() - started
        profiles = {} if sampler is None else await sampler.finish()
        settled = await settle(follower, settle_timeout_s)
        busy_s = loop.time() - started
        cpu_after, load_after = testnet.cpu(), os.getloadavg()[0]
        stop_following.set()
        await following
        await follower.last_word()

        report = {
            "blockTimeMs": block_time_ms,
            "validators": VALIDATORS,
            "resourceNodes": nodes,
            "overloadGuard": guard,
            "offeredPerS": offered_per_s,
            "durationS": duration_s,
            **await figures(records, follower, clients[0], block_time_ms, inference),
            "settled": settled,
            "loadSeconds": round(load_s, 2),
            "cpuPercent": {  # of one core, from the load's start until every task was decided
                role: round(100 * (cpu_after.get(role, 0.0) - seconds) / busy_s, 1)
                for role, seconds in cpu_before.items()
            },
            "loadAverage": [round(load_before, 2), round(load_after, 2)],
            "startupSeconds": round(startup_s, 2),
            "warmupSeconds": round(warmup_s, 2),
            "followerErrors": {
                "health": follower.health_errors,
                "reads": follower.query_errors,  # getBlockEvents and queryTask
            },
            "lastStatus": testnet.last_status,
            "profile": None
            if profile_dir is None
            else {"dir": str(profile_dir), "eventLoop": testnet.event_loop, **profiles},
            "records": str(write_records(testnet.data_dir, records, follower)),
        }
    finally:
        for client in clients:
            await client.close()
        await testnet.stop()
    report["wallSeconds"] = round(time.perf_counter() - wall_started, 1)
    return report


async def figures(
    records: list[Sent],
    follower: Follower,
    client: InferchainClient,
    block_time_ms: int,
    inference: dict[str, Any],
) -> dict[str, Any]:
    """Counts, verified per second, latency, blocks, the target and the breakdown."""
    accepted = [s for s in records if s.accepted]
    verified = [s for s in accepted if s.status == "verified"]
    failed = [s for s in accepted if s.status == "failed"]
    latencies: list[float] = []
    done_at: list[float] = []
    for sent in verified:
        finished = (sent.task or {}).get("finishedHeight")
        at = follower.time_of(finished if isinstance(finished, int) else None)
        if at is not None:
            latencies.append(at - sent.scheduled)
            done_at.append(at)
    first = min((s.scheduled for s in records), default=0.0)
    last = max(done_at, default=first)
    rate = throughput(len(done_at), last - first, latencies)
    blocks, interval = block_interval_s(follower, first, last)
    heights = sorted(h for h, t in follower.seen_at.items() if first <= t <= last)
    inference_ms = float(inference["totalMs"])
    bound_ms = (
        None if interval is None else round(TARGET_BLOCKS * interval * 1000 + inference_ms, 1)
    )
    nominal_ms = round(TARGET_BLOCKS * block_time_ms + inference_ms, 1)
    p50 = rate.p50_ms
    send_lag = [s.sent_at - s.scheduled for s in records if s.sent_at is not None]
    accept = [s.answered_at - s.sent_at for s in accepted if s.sent_at and s.answered_at]
    return {
        "sent": len(records),
        "accepted": len(accepted),
        "rejected": len(records) - len(accepted),
        "rejectedErrors": sorted({s.error for s in records if s.error})[:5],
        "refusedThenAccepted": sum(1 for s in accepted if s.refusals),
        "refusals": sum(s.refusals for s in records),
        "verified": len(verified),
        "failed": len(failed),
        "undecided": len(accepted) - len(verified) - len(failed),
        "verifiedPerS": round(rate.rate, 2),
        "latency": {  # submit (scheduled) to verified, in ms; count and seconds as verifiedPerS
            **rate.to_json(),
            "mean_ms": _ms(sum(latencies) / len(latencies)) if latencies else None,
            "max_ms": _ms(max(latencies)) if latencies else None,
        },
        "blocks": blocks,
        "blockIntervalMs": None if interval is None else _ms(interval),
        "txsPerBlock": await txs_per_block(client, heights),
        "inference": inference,
        "target": {  # p50 at most TARGET_BLOCKS intervals + inference: observed and configured
            "blocks": TARGET_BLOCKS,
            "boundMs": bound_ms,
            "met": None if p50 is None or bound_ms is None else p50 <= bound_ms,
            "nominalBoundMs": nominal_ms,
            "nominalMet": None if p50 is None else p50 <= nominal_ms,
        },
        "sendLagMs": _spread(send_lag),
        "acceptMs": _spread(accept),
        "breakdown": breakdown(verified, follower),
    }


async def end_to_end_both(
    work_dir: Path,
    loads: dict[int, float] | None = None,
    duration_s: float = DURATION_S,
    *,
    guard: bool = True,
    profile_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """`end_to_end` at each block time of `loads` (default LOADS: 1000 and 200 ms), one
    after the other, each on a fresh testnet."""
    return [
        await end_to_end(
            work_dir,
            block_time_ms,
            offered_per_s=rate,
            duration_s=duration_s,
            guard=guard,
            profile_dir=None if profile_dir is None else profile_dir / f"{block_time_ms}ms",
        )
        for block_time_ms, rate in (loads or LOADS).items()
    ]


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.e2e [--block-time MS --rate R] [--duration S]`: JSON on stdout."""
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__)
    parser.add_argument(
        "--block-time", type=int, metavar="MS", help="one run at MS (default: both of LOADS)"
    )
    parser.add_argument("--rate", type=float, help="submitTask per second (default: LOADS)")
    parser.add_argument("--duration", type=float, default=DURATION_S, metavar="S")
    parser.add_argument("--work-dir", default=str(REPO / ".data" / "bench"))
    parser.add_argument("--log-level", default="WARNING", type=str.upper)
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="sample every process with py-spy during the load; summaries in DIR/summary.txt",
    )
    parser.add_argument(
        "--no-overload-guard",
        action="store_true",
        help="the validators admit every task (to measure the capacity past its knee)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    loads = dict(LOADS)
    if args.block_time is not None:
        loads = {args.block_time: args.rate or LOADS.get(args.block_time, 5.0)}
    elif args.rate is not None:
        loads = dict.fromkeys(loads, args.rate)
    reports = asyncio.run(
        end_to_end_both(
            Path(args.work_dir),
            loads,
            args.duration,
            guard=not args.no_overload_guard,
            profile_dir=None if args.profile is None else Path(args.profile),
        )
    )
    sys.stdout.write(json.dumps(reports if len(reports) > 1 else reports[0], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
