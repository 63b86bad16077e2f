"""What the command line follows as it happens: a task's events, new blocks, the status changes
of tasks.

Each stream reads the validator's WebSocket first (`GET /ws`, PROTOCOL 5.6) and, where `/ws`
is not served or the socket closes, polls the reads the subscription summarises (`queryTask`,
`blockNumber` and `getBlock`), going on from what it already gave: an event is given once
whichever way it was read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from chain.protocol.types import FINAL_STATUSES
from rpc import api
from rpc.client import InferchainClient, RpcError, TransportError

log = logging.getLogger(__name__)

POLL_S = 0.2  # between two reads of a poll
FINAL = frozenset(status.value for status in FINAL_STATUSES)
# The order of a block's events of one task (PROTOCOL 5.6).
EVENT_ORDER = {"submitted": 0, "result": 1, "verdict": 2, "decided": 3, "settled": 4}

EventKey = tuple[str, ...]


def event_key(event: dict[str, Any]) -> EventKey:
    """What makes a task event the one it is: a node gives one result and one verdict on each
    result, each result is decided once and the task settled once."""
    kind = str(event["event"])
    if kind == "verdict":
        return (kind, event["resourceNode"], event["verifier"])
    if kind in ("result", "decided"):
        return (kind, event["resourceNode"])
    return (kind,)


def task_events(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Every event of a task so far, read from its queryTask answer, as the `task` subscription
    gives them (PROTOCOL 5.6): by height and, within a block, submitted, the results by rank,
    the verdicts by seq, the decisions by rank, settled. Results and verdicts that still wait
    in the mempool are not events yet."""
    base = {"topic": "task", "taskHash": task["taskHash"], "sender": task["sender"]}
    found: list[tuple[int, int, int, dict[str, Any]]] = []

    def add(height: Any, kind: str, order: int, fields: dict[str, Any]) -> None:
        if isinstance(height, int):
            event = {**base, "height": height, "event": kind, **fields}
            found.append((height, EVENT_ORDER[kind], order, event))

    add(task["createdHeight"], "submitted", 0, {"model": task.get("model")})
    for entry in task["executionInfo"]:
        node = entry["resourceNode"]
        fields = {"resourceNode": node, "rank": entry["rank"], "result": entry["result"]}
        add(entry["height"], "result", entry["rank"], fields)
        for verdict in entry["verifications"]:
            add(
                verdict["height"],
                "verdict",
                int(verdict["seq"]),
                {
                    "resourceNode": node,
                    "verifier": verdict["verifier"],
                    "valid": verdict["valid"],
                    "seq": verdict["seq"],
                },
            )
        decided = {"resourceNode": node, "status": entry["status"]}
        add(entry["decidedHeight"], "decided", entry["rank"], decided)
    add(
        task["finishedHeight"],
        "settled",
        0,
        {
            "status": task["status"],
            "response": task["response"],
            "verificationCount": task["verificationCount"],
            "settlement": task["settlement"],
        },
    )
    found.sort(key=lambda item: item[:3])
    return [event for *_, event in found]


async def follow_task(
    client: InferchainClient, task_hash: str, from_height: int, poll_s: float = POLL_S
) -> AsyncGenerator[dict[str, Any], None]:
    """The events of task `task_hash` from block `from_height` on, each once, until it is
    settled: the `task` subscription's, or polled from queryTask without it."""
    seen: set[EventKey] = set()

    def new(event: dict[str, Any]) -> bool:
        key = event_key(event)
        if key in seen:
            return False
        seen.add(key)
        return True

    try:
        subscription = client.subscribe("task", taskHash=task_hash, fromHeight=from_height)
        async with aclosing(subscription) as events:
            async for event in events:
                if new(event):
                    yield event
                    if event["event"] == "settled":
                        return
    except TransportError as exc:
        log.info("following the task by polling queryTask: %s", exc)
    while True:
        for event in task_events(await client.query_task(task_hash)):
            if new(event):
                yield event
                if event["event"] == "settled":
                    return
        await asyncio.sleep(poll_s)


def block_line(block: dict[str, Any]) -> dict[str, Any]:
    """A block as the command line shows it, from getBlock's answer."""
    return {
        "height": block["height"],
        "hash": block["hash"],
        "time": block["time"],
        "proposer": block["proposer"],
        "txCount": len(block["txs"]),
        "appHash": block["appHash"],
    }


def _line_of_event(event: dict[str, Any]) -> dict[str, Any]:
    """The same, from a `newBlocks` notification (which counts the transactions)."""
    return {
        "height": event["height"],
        "hash": event["hash"],
        "time": event["time"],
        "proposer": event["proposer"],
        "txCount": event["txs"],
        "appHash": event["appHash"],
    }


async def follow_blocks(
    client: InferchainClient, from_height: int, poll_s: float = POLL_S
) -> AsyncGenerator[dict[str, Any], None]:
    """Every block from `from_height` on as it is committed (`block_line`), each once:
    the `newBlocks` subscription's, or polled with blockNumber and getBlock without it."""
    next_height = from_height
    try:
        subscription = client.subscribe("newBlocks", fromHeight=from_height)
        async with aclosing(subscription) as events:
            async for event in events:
                if event["height"] >= next_height:
                    next_height = event["height"] + 1
                    yield _line_of_event(event)
    except TransportError as exc:
        log.info("following blocks by polling blockNumber: %s", exc)
    while True:
        head = await client.block_number()
        while next_height <= head:
            yield block_line(await client.get_block(next_height))
            next_height += 1
        await asyncio.sleep(poll_s)


REJECTED = 3  # executionInfo[].status of a result judged wrong (PROTOCOL 4.6)


def status_history(task: dict[str, Any]) -> list[tuple[int, str]]:
    """The statuses a task had, each with the block that gave it, read from its queryTask
    answer (PROTOCOL 4): `submitted` in the block that included it; then, at the end of each
    block that added a result or rejected one, `processing` while fewer results than
    `targetCount` hold a slot (a rejected result frees its slot) and `completed` once they all
    do; `verified` or `failed` in the block that decided it.

    Twin: `_with_results` in chain/protocol/tasks.py, which sets the status it reads."""
    created = task["createdHeight"]
    if not isinstance(created, int):
        return []
    entries = [e for e in task["executionInfo"] if isinstance(e["height"], int)]
    heights = {e["height"] for e in entries}
    heights |= {
        e["decidedHeight"]
        for e in entries
        if e["status"] == REJECTED and isinstance(e["decidedHeight"], int)
    }
    history = [(created, "submitted")]
    for height in sorted(heights):
        given = [e for e in entries if e["height"] <= height]
        freed = sum(
            1
            for e in given
            if e["status"] == REJECTED
            and isinstance(e["decidedHeight"], int)
            and e["decidedHeight"] <= height
        )
        status = "processing" if len(given) - freed < task["targetCount"] else "completed"
        history.append((height, status))
    if isinstance(task["finishedHeight"], int):
        history.append((task["finishedHeight"], task["status"]))
    changes: list[tuple[int, str]] = []
    for height, status in history:
        if changes and changes[-1][0] == height:
            changes.pop()  # a block shows the status it ends with
        if not changes or changes[-1][1] != status:
            changes.append((height, status))
    return changes


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A task's new status and the block that gave it (`previous` None: it was just
    submitted)."""

    task_hash: str
    sender: str
    height: int
    status: str
    previous: str | None

    def line(self) -> dict[str, Any]:
        return {
            "taskHash": self.task_hash,
            "sender": self.sender,
            "height": self.height,
            "status": self.status,
            "previous": self.previous,
        }


class StatusWatch:
    """The status changes of tasks from block `start` on, each given once: read from the
    tasks' queryTask answers (`status_history`), so a block read late misses nothing."""

    def __init__(self, client: InferchainClient, sender: str | None, start: int) -> None:
        self.client = client
        self.sender = sender.lower() if sender is not None else None
        self.start = start
        self.given: dict[str, int] = {}  # task -> the height of the last change given
        self.final: set[str] = set()

    def open_tasks(self) -> set[str]:
        return set(self.given) - self.final

    async def read(self, task_hashes: Iterable[str], height: int) -> list[StatusChange]:
        """The changes of `task_hashes` up to block `height` not given yet (one batch of
        queryTask)."""
        hashes = sorted(set(task_hashes) - self.final)
        if not hashes:
            return []
        answers = await self.client.batch([(api.QUERY_TASK, {"taskHash": h}) for h in hashes])
        changes = []
        for task_hash, task in zip(hashes, answers, strict=True):
            if isinstance(task, RpcError):
                log.info("queryTask %s: %s", task_hash, task)
                continue
            if self.sender is not None and task["sender"].lower() != self.sender:
                continue
            last = self.given.get(task_hash, self.start - 1)
            previous = None
            for at, status in status_history(task):
                if last < at <= height:
                    changes.append(StatusChange(task_hash, task["sender"], at, status, previous))
                    self.given[task_hash] = at
                    if status in FINAL:
                        self.final.add(task_hash)
                previous = status
            self.given.setdefault(task_hash, last)
        return changes


async def tasks_of_block(client: InferchainClient, height: int) -> set[str]:
    """The tasks the transactions of block `height` name (a task, a result, a verdict)."""
    block = await client.get_block(height)
    if not block["txs"]:
        return set()
    answers = await client.batch([(api.GET_TRANSACTION, {"txHash": tx}) for tx in block["txs"]])
    named = set()
    for answer in answers:
        if isinstance(answer, dict) and isinstance(answer.get("associated_task"), str):
            named.add(answer["associated_task"])
    return named


async def watch_tasks(
    client: InferchainClient,
    sender: str | None,
    from_height: int | None = None,
    poll_s: float = POLL_S,
) -> AsyncGenerator[StatusChange, None]:
    """Every status change of a task from block `from_height` (default: the next block) on:
    of `sender`'s tasks through the `tasks {sender}` subscription; of every task (or, without
    `/ws`, of `sender`'s) by reading each block's transactions, and the open tasks seen
    before, which a block may decide at a deadline with no transaction of theirs. A task is
    read as it is at the head, so a block read late may show a later status."""
    start = await client.block_number() + 1 if from_height is None else from_height
    watch = StatusWatch(client, sender, start)
    if sender is not None:
        try:
            subscription = client.subscribe("tasks", sender=sender, fromHeight=start)
            async with aclosing(subscription) as events:
                async for event in events:
                    for change in await watch.read([event["taskHash"]], event["height"]):
                        yield change
                    start = event["height"]
        except TransportError as exc:
            log.info("watching tasks block by block: %s", exc)
    async with aclosing(follow_blocks(client, start, poll_s)) as blocks:
        async for block in blocks:
            named = await tasks_of_block(client, block["height"])
            for change in await watch.read(named | watch.open_tasks(), block["height"]):
                yield change
