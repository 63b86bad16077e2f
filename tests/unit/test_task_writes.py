"""The shortcuts of the task paths write what the plain way writes.

`update_task` (the status known) against `put_task` (the status read back), `settle`'s
final task against `dataclasses.replace`, `get_open_task` against `get_task`, and the
write-set overlay's reads: each over a LevelDB store.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path

import pytest

from chain.node.store import LevelDBStore
from chain.protocol import tasks
from chain.protocol.genesis import Params
from chain.protocol.state import (
    OPEN_STATUSES,
    State,
    add_busy,
    encode_task,
    get_open_task,
    get_task,
    put_account,
    put_supply,
    put_task,
    task_key,
    update_task,
)
from chain.protocol.types import Account, BlockContext, Task

SENDER = "0x1111111111111111111111111111111111111111"
PARAMS = Params()
CTX = BlockContext(height=30, time=1_767_226_030, proposer=SENDER)
# What settle decides; every other field of the task is carried over unchanged.
SETTLED_FIELDS = {
    "status",
    "response",
    "verification_count",
    "finished_height",
    "finished_at",
    "settlement",
}


def a_task(**changes: object) -> Task:
    """A task whose every field differs from its default."""
    task = Task(
        task_hash=b"\x01" * 32,
        tx_hash=b"\x02" * 32,
        sender=SENDER,
        nonce=7,
        schema="text",
        target_count=2,
        prompts="a prompt",
        model_options='{"model": "llama-3"}',
        sid=b"\x03" * 32,
        fee_params='{"maxFee": "9"}',
        fee=3 * 10**15 + 1,
        model="llama-3",
        created_height=10,
        created_at=1_767_226_010,
        status="processing",
        finished_height=1,
        finished_at=2,
        response="stale",
        verification_count=5,
        execution_info=(
            {
                "rank": 1,
                "resourceNode": "0x2222222222222222222222222222222222222222",
                "result": "out",
                "status": tasks.UNVERIFIED,
                "verifications": [],
            },
        ),
        settlement={"stale": True},
    )
    return replace(task, **changes)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LevelDBStore]:
    db = LevelDBStore(tmp_path / "db")
    try:
        yield db
    finally:
        db.close()


def test_settle_keeps_every_field_it_does_not_decide(store: LevelDBStore) -> None:
    kept = {f.name for f in fields(Task)} - SETTLED_FIELDS
    state = State(store)
    put_account(state, SENDER, Account(10**18, 0, 8))
    put_supply(state, 10**24, 0, 0)
    task = a_task()
    add_busy(state, task.execution_info[0]["resourceNode"], 1)  # its result is undecided work
    settled = tasks.settle(state, PARAMS, CTX, task)
    for name in kept:
        assert getattr(settled, name) == getattr(task, name), name
    assert settled == replace(
        task,
        status="failed",
        response=None,
        verification_count=0,
        finished_height=CTX.height,
        finished_at=CTX.time,
        settlement=settled.settlement,
    )
    assert settled.settlement == {
        "height": CTX.height,
        "fee": str(task.fee),
        "networkReward": "0",
        "slashed": [],
        "payouts": [],
        "refund": str(task.fee),
        "burned": "0",
    }


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, "submitted"),
        ("submitted", "submitted"),
        ("submitted", "processing"),
        ("processing", "completed"),
        ("completed", "verified"),
        ("submitted", "failed"),
    ],
)
def test_update_task_writes_what_put_task_writes(
    store: LevelDBStore, before: str | None, after: str
) -> None:
    base = State(store)
    put_task(base, a_task(status="submitted"))  # another task: the counts are not all zero
    if before is not None:
        put_task(base, a_task(task_hash=b"\x09" * 32, status=before))
    store.write(base.writes())

    task = a_task(task_hash=b"\x09" * 32, status=after)
    plain, known = State(store), State(store)
    put_task(plain, task)
    update_task(known, task, before)
    assert known.write_set() == plain.write_set()
    assert known.get(task_key(task.task_hash)) == encode_task(task)


def test_get_open_task_is_get_task_while_the_task_is_open(store: LevelDBStore) -> None:
    state = State(store)
    assert get_open_task(state, b"\x09" * 32) is None
    for status in ("submitted", "processing", "completed", "verified", "failed"):
        task = a_task(status=status)
        put_task(state, task)
        expected = get_task(state, task.task_hash) if status in OPEN_STATUSES else None
        assert get_open_task(state, task.task_hash) == expected


def test_reads_see_the_nearest_write_and_a_delete_hides_the_base(store: LevelDBStore) -> None:
    store.write({b"s/a": b"stored", b"s/b": b"stored", b"s/c": b"stored"})
    parent = State(store)
    parent.put(b"s/a", b"parent")
    parent.delete(b"s/b")
    child = parent.child()
    child.put(b"s/c", b"child")
    assert child.get(b"s/a") == b"parent"
    assert child.get(b"s/b") is None
    assert child.get(b"s/c") == b"child"
    assert child.get(b"s/d") is None
    child.put(b"s/b", b"")
    assert child.get(b"s/b") == b""  # an empty value is a value, not a miss
    assert parent.get(b"s/b") is None
