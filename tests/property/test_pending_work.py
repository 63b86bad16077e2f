"""queryPendingTasks' fast path against the straightforward computation (PROTOCOL 5.1).

`rpc.methods.work_items` keeps its answers under the node's read version and each task's
rendering while the task stays the same, and `Node.pending_work` decodes a task again only
when its bytes change. Over random ledgers (tasks, results, verdicts, blocks, each admitted
to the mempool of a real validator on a fresh LevelDB directory, refused ones skipped), after
every step the answer for every node and limit must be exactly, byte for byte, what
`tasks.pending_work` over the mempool's state, rendered with `render_task`, gives.
"""

from __future__ import annotations

import asyncio
import functools
import json
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from chain.node.node import Node, dev_validator_key
from chain.protocol import crypto, tasks
from chain.protocol.errors import ChainError
from chain.protocol.genesis import DEV_MNEMONIC
from chain.protocol.state import get_task
from chain.protocol.types import (
    Message,
    SubmitInferenceResult,
    SubmitTask,
    SubmitVerification,
)
from rpc.methods import Encoded, json_bytes, kept_work, render_task, work_items
from tests.helpers import make_genesis

SENDERS = (0, 1)  # dev accounts
NODE_INDEXES = (200, 201, 202)  # the dev genesis' resource nodes
LIMITS = (1, 2, 100)


@functools.cache
def key_of(index: int) -> bytes:
    return crypto.dev_private_key(DEV_MNEMONIC, index)


@functools.cache
def address_of(index: int) -> str:
    return crypto.address_of_private_key(key_of(index))


def reference_items(node: Node, address: str, limit: int) -> list[dict[str, Any]]:
    """PROTOCOL 5.1 computed plainly: every open task read and rendered afresh."""
    work = tasks.pending_work(
        node.mempool.pending_state,
        node.params,
        address,
        node.next_context().height,
        sorted(node.ledger.open_task_hashes()),
    )
    out = []
    for item in work[:limit]:
        rendered = render_task(item.task)
        rendered["seed"] = str(crypto.task_seed(item.task.task_hash, address))
        rendered["compute"] = item.compute
        rendered["verify"] = [
            {"submitter": e.resource_node, "result": e.result, "seed": str(e.seed), "rank": e.rank}
            for e in item.verify
        ]
        rendered["reveal"] = item.reveal
        out.append(rendered)
    return out


def answer(compute: Any, node: Node, address: str, limit: int) -> tuple[str, bytes]:
    """The JSON of an answer, or the class of the error it raised."""
    try:
        return ("ok", orjson.dumps(compute(node, address, limit)))
    except ChainError as exc:
        return (type(exc).__name__, b"")


def check_every_answer(node: Node) -> None:
    for index in NODE_INDEXES:
        address = address_of(index)
        for limit in LIMITS:
            expected = answer(reference_items, node, address, limit)
            first = answer(work_items, node, address, limit)
            again = answer(work_items, node, address, limit)  # kept
            text = answer(lambda *a: orjson.Fragment(kept_work(*a).text), node, address, limit)
            assert first == expected, (address, limit)
            assert again == expected, (address, limit)
            assert text == expected, (address, limit)  # the JSON the server writes


OPS = hs.one_of(
    hs.tuples(hs.just("task"), hs.sampled_from(SENDERS), hs.integers(1, 3)),
    hs.tuples(hs.just("result"), hs.sampled_from(NODE_INDEXES), hs.integers(0, 7)),
    hs.tuples(
        hs.just("verdict"),
        hs.sampled_from(NODE_INDEXES),
        hs.integers(0, 7),
        hs.integers(0, 2),
        hs.booleans(),
    ),
    hs.tuples(hs.just("block")),
)


class Driver:
    """One validator without a producer: the test admits transactions and makes blocks."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.nonces = dict.fromkeys(SENDERS, 0)
        self.task_hashes: list[bytes] = []
        self.results = 0

    def submit(self, msg: Message) -> bytes | None:
        signer = getattr(msg, msg.SIGNER)
        index = next(i for i in (*SENDERS, *NODE_INDEXES) if address_of(i) == signer)
        tx = crypto.sign_message(msg, self.node.genesis.chain_id, key_of(index))
        try:
            self.node.submit(tx)
        except ChainError:
            return None
        return tx.digest

    def step(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "task":
            _, sender, target_count = op
            msg = SubmitTask(
                address_of(sender), self.nonces[sender], "text", target_count, "say hi", ""
            )
            digest = self.submit(msg)
            if digest is not None:
                self.nonces[sender] += 1
                self.task_hashes.append(digest)
        elif kind == "result" and self.task_hashes:
            _, index, k = op
            self.results += 1
            task_hash = self.task_hashes[k % len(self.task_hashes)]
            self.submit(SubmitInferenceResult(task_hash, address_of(index), f"r{self.results}"))
        elif kind == "verdict" and self.task_hashes:
            _, verifier, k, j, valid = op
            task_hash = self.task_hashes[k % len(self.task_hashes)]
            task = get_task(self.node.mempool.pending_state, task_hash)
            if task is None or not task.execution_info:  # judge a result there is
                return
            submitter = task.execution_info[j % len(task.execution_info)].resource_node
            self.submit(SubmitVerification(task_hash, address_of(verifier), submitter, valid))
        elif kind == "block":
            self.node.produce_block()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=hs.lists(OPS, min_size=1, max_size=30),
    canary=hs.sampled_from((0, 5000)),
)
def test_the_kept_answer_is_the_computed_one(ops: list[tuple[Any, ...]], canary: int) -> None:
    genesis = make_genesis(
        compute_deadline_blocks=3, verify_deadline_blocks=3, canary_rate_bps=canary
    )
    with tempfile.TemporaryDirectory(prefix="pending-work-") as tmp:
        node = Node(genesis, Path(tmp) / "ledger", dev_validator_key(genesis, None))
        asyncio.run(node.setup())
        try:
            driver = Driver(node)
            check_every_answer(node)
            for op in ops:
                driver.step(op)
                check_every_answer(node)
        finally:
            asyncio.run(node.cleanup())


@settings(max_examples=100, deadline=None)
@given(
    hs.recursive(
        hs.none() | hs.booleans() | hs.integers(-(2**70), 2**70) | hs.text(max_size=8),
        lambda inner: (
            hs.lists(inner, max_size=4) | hs.dictionaries(hs.text(max_size=4), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_an_encoded_result_is_written_as_its_value_would_be(value: Any) -> None:
    """A kept answer's text stands for its value inside any response, the standard
    library's fallback (for integers beyond 64 bits elsewhere in it) included."""
    text = json_bytes(value)
    assert json_bytes({"result": Encoded(value, b"[2]")}) == b'{"result":[2]}'  # as it is
    assert json_bytes({"result": Encoded.of(value)}) == b'{"result":' + text + b"}"
    body = {"jsonrpc": "2.0", "result": Encoded.of(value), "id": 1, "other": 2**65}
    assert orjson.loads(json_bytes(body)) == {**body, "result": orjson.loads(json_bytes(value))}
    assert json.loads(json_bytes(body)) == {**body, "result": value}
