"""Arbitrary task listings (hypothesis) handed to a resource node, as a byzantine validator
could answer queryPendingTasks: task objects and verify entries of wrong types, with huge or
deeply nested strings, members missing, hashes that are not hex, and the task the chain really
holds among them, and copies of it under other hashes with one member changed.

The node is the real `ResourceNode` with the deterministic backend, its work sent through the
client library to a real validator in this process (tests/helpers.py `local_chain`, blocks
made by the test). Each example gives one listing to a fresh node twice (`act_on`, what a poll
does with the validator's answer), and checks:

- no exception escapes, and neither safety net of the worker was needed (no "failed
  unexpectedly", no "not handled": every bad value was handled by the reader);
- the good task is served: the node's result and its verdict on the other node's result are
  given (accepted, or a duplicate of the previous example's);
- a task it cannot read is skipped with one log line, over both passes; a task spoiled on
  purpose (one field beyond reading) is always one of them;
- the second pass starts no work at all: answered work is remembered, refused work waits for
  its cooldown, so nothing loops hot.

The hypothesis tests are synchronous; the chain and the nodes run on an event loop in a thread
(`LoopThread` of the validator's fuzz test). `INFERCHAIN_LONG=1` runs the `long` variant with
LONG_FACTOR times the examples.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from resource_node.backends.deterministic import DeterministicBackend
from resource_node.untrusted import MAX_FIELD_LENGTH
from resource_node.worker import CycleReport, ResourceNode, WorkerConfig
from rpc.client import InferchainClient, Wallet
from tests.helpers import LocalChain, local_chain, make_genesis
from tests.rpc.test_fuzz import LoopThread
from tests.rpc.test_resource_node_worker import honest_output
from tests.strategies import ADDRESSES, BYTES_FIELDS

LONG = os.environ.get("INFERCHAIN_LONG") == "1"
LONG_FACTOR = 20
EXAMPLES = 60
WAIT = 30.0

SENDER = Wallet.dev(0)
NODE = Wallet.dev(200)
OTHER = Wallet.dev(201)
THIRD = Wallet.dev(202)

# Values no node reads: each makes the task it is in unreadable.
DEEP = "[" * 100_000
SPOILERS: tuple[tuple[str, Any], ...] = (
    ("modelOptions", DEEP),
    ("modelOptions", "0x" + "5b" * 50_000),
    ("modelOptions", '{"max_tokens": 0}'),
    ("modelOptions", {"model": "demo"}),
    ("prompts", DEEP),
    ("prompts", '{"prompt":' * 5_000),
    ("prompts", 7),
    ("prompts", None),
    ("prompts", "x" * (MAX_FIELD_LENGTH + 1)),
    ("schema", ["json"]),
    ("schema", "{" * 300),
)

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**64, max_value=2**300),
    st.floats(),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
HASHES = st.one_of(
    st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex()),
    st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex().upper()),
    st.binary(min_size=31, max_size=33).map(lambda b: "0x" + b.hex() + "g"),
    BYTES_FIELDS,
    JSON_VALUES,
)
FIELD_VALUES = st.one_of(
    BYTES_FIELDS,
    JSON_VALUES,
    JSON_VALUES.map(json.dumps),
    st.sampled_from([value for _field, value in SPOILERS]),
    st.sampled_from(['{"model":"demo","max_tokens":4}', '{"type":"object"}', "json", "text"]),
)
ENTRIES = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "submitter": st.one_of(
                st.sampled_from([NODE.address, OTHER.address, THIRD.address]),
                ADDRESSES,
                JSON_VALUES,
            ),
            "result": FIELD_VALUES,
            "seed": st.one_of(JSON_VALUES, st.integers(min_value=0).map(str)),
            "rank": JSON_VALUES,
        },
    ),
    JSON_VALUES,
)
ENTRIES_LISTS = st.one_of(st.lists(ENTRIES, max_size=3), JSON_VALUES)
HEIGHTS = st.one_of(st.integers(-2, 4), JSON_VALUES)  # the chain is at height 2
TASKS = st.fixed_dictionaries(
    {},
    optional={
        "taskHash": HASHES,
        "prompts": FIELD_VALUES,
        "modelOptions": FIELD_VALUES,
        "schema": FIELD_VALUES,
        "model": FIELD_VALUES,
        "seed": st.one_of(JSON_VALUES, st.integers(min_value=0).map(str)),
        "compute": st.one_of(st.booleans(), JSON_VALUES),
        "verify": ENTRIES_LISTS,
        "createdHeight": HEIGHTS,
        "reveal": st.one_of(st.booleans(), JSON_VALUES),
    },
)
ITEMS = st.one_of(TASKS, JSON_VALUES)


class Records(logging.Handler):
    """The warnings the resource node logs, kept for the checks."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@dataclass
class Target:
    """The chain, its good task as queryPendingTasks lists it for NODE, and the log."""

    loop: LoopThread
    chain: LocalChain
    good: dict[str, Any]
    records: Records


async def _open_chain(root: Path, stack: contextlib.AsyncExitStack) -> tuple[LocalChain, Any]:
    genesis = make_genesis(compute_deadline_blocks=10_000, verify_deadline_blocks=10_000)
    chain = await stack.enter_async_context(local_chain(root / "ledger", genesis, run=False))
    receipt = await chain.client.submit_task(
        SENDER, prompts='{"prompt":"fuzz"}', model_options='{"model":"demo"}', target_count=3
    )
    chain.node.produce_block()
    task = await chain.client.query_task(receipt.task_hash)
    result = honest_output(task, OTHER.address)
    assert await chain.client.submit_inference_result(OTHER, receipt.task_hash, result) is True
    chain.node.produce_block()
    [good] = await chain.client.query_pending_tasks(NODE)
    assert good["compute"] is True and [e["submitter"] for e in good["verify"]] == [OTHER.address]
    return chain, good


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    loop = LoopThread()
    stack = contextlib.AsyncExitStack()
    records = Records()
    logger = logging.getLogger("resource_node")
    logger.addHandler(records)
    try:
        chain, good = loop.run(_open_chain(tmp_path_factory.mktemp("node-fuzz"), stack))
        yield Target(loop, chain, good, records)
    finally:
        logger.removeHandler(records)
        loop.run(stack.aclose())
        loop.close()


@contextlib.asynccontextmanager
async def fresh_node(url: str) -> AsyncIterator[ResourceNode]:
    node = ResourceNode(
        InferchainClient(url, timeout=WAIT),
        NODE,
        DeterministicBackend(),
        config=WorkerConfig(retry_initial=3600.0),
        rng=random.Random(7),
    )
    await node.setup()
    try:
        yield node
    finally:
        await node.cleanup()


@dataclass(frozen=True, slots=True)
class Outcome:
    first: CycleReport
    second: CycleReport
    result: str | None
    verdict: str | None
    unreadable: int
    reveals: int


async def _act_twice(url: str, listing: list[Any], good_hash: str) -> Outcome:
    async with fresh_node(url) as node:
        first = await node.act_on(listing)
        second = await node.act_on(listing)
        verdict = node.submissions.verdict(good_hash, OTHER.address)
        return Outcome(
            first,
            second,
            node.submissions.result_outcome(good_hash),
            None if verdict is None else verdict.outcome,
            node.stats().unreadable,
            node.stats().reveals,
        )


def check_listing(target: Target, data: st.DataObject) -> None:
    junk = data.draw(st.lists(ITEMS, max_size=5), label="junk")
    spoiled = data.draw(st.lists(st.sampled_from(SPOILERS), max_size=2), label="spoilers")
    spoiled_hashes = []
    for n, (field, value) in enumerate(spoiled):
        task_hash = "0x" + "5e" * 31 + f"{n:02x}"  # a hash no other item has
        spoiled_hashes.append(task_hash)
        junk.append({**target.good, "taskHash": task_hash, field: value})
    for n in range(data.draw(st.integers(0, 2), label="mutated")):
        # the good task under another hash, one member changed: often still readable
        member = data.draw(st.sampled_from(sorted(target.good)), label="member")
        strategy = {"verify": ENTRIES_LISTS, "reveal": st.booleans(), "createdHeight": HEIGHTS}
        value = data.draw(strategy.get(member, FIELD_VALUES), label="value")
        task_hash = "0x" + "6d" * 31 + f"{n:02x}"
        junk.append({**target.good, "taskHash": task_hash, member: value})
    listing = list(junk)
    listing.insert(data.draw(st.integers(0, len(junk)), label="good at"), target.good)

    target.records.messages.clear()
    good_hash = target.good["taskHash"]
    outcome = target.loop.run(_act_twice(target.chain.url, listing, good_hash), WAIT * 4)
    messages = list(target.records.messages)

    assert not [m for m in messages if "unexpectedly" in m or "not handled" in m], messages
    assert outcome.result in ("accepted", "duplicate"), messages
    assert outcome.verdict in ("accepted", "duplicate"), messages
    skip_lines = [m for m in messages if "skipped: cannot read it" in m]
    assert outcome.unreadable == len(skip_lines)
    for task_hash in spoiled_hashes:
        assert len([m for m in skip_lines if m.startswith(f"task {task_hash} ")]) == 1, messages
    named = [m.split()[1] for m in skip_lines if m.split()[1].startswith("0x")]
    assert len(named) == len(set(named)), skip_lines  # one line per task
    assert outcome.second.results == outcome.second.verdicts == 0  # nothing runs again
    # listed reveals never reveal a height at or above the node's own undecided result (1)
    assert outcome.reveals == 0, messages
    assert outcome.second.skipped == outcome.first.skipped
    assert all(len(m) < 2_000 for m in messages)  # descriptions, never the values
    event(f"tasks skipped: {min(len(skip_lines), 3)}")
    event(f"junk work started: {min(outcome.first.results + outcome.first.verdicts - 2, 3)}")


FUZZ_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@settings(FUZZ_SETTINGS, max_examples=EXAMPLES)
@given(data=st.data())
def test_arbitrary_listings(target: Target, data: st.DataObject) -> None:
    check_listing(target, data)


@pytest.mark.long
@pytest.mark.skipif(not LONG, reason="the long fuzz run: INFERCHAIN_LONG=1")
@settings(FUZZ_SETTINGS, max_examples=EXAMPLES * LONG_FACTOR)
@given(data=st.data())
def test_arbitrary_listings_long(target: Target, data: st.DataObject) -> None:
    check_listing(target, data)


async def _act_on_answer(url: str, answer: Any) -> tuple[CycleReport, float]:
    async with fresh_node(url) as node:
        report = await node.act_on(answer)
        return report, node.next_delay() - node.config.poll_interval


@settings(FUZZ_SETTINGS, max_examples=EXAMPLES)
@given(answer=JSON_VALUES.filter(lambda value: not isinstance(value, list)))
def test_an_answer_that_is_not_a_list(target: Target, answer: Any) -> None:
    """Not a listing at all: a poll error, and the node backs off before it asks again."""
    report, extra_delay = target.loop.run(_act_on_answer(target.chain.url, answer), WAIT)
    assert report.error is not None and "not a list" in report.error
    assert (report.tasks, report.results, report.verdicts) == (0, 0, 0)
    assert extra_delay > 0
