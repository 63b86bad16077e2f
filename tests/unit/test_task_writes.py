"""The shortcuts of the task paths write what the plain way writes.

`update_task` (the status known) against `put_task` (the status read back), `settle`'s
final task and the values the rules build field by field (`Task.with_results`,
`ExecutionInfo.with_verdict`, `ExecutionInfo.decided`) against `dataclasses.replace`,
`get_open_task` against `get_task`, a task's typed values against their JSON and back, and
the write-set overlay's reads: each over a LevelDB store.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path

import orjson
import pytest

from chain.node.store import LevelDBStore
from chain.protocol import tasks
from chain.protocol.genesis import Params
from chain.protocol.state import (
    State,
    add_busy,
    decode_task,
    encode_task,
    get_open_task,
    get_task,
    put_account,
    put_supply,
    put_task,
    task_key,
    update_task,
)
from chain.protocol.types import (
    OPEN_STATUSES,
    Account,
    BlockContext,
    ExecutionInfo,
    Payout,
    ResultStatus,
    Settlement,
    Slash,
    Task,
    TaskStatus,
    Verdict,
)

SENDER = "0x1111111111111111111111111111111111111111"
NODE = "0x2222222222222222222222222222222222222222"
VERIFIER = "0x3333333333333333333333333333333333333333"
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
        status=TaskStatus.PROCESSING,
        finished_height=1,
        finished_at=2,
        response="stale",
        verification_count=5,
        execution_info=(
            ExecutionInfo(
                rank=1,
                resource_node=NODE,
                result="out",
                proof="0x01",
                seed=2**64 - 1,
                tx_hash="0x" + "04" * 32,
                height=11,
                status=ResultStatus.UNVERIFIED,
                decided_height=12,
                verifications=(Verdict(VERIFIER, False, "0x" + "05" * 32, 11, 1),),
                assignment_seed=b"\x08" * 32,
                rounds=((VERIFIER,), (SENDER, NODE)),
                assignment_complete=True,
                forced_error=False,
            ),
        ),
        settlement=Settlement(
            height=1,
            fee=2,
            network_reward=3,
            slashed=(Slash(NODE, 4, "result"),),
            payouts=(Payout(VERIFIER, 5, "verify", 1),),
            refund=6,
            burned=7,
        ),
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
    add_busy(state, NODE, 1)  # its result and its verdict are undecided work
    add_busy(state, VERIFIER, 1)
    settled = tasks.settle(state, PARAMS, CTX, task)
    for name in kept:
        assert getattr(settled, name) == getattr(task, name), name
    assert settled == replace(
        task,
        status=TaskStatus.FAILED,
        response=None,
        verification_count=0,
        finished_height=CTX.height,
        finished_at=CTX.time,
        settlement=settled.settlement,
    )
    assert settled.settlement == Settlement(
        height=CTX.height,
        fee=task.fee,
        network_reward=0,
        slashed=(),
        payouts=(),
        refund=task.fee,
        burned=0,
    )


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, TaskStatus.SUBMITTED),
        (TaskStatus.SUBMITTED, TaskStatus.SUBMITTED),
        (TaskStatus.SUBMITTED, TaskStatus.PROCESSING),
        (TaskStatus.PROCESSING, TaskStatus.COMPLETED),
        (TaskStatus.COMPLETED, TaskStatus.VERIFIED),
        (TaskStatus.SUBMITTED, TaskStatus.FAILED),
    ],
)
def test_update_task_writes_what_put_task_writes(
    store: LevelDBStore, before: TaskStatus | None, after: TaskStatus
) -> None:
    base = State(store)
    put_task(base, a_task(status=TaskStatus.SUBMITTED))  # another task: the counts are not zero
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
    for status in TaskStatus:
        task = a_task(status=status)
        put_task(state, task)
        expected = get_task(state, task.task_hash) if status in OPEN_STATUSES else None
        assert get_open_task(state, task.task_hash) == expected


def test_the_built_values_are_what_replace_gives() -> None:
    task = a_task()
    (entry,) = task.execution_info
    entries = (entry, replace(entry, rank=2))
    assert task.with_results(entries, TaskStatus.COMPLETED) == replace(
        task, execution_info=entries, status=TaskStatus.COMPLETED
    )
    verdict = Verdict(SENDER, True, "0x" + "06" * 32, 13, 2)
    assert entry.with_verdict(verdict) == replace(
        entry,
        status=ResultStatus.VERIFYING,
        verifications=(*entry.verifications, verdict),
    )
    assert entry.decided(ResultStatus.REJECTED, 14) == replace(
        entry, status=ResultStatus.REJECTED, decided_height=14
    )


def test_a_task_encodes_to_its_json_and_back() -> None:
    task = a_task()
    raw = encode_task(task)
    assert decode_task(raw) == task
    obj = orjson.loads(raw)
    assert obj["status"] == "processing"
    assert obj["executionInfo"] == [
        {
            "assignment": {
                "complete": True,
                "rounds": [[VERIFIER], [SENDER, NODE]],
                "seed": "0x" + "08" * 32,
            },
            "decidedHeight": 12,
            "forcedError": False,
            "height": 11,
            "proof": "0x01",
            "rank": 1,
            "resourceNode": NODE,
            "result": "out",
            "seed": str(2**64 - 1),
            "status": 4,
            "txHash": "0x" + "04" * 32,
            "verifications": [
                {
                    "height": 11,
                    "seq": 1,
                    "txHash": "0x" + "05" * 32,
                    "valid": False,
                    "verifier": VERIFIER,
                }
            ],
        }
    ]
    assert obj["settlement"] == {
        "burned": "7",
        "fee": "2",
        "height": 1,
        "networkReward": "3",
        "payouts": [{"address": VERIFIER, "amount": "5", "rank": 1, "role": "verify"}],
        "refund": "6",
        "slashed": [{"address": NODE, "amount": "4", "reason": "result"}],
    }
    assert decode_task(encode_task(a_task(execution_info=(), settlement=None))) == a_task(
        execution_info=(), settlement=None
    )


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
