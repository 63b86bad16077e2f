"""What a committed block changed, as the validator's subscriptions give it (PROTOCOL 5.6).

The ledger writes, with each block, the hashes of the tasks the block changed
(`ev/<h:8>`, 32 bytes each, in the order of the write set). Everything else of an event is
read back when it is asked for: the block's header, its transactions' records, and each
changed task's entries, which carry the height they happened at (a result's `height`, its
`decidedHeight`, each verdict's `height`, the task's `createdHeight` and `finishedHeight`).
A task's past never changes, so the events of block h are the same whenever they are read:
a client that resumes from a height sees what it missed, once.

Events are JSON objects with `topic` (`newBlocks`, `tx` or `task`) and `height`; a task's
have `taskHash`, `sender` and `event`: `submitted`, `result`, `verdict`, `decided` (a result's
verdict count reached its outcome) or `settled` (the task's final status, response and
settlement).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from chain.protocol import wire
from chain.protocol.state import TASK

EVENTS = b"ev/"  # <h:8> -> the hashes of the tasks the block changed, 32 bytes each
HASH_BYTES = 32


def changed_tasks(write_set: Iterable[tuple[bytes, bytes | None]]) -> bytes:
    """The index value of a block: the task hashes its write set touches, in order."""
    return b"".join(
        key[len(TASK) :] for key, value in write_set if key.startswith(TASK) and value is not None
    )


def task_hashes(raw: bytes | None) -> list[bytes]:
    if not raw:
        return []
    return [raw[i : i + HASH_BYTES] for i in range(0, len(raw), HASH_BYTES)]


def block_event(height: int, header: dict[str, Any], hash_: bytes) -> dict[str, Any]:
    return {
        "topic": "newBlocks",
        "height": height,
        "hash": wire.hex0x(hash_),
        "time": header["time"],
        "proposer": header["proposer"],
        "txs": len(header["txs"]),
        "appHash": header["appHash"],
    }


def tx_event(height: int, record: dict[str, Any]) -> dict[str, Any]:
    """A committed transaction: its hash, index, status (`committed` or `late`), type and
    signer, and the task it names when it names one."""
    tx = record["tx"]
    event: dict[str, Any] = {
        "topic": "tx",
        "height": height,
        "txHash": tx["hash"],
        "index": record["index"],
        "status": record["status"],
        "type": tx["type"],
        "sender": tx["signer"],
    }
    task_hash = tx["digest"] if tx["type"] == "SubmitTask" else tx["message"].get("taskHash")
    if isinstance(task_hash, str):
        event["taskHash"] = task_hash
    return event


def task_events(task: dict[str, Any], height: int) -> list[dict[str, Any]]:
    """The events of `task` (its queryTask form) that happened in block `height`."""
    base = {
        "topic": "task",
        "height": height,
        "taskHash": task["taskHash"],
        "sender": task["sender"],
    }
    out: list[dict[str, Any]] = []
    if task["createdHeight"] == height:
        out.append({**base, "event": "submitted", "model": task.get("model")})
    entries: Sequence[dict[str, Any]] = task["executionInfo"]
    for entry in entries:
        if entry["height"] == height:
            out.append(
                {
                    **base,
                    "event": "result",
                    "resourceNode": entry["resourceNode"],
                    "rank": entry["rank"],
                    "result": entry["result"],
                }
            )
    verdicts = sorted(
        ((v, e) for e in entries for v in e["verifications"] if v["height"] == height),
        key=lambda pair: int(pair[0]["seq"]),
    )
    for verdict, entry in verdicts:
        out.append(
            {
                **base,
                "event": "verdict",
                "resourceNode": entry["resourceNode"],
                "verifier": verdict["verifier"],
                "valid": verdict["valid"],
                "seq": verdict["seq"],
            }
        )
    for entry in entries:
        if entry["decidedHeight"] == height:
            out.append(
                {
                    **base,
                    "event": "decided",
                    "resourceNode": entry["resourceNode"],
                    "status": entry["status"],
                }
            )
    if task["finishedHeight"] == height:
        out.append(
            {
                **base,
                "event": "settled",
                "status": task["status"],
                "response": task["response"],
                "verificationCount": task["verificationCount"],
                "settlement": task["settlement"],
            }
        )
    return out
