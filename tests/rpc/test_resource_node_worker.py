"""The resource node worker against a real validator in this process (tests/helpers.py).

Every test drives `ResourceNode` through the real client library and a real validator behind
a real HTTP server on loopback. Blocks are produced by the tests (`run=False`, `mine`), so each
answer of the validator comes from a situation the test built on the chain:

- `true`: the result or verdict is admitted to the mempool;
- `false`: the slots filled, the result was decided or the compute deadline passed between
  the node's poll and its submission;
- -32006: the same key answered in between (a second node with the same key);
- -32007: the mempool is full (`mempool_capacity`);
- -32005: the node unstaked below minNodeStake in between;
- no answer: nothing listens on the port (a second RPC listener of the same validator that
  the test starts and stops).

"In between" is a race held open on purpose: `HeldBackend` parks every inference until the
test releases it. It and `RecordingBackend` are backend plug-ins of the test; nothing of the
validator, the RPC server or the client library is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from chain.node.journal import JOURNAL_FILE
from chain.node.node import Node
from chain.protocol import crypto
from chain.protocol.genesis import Params, dev_genesis, parse_genesis
from resource_node import turns, worker
from resource_node.backends import BackendError, InferenceRequest, request_from_task
from resource_node.backends.deterministic import DeterministicBackend
from resource_node.backends.faults import WRONG_MARKER, Faults
from resource_node.secrets import SecretChain
from resource_node.server import NodeServer
from resource_node.state import SubmissionLog, state_path
from resource_node.untrusted import MAX_FIELD_LENGTH
from resource_node.worker import (
    CRASH_EXIT_CODE,
    ROLLOVER_MARGIN,
    ResourceNode,
    WorkerConfig,
    forced_output,
)
from rpc.client import InferchainClient, Wallet
from rpc.server import RpcServer
from tests.helpers import LocalChain, local_chain, make_genesis, wait_until

E18 = 10**18
DEV0 = Wallet.dev(0)  # task sender
DEV1 = Wallet.dev(1)
NODE = Wallet.dev(200)  # resource node 0 of the dev genesis: the node under test
OTHER = Wallet.dev(201)
THIRD = Wallet.dev(202)
NODE_STAKE = 2_000 * E18
MIN_NODE_STAKE = 1_000 * E18
PROMPTS = '{"prompt":"Hello"}'
MODEL_OPTIONS = '{"model":"demo","max_tokens":12}'
WAIT = 10.0  # upper bound for waits on events, so a bug fails instead of hanging

VERIFIED, REJECTED = 2, 3  # executionInfo[].status


# The chain


@pytest.fixture
async def manual(tmp_path: Path) -> AsyncIterator[LocalChain]:
    """A dev chain whose blocks the test produces (`mine`)."""
    async with local_chain(tmp_path / "ledger", run=False) as running:
        yield running


def mine(chain: LocalChain, blocks: int = 1) -> int:
    for _ in range(blocks):
        chain.node.produce_block()
    return chain.node.head.height


async def open_task(
    chain: LocalChain,
    *,
    prompts: str = PROMPTS,
    schema: str = "text",
    model_options: str = MODEL_OPTIONS,
    target_count: int = 2,
    mined: bool = True,
) -> dict[str, Any]:
    """Submit a task from DEV0 and commit it; its queryTask object."""
    receipt = await chain.client.submit_task(
        DEV0,
        prompts=prompts,
        schema=schema,
        model_options=model_options,
        target_count=target_count,
    )
    if mined:
        mine(chain)
    return await chain.client.query_task(receipt.task_hash)


async def open_tasks(
    chain: LocalChain, count: int, *, target_count: int = 2
) -> list[dict[str, Any]]:
    """`count` tasks of prompts `prompt 0`, `prompt 1`, ..., committed in one block."""
    tasks = [
        await open_task(chain, prompts=f"prompt {n}", target_count=target_count, mined=False)
        for n in range(count)
    ]
    mine(chain)
    return tasks


def honest_output(task: dict[str, Any], address: str) -> str:
    """What the deterministic model answers for `address` (its PROTOCOL 4.4 seed)."""
    seed = crypto.task_seed(bytes.fromhex(task["taskHash"][2:]), address)
    return DeterministicBackend().compute(request_from_task(task, seed))[0]


async def submit_result(
    chain: LocalChain, wallet: Wallet, task: dict[str, Any], result: str
) -> None:
    """Another node's result, sent through the client library: admitted (true)."""
    assert await chain.client.submit_inference_result(wallet, task["taskHash"], result) is True


async def mempool_size(chain: LocalChain) -> int:
    return int((await chain.client.health())["mempool"])


async def entries(chain: LocalChain, task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The task's committed results by resource node."""
    current = await chain.client.query_task(task["taskHash"])
    return {entry["resourceNode"]: entry for entry in current["executionInfo"]}


async def verdicts_by(chain: LocalChain, task: dict[str, Any], verifier: str) -> dict[str, bool]:
    """submitter -> valid, for the committed verdicts of `verifier` on the task."""
    current = await chain.client.query_task(task["taskHash"])
    return {
        v["submitter"]: v["valid"]
        for v in current["verificationInfos"]
        if v["verifier"] == verifier
    }


def free_port() -> int:
    """A loopback port where nothing listens (until a test starts something there)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def listening(node: Node, port: int) -> AsyncIterator[str]:
    """One more real RPC listener of `node` on `port`: the validator is reachable there only
    inside this block."""
    runner = web.AppRunner(RpcServer(node).app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# Resource nodes


@dataclass
class RecordingBackend:
    """The deterministic model, recording its requests; or failing when `error` is set."""

    error: Exception | None = None
    requests: list[InferenceRequest] = field(default_factory=list)
    name: str = "recording"

    async def infer(self, request: InferenceRequest) -> str:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return await DeterministicBackend().infer(request)


@dataclass
class HeldBackend:
    """The deterministic model, parking every inference until `release` is set, so a test can
    change the chain between a node's poll and its submission. It counts who is inside."""

    name: str = "held"
    inside: int = 0
    entered: int = 0
    most: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def infer(self, request: InferenceRequest) -> str:
        async with self.changed:
            self.inside += 1
            self.entered += 1
            self.most = max(self.most, self.inside)
            self.changed.notify_all()
        await self.release.wait()
        async with self.changed:
            self.inside -= 1
            self.changed.notify_all()
        return await DeterministicBackend().infer(request)

    async def wait_inside(self, count: int) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: self.inside >= count), WAIT)


def _no_exit(code: int) -> None:
    raise AssertionError(f"the node tried to exit with {code}")


def make_node(
    url: str,
    *,
    wallet: Wallet = NODE,
    backend: Any = None,
    faults: Faults | None = None,
    exit_process: Callable[[int], Any] = _no_exit,
    **config: Any,
) -> ResourceNode:
    return ResourceNode(
        InferchainClient(url, timeout=WAIT),
        wallet,
        backend or DeterministicBackend(),
        faults=faults,
        config=WorkerConfig(**config),
        rng=random.Random(7),
        exit_process=exit_process,
    )


@pytest.fixture
async def cleanups() -> AsyncIterator[list[ResourceNode]]:
    nodes: list[ResourceNode] = []
    yield nodes
    for node in nodes:
        await node.cleanup()


async def started(node: ResourceNode, cleanups: list[ResourceNode]) -> ResourceNode:
    await node.setup()
    cleanups.append(node)
    return node


def saved_state(state_dir: Path, wallet: Wallet = NODE) -> dict[str, Any]:
    """The submission log as a restarted node reads it: its file and its journal."""
    saved = SubmissionLog.load(wallet.address, state_path(state_dir, wallet.address))
    saved.close()
    return saved.to_json()


# Computing and submitting


async def test_computes_and_submits_a_signed_result(
    manual: LocalChain, cleanups: list[ResourceNode], tmp_path: Path
) -> None:
    task = await open_task(manual)
    node = await started(make_node(manual.url, state_dir=tmp_path / "state"), cleanups)
    report = await node.run_once()
    assert (report.tasks, report.results, report.verdicts, report.error) == (1, 1, 0, None)
    stats = node.stats()
    assert (stats.done, stats.results_accepted, stats.failed, stats.in_flight) == (1, 1, 0, 0)
    assert node.submissions.result_outcome(task["taskHash"]) == "accepted"
    assert saved_state(tmp_path / "state")["tasks"][task["taskHash"]]["result"] == "accepted"

    mine(manual)
    [entry] = (await entries(manual, task)).values()
    assert entry["resourceNode"] == NODE.address  # the validator recovered the signer
    assert entry["result"] == honest_output(task, NODE.address)
    assert entry["result"] != honest_output(task, OTHER.address)

    again = await node.run_once()  # answered: the node has nothing more to do here
    assert (again.tasks, again.results, again.verdicts) == (0, 0, 0)
    assert len(await entries(manual, task)) == 1 and await mempool_size(manual) == 0


async def test_computes_with_the_seed_the_validator_reports(
    manual: LocalChain, cleanups: list[ResourceNode], caplog: pytest.LogCaptureFixture
) -> None:
    task = await open_task(manual)
    [offered] = await manual.client.query_pending_tasks(NODE)
    node = await started(make_node(manual.url), cleanups)
    with caplog.at_level(logging.WARNING, logger="resource_node"):
        await node.run_once()
    mine(manual)
    entry = (await entries(manual, task))[NODE.address]
    assert entry["seed"] == offered["seed"]
    request = request_from_task(offered, int(offered["seed"]))
    assert entry["result"] == DeterministicBackend().compute(request)[0]
    assert not [r for r in caplog.records if "seed" in r.getMessage()]


async def test_a_node_leaves_a_task_to_the_node_before_it_in_its_order_for_a_standby(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    """Turns (PROTOCOL 4.3): once NODE has seen OTHER compute the model, it computes a task of
    one slot at once only where it comes first in the task's order; the others it leaves to
    OTHER for a standby period, and then computes them too while they are still listed."""
    seen = await open_task(manual, prompts="seen", target_count=1)
    await submit_result(manual, OTHER, seen, honest_output(seen, OTHER.address))
    mine(manual)  # assigns OTHER's result to NODE and THIRD: NODE's listing shows OTHER
    node = await started(make_node(manual.url, standby_blocks=1), cleanups)
    assert (await node.run_once()).verdicts == 1

    pair = [NODE.address.lower(), OTHER.address.lower()]
    mine_first = other_first = None
    for n in range(64):
        task = await open_task(manual, prompts=f"turn {n}", target_count=1, mined=False)
        if turns.order(task["taskHash"].lower(), pair)[0] == pair[0]:
            mine_first = mine_first or task
        else:
            other_first = other_first or task
        if mine_first and other_first:
            break
    assert mine_first is not None and other_first is not None
    mine(manual)
    report = await node.run_once()
    assert (report.results, node.stats().standby) == (1, 1)
    assert node.submissions.result_outcome(mine_first["taskHash"]) == "accepted"
    assert node.submissions.result_outcome(other_first["taskHash"]) is None

    async def taken_over() -> bool:  # OTHER never comes: NODE computes it once it waited
        await node.run_once()
        return node.submissions.result_outcome(other_first["taskHash"]) == "accepted"

    await wait_until(taken_over, "NODE computes the task OTHER was first for")


async def test_a_node_with_no_standby_computes_every_task_at_once(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    seen = await open_task(manual, prompts="seen", target_count=1)
    await submit_result(manual, OTHER, seen, honest_output(seen, OTHER.address))
    mine(manual)
    node = await started(make_node(manual.url, standby_blocks=0), cleanups)
    await node.run_once()
    tasks = await open_tasks(manual, 6, target_count=1)
    report = await node.run_once()
    assert (report.results, node.stats().standby) == (6, 0)
    assert all(node.submissions.result_outcome(t["taskHash"]) == "accepted" for t in tasks)


async def test_a_wrong_reported_seed_is_logged_and_ignored(
    manual: LocalChain, cleanups: list[ResourceNode], caplog: pytest.LogCaptureFixture
) -> None:
    # A real validator always reports the right seed, so this check is exercised directly.
    task = await open_task(manual)
    node = await started(make_node(manual.url), cleanups)
    expected = crypto.task_seed(bytes.fromhex(task["taskHash"][2:]), NODE.address)
    with caplog.at_level(logging.WARNING, logger="resource_node"):
        seed = node._seed(task["taskHash"], NODE.address, "12345")
    assert seed == expected
    assert any("seed 12345" in r.getMessage() for r in caplog.records)


async def test_duplicate_answers_count_done_and_add_nothing(
    manual: LocalChain, cleanups: list[ResourceNode], tmp_path: Path
) -> None:
    task = await open_task(manual)
    await submit_result(manual, OTHER, task, honest_output(task, OTHER.address))
    mine(manual)  # the including block assigns OTHER's result to NODE and THIRD (PROTOCOL 4.5)
    held = HeldBackend()
    first = await started(
        make_node(manual.url, backend=held, state_dir=tmp_path / "first"), cleanups
    )
    run = asyncio.create_task(first.run_once())
    await held.wait_inside(2)  # polled: a result and a verdict to give
    # The same key with a fresh state directory (a wiped log) answers in the meantime.
    twin = await started(make_node(manual.url, state_dir=tmp_path / "twin"), cleanups)
    report = await twin.run_once()
    assert (report.results, report.verdicts) == (1, 1)
    assert (twin.stats().results_accepted, twin.stats().verdicts_accepted) == (1, 1)
    assert await mempool_size(manual) == 2

    held.release.set()
    await asyncio.wait_for(run, WAIT)
    stats = first.stats()
    assert (stats.done, stats.verified, stats.failed) == (1, 1, 0)
    assert (stats.results_duplicate, stats.verdicts_duplicate) == (1, 1)
    assert await mempool_size(manual) == 2  # nothing new
    saved = saved_state(tmp_path / "first")["tasks"][task["taskHash"]]
    assert saved["result"] == "duplicate"
    assert saved["verdicts"][OTHER.address.lower()]["outcome"] == "duplicate"

    mine(manual)
    assert set(await entries(manual, task)) == {OTHER.address, NODE.address}
    assert await verdicts_by(manual, task, NODE.address) == {OTHER.address: True}


async def test_closed_when_the_slots_fill_and_the_result_is_decided_first(
    manual: LocalChain, cleanups: list[ResourceNode], tmp_path: Path
) -> None:
    # THIRD holds more than 2/3 of the stake of OTHER's assigned verifiers (NODE and THIRD,
    # the only candidates: round 0 is the last round, decided by stake, PROTOCOL 4.6).
    await manual.client.transfer(DEV0, THIRD.address, 3_000 * E18)
    mine(manual)
    await manual.client.stake(THIRD, 3_000 * E18)
    task = await open_task(manual, target_count=2)
    await submit_result(manual, OTHER, task, honest_output(task, OTHER.address))
    mine(manual)
    held = HeldBackend()
    node = await started(make_node(manual.url, backend=held, state_dir=tmp_path), cleanups)
    run = asyncio.create_task(node.run_once())
    await held.wait_inside(2)
    # Another node takes the last slot and decides OTHER's result by its stake meanwhile.
    await submit_result(manual, THIRD, task, honest_output(task, THIRD.address))
    assert await manual.client.submit_verification(THIRD, task["taskHash"], OTHER.address, True)

    held.release.set()
    await asyncio.wait_for(run, WAIT)
    stats = node.stats()
    assert (stats.done, stats.verified, stats.failed) == (1, 1, 0)
    assert (stats.results_closed, stats.verdicts_closed) == (1, 1)
    saved = saved_state(tmp_path)["tasks"][task["taskHash"]]
    assert saved["result"] == "closed"
    assert saved["verdicts"][OTHER.address.lower()]["outcome"] == "closed"
    assert await mempool_size(manual) == 2  # THIRD's result and verdict

    mine(manual)
    assert set(await entries(manual, task)) == {OTHER.address, THIRD.address}
    assert await verdicts_by(manual, task, NODE.address) == {}


async def test_closed_when_the_compute_deadline_passed(
    tmp_path: Path, cleanups: list[ResourceNode]
) -> None:
    genesis = make_genesis(compute_deadline_blocks=1)
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        task = await open_task(chain)  # created at height 1: results until height 2
        held = HeldBackend()
        node = await started(make_node(chain.url, backend=held), cleanups)
        run = asyncio.create_task(node.run_once())
        await held.wait_inside(1)
        assert mine(chain) == 2  # the deadline: the task fails with no result
        held.release.set()
        await asyncio.wait_for(run, WAIT)
        stats = node.stats()
        assert (stats.done, stats.results_closed, stats.failed) == (1, 1, 0)
        assert await mempool_size(chain) == 0
        current = await chain.client.query_task(task["taskHash"])
        assert current["status"] == "failed" and current["executionInfo"] == []


async def test_a_full_mempool_is_retried_not_failed(
    tmp_path: Path, cleanups: list[ResourceNode]
) -> None:
    async with local_chain(tmp_path / "ledger", run=False, mempool_capacity=2) as chain:
        task = await open_task(chain)
        for amount in (1, 2):
            await chain.client.transfer(DEV0, DEV1.address, amount)
        assert await mempool_size(chain) == 2  # full
        node = await started(make_node(chain.url), cleanups)

        for _ in range(2):  # the validator lists the task, then refuses the result: -32007
            report = await node.run_once()
            assert (report.results, report.error) == (1, None)
            stats = node.stats()
            assert (stats.done, stats.failed) == (0, 0)
            assert node.next_delay() > node.config.poll_interval  # back off before polling
            assert "busy" in (node.last_error or "")
        assert not node.submissions.has_result(task["taskHash"])

        mine(chain)  # drains the mempool
        report = await node.run_once()
        assert (report.results, report.error) == (1, None)
        stats = node.stats()
        assert (stats.done, stats.results_accepted, stats.failed) == (1, 1, 0)
        assert node.next_delay() == node.config.poll_interval
        mine(chain)
        assert (await entries(chain, task))[NODE.address]["result"] == honest_output(
            task, NODE.address
        )


@pytest.mark.parametrize(("retry_initial", "retried"), [(3600.0, False), (0.0, True)])
async def test_a_rejection_counts_failed_and_is_retried_after_its_cooldown(
    manual: LocalChain, cleanups: list[ResourceNode], retry_initial: float, retried: bool
) -> None:
    task = await open_task(manual)
    held = HeldBackend()
    node = await started(make_node(manual.url, backend=held, retry_initial=retry_initial), cleanups)
    run = asyncio.create_task(node.run_once())
    await held.wait_inside(1)
    await manual.client.unstake(NODE, NODE_STAKE - MIN_NODE_STAKE + 1)  # no longer eligible
    held.release.set()
    await asyncio.wait_for(run, WAIT)
    assert (node.stats().failed, node.stats().done) == (1, 0)
    assert "Not eligible" in (node.last_error or "")
    assert not node.submissions.has_result(task["taskHash"])

    await manual.client.stake(NODE, NODE_STAKE)  # eligible again: the task is offered again
    report = await node.run_once()
    assert (report.tasks, report.error) == (1, None)
    assert report.results == int(retried)
    assert (node.stats().done, node.stats().failed) == (int(retried), 1)
    mine(manual)
    assert (NODE.address in await entries(manual, task)) is retried


async def test_a_backend_failure_counts_failed_and_submits_nothing(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    await open_task(manual)
    backend = RecordingBackend(error=BackendError("server down"))
    node = await started(make_node(manual.url, backend=backend), cleanups)
    report = await node.run_once()
    assert report.results == 1 and len(backend.requests) == 1
    assert (node.stats().failed, node.stats().done) == (1, 0)
    assert "server down" in (node.last_error or "")
    assert await mempool_size(manual) == 0


async def test_postprocess_errors_are_reported(
    manual: LocalChain, cleanups: list[ResourceNode], caplog: pytest.LogCaptureFixture
) -> None:
    task = await open_task(manual, schema="json")
    node = await started(make_node(manual.url, faults=Faults(wrong=1.0)), cleanups)
    with caplog.at_level(logging.WARNING, logger="resource_node"):
        await node.run_once()
    assert node.stats().postprocess_errors == 1
    assert node.info()["postprocessErrors"] == 1
    assert any("does not fit its schema" in r.getMessage() for r in caplog.records)
    mine(manual)
    entry = (await entries(manual, task))[NODE.address]
    assert entry["result"].endswith(WRONG_MARKER)  # not JSON any more
    assert entry["postprocessed"]["error"] is not None  # the validator reads it the same way


async def test_honest_json_results_have_no_postprocess_error(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    task = await open_task(manual, schema="json")
    node = await started(make_node(manual.url), cleanups)
    await node.run_once()
    assert node.stats().postprocess_errors == 0
    mine(manual)
    postprocessed = (await entries(manual, task))[NODE.address]["postprocessed"]
    assert postprocessed["error"] is None and postprocessed["value"]["answer"]


async def test_models_filter(manual: LocalChain, cleanups: list[ResourceNode]) -> None:
    served, other, any_model = [
        await open_task(manual, model_options=options, mined=False)
        for options in ('{"model":"llama"}', '{"model":"mistral"}', "")
    ]
    mine(manual)
    node = await started(make_node(manual.url, models=("llama",)), cleanups)
    report = await node.run_once()
    assert (report.tasks, report.results) == (3, 2)  # the validator offers all three
    mine(manual)
    for task, answered in ((served, True), (other, False), (any_model, True)):
        assert (NODE.address in await entries(manual, task)) is answered


async def test_concurrency_is_bounded(manual: LocalChain, cleanups: list[ResourceNode]) -> None:
    tasks = await open_tasks(manual, 5, target_count=1)
    held = HeldBackend()
    node = await started(make_node(manual.url, backend=held, concurrency=2), cleanups)
    run = asyncio.create_task(node.run_once())
    await held.wait_inside(2)
    # Every job was started before this coroutine woke up: the semaphore holds three back.
    assert held.entered == 2
    assert node.stats().in_flight == 5
    held.release.set()
    await asyncio.wait_for(run, WAIT)
    assert (held.most, held.entered, node.stats().results_accepted) == (2, 5, 5)
    assert node.stats().in_flight == 0
    mine(manual)
    for task in tasks:
        assert NODE.address in await entries(manual, task)


@dataclass
class OrderBackend:
    """The deterministic model, noting how many results its node had submitted when each
    inference began."""

    name: str = "order"
    node: ResourceNode | None = None
    accepted_at_start: list[int] = field(default_factory=list)

    async def infer(self, request: InferenceRequest) -> str:
        assert self.node is not None
        self.accepted_at_start.append(self.node.stats().results_accepted)
        return await DeterministicBackend().infer(request)


async def test_the_bound_is_on_inferences_not_on_submissions(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    """With one inference at a time, the next task's inference begins as soon as the one
    before has its output, while that output is still on its way to the validator."""
    tasks = await open_tasks(manual, 3, target_count=1)
    backend = OrderBackend()
    node = await started(make_node(manual.url, backend=backend, concurrency=1), cleanups)
    backend.node = node
    await asyncio.wait_for(node.run_once(), WAIT)
    assert node.stats().results_accepted == 3
    assert backend.accepted_at_start[:2] == [0, 0], backend.accepted_at_start
    mine(manual)
    for task in tasks:
        assert NODE.address in await entries(manual, task)


# Verifying


async def test_verifies_with_the_submitters_seed(
    tmp_path: Path, cleanups: list[ResourceNode]
) -> None:
    # Rounds of three: every other node is assigned to each result. No forced errors, so the
    # fourth node, registered by transaction, computes without secrets.
    genesis = make_genesis(verification_quorum=3, canary_rate_bps=0)
    async with local_chain(tmp_path / "ledger", genesis, run=False) as manual:
        await _verifies_with_the_submitters_seed(manual, genesis.params, cleanups)


async def _verifies_with_the_submitters_seed(
    manual: LocalChain, params: Params, cleanups: list[ResourceNode]
) -> None:
    # A fourth resource node, so three results can be judged next to our own.
    await manual.client.register_resource_node(DEV1, "*", "")
    await manual.client.stake(DEV1, MIN_NODE_STAKE)
    task = await open_task(manual, target_count=4)
    await submit_result(manual, OTHER, task, honest_output(task, OTHER.address))
    await submit_result(manual, THIRD, task, honest_output(task, THIRD.address) + " tampered")
    # computed with the verifier's seed, not the submitter's: not DEV1's honest result
    await submit_result(manual, DEV1, task, honest_output(task, NODE.address))
    mine(manual)

    node = await started(make_node(manual.url, params=params), cleanups)
    report = await node.run_once()
    assert (report.results, report.verdicts) == (1, 3)
    stats = node.stats()
    assert (stats.verified, stats.verdicts_accepted, stats.done, stats.failed) == (3, 3, 1, 0)
    verdict = node.submissions.verdict(task["taskHash"], OTHER.address)
    assert verdict is not None and verdict.valid is True

    mine(manual)
    assert await verdicts_by(manual, task, NODE.address) == {
        OTHER.address: True,
        THIRD.address: False,
        DEV1.address: False,
    }
    again = await node.run_once()
    assert (again.results, again.verdicts) == (0, 0)


async def test_lazy_verdicts_are_valid_without_computing(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    task = await open_task(manual, target_count=1)
    await submit_result(manual, OTHER, task, "garbage")
    mine(manual)
    backend = RecordingBackend()
    node = await started(make_node(manual.url, backend=backend, faults=Faults(lazy=True)), cleanups)
    report = await node.run_once()
    assert (report.results, report.verdicts) == (0, 1)
    assert backend.requests == []
    assert node.stats().verdicts_accepted == 1
    mine(manual)
    assert await verdicts_by(manual, task, NODE.address) == {OTHER.address: True}


async def test_wrong_node_gives_wrong_results_and_honest_verdicts(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    task = await open_task(manual, target_count=2)
    await submit_result(manual, OTHER, task, honest_output(task, OTHER.address))
    mine(manual)
    node = await started(make_node(manual.url, faults=Faults(wrong=1.0)), cleanups)
    await node.run_once()
    mine(manual)
    entry = (await entries(manual, task))[NODE.address]
    assert entry["result"] == honest_output(task, NODE.address) + WRONG_MARKER
    assert await verdicts_by(manual, task, NODE.address) == {OTHER.address: True}


async def test_silent_node_submits_nothing(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    task = await open_task(manual, target_count=2)
    await submit_result(manual, OTHER, task, honest_output(task, OTHER.address))
    backend = RecordingBackend()
    node = await started(
        make_node(manual.url, backend=backend, faults=Faults(silent=True)), cleanups
    )
    report = await node.run_once()
    assert (report.tasks, report.results, report.verdicts, report.error) == (1, 0, 0, None)
    assert backend.requests == []
    assert await mempool_size(manual) == 1  # OTHER's result only
    mine(manual)
    assert set(await entries(manual, task)) == {OTHER.address}
    assert await verdicts_by(manual, task, NODE.address) == {}


async def test_three_honest_nodes_settle_a_task(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    task = await open_task(manual, prompts='{"prompt":"Hi"}', target_count=2)
    first, second, third = [
        await started(make_node(manual.url, wallet=wallet), cleanups)
        for wallet in (NODE, OTHER, THIRD)
    ]
    assert (await first.run_once()).results == 1
    mine(manual)  # the first result is assigned to the other two
    report = await second.run_once()
    assert (report.results, report.verdicts) == (1, 1)
    mine(manual)  # the second result is assigned to the first and the third
    report = await third.run_once()  # the slots are taken: it judges both results
    assert (report.results, report.verdicts) == (0, 2)
    report = await first.run_once()
    assert (report.results, report.verdicts) == (0, 1)
    mine(manual)
    current = await manual.client.query_task(task["taskHash"])
    assert [entry["status"] for entry in current["executionInfo"]] == [VERIFIED, VERIFIED]
    assert current["status"] == "completed"  # decided, waiting for the submitters' secrets
    for node in (first, second):
        await node.run_once()
        assert node.stats().reveals == 1
    mine(manual)
    current = await manual.client.query_task(task["taskHash"])
    assert current["status"] == "verified"
    assert current["response"] == honest_output(task, NODE.address)
    assert [entry["forcedError"] for entry in current["executionInfo"]] == [False, False]
    assert first.stats().results_accepted == 1
    assert (first.stats().verdicts_accepted, second.stats().verdicts_accepted) == (1, 1)
    assert third.stats().verdicts_accepted == 2


async def test_wrong_results_are_rejected_by_honest_verdicts(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    task = await open_task(manual, prompts="Name a colour", target_count=1)
    wrong, second, third = [
        await started(make_node(manual.url, wallet=wallet, faults=faults), cleanups)
        for wallet, faults in ((NODE, Faults(wrong=1.0)), (OTHER, Faults()), (THIRD, Faults()))
    ]
    await wrong.run_once()
    mine(manual)
    await second.run_once()  # verifies (false); the slot is taken, so no result
    await third.run_once()
    assert second.stats().verdicts_accepted == 1 and third.stats().verdicts_accepted == 1
    mine(manual)
    entry = (await entries(manual, task))[NODE.address]
    assert entry["result"].endswith(WRONG_MARKER)
    assert entry["status"] == REJECTED


# Tasks it cannot read

DEEP = "[" * 100_000  # not an object, so the validator stores it as opaque bytes (PROTOCOL 1)


def lines_with(caplog: pytest.LogCaptureFixture, *parts: str) -> list[str]:
    """The messages logged that contain every one of `parts`."""
    messages = (record.getMessage() for record in caplog.records)
    return [message for message in messages if all(part in message for part in parts)]


async def test_a_task_it_cannot_read_is_skipped_and_logged_once(
    manual: LocalChain, cleanups: list[ResourceNode], caplog: pytest.LogCaptureFixture
) -> None:
    deep_options = await open_task(manual, model_options=DEEP, mined=False)
    deep_prompts = await open_task(manual, prompts=DEEP, mined=False)
    good = await open_task(manual, prompts="after the deep ones", mined=False)
    mine(manual)
    listed = {task["taskHash"]: task for task in await manual.client.query_pending_tasks(NODE)}
    assert listed[deep_options["taskHash"]]["modelOptions"] == DEEP  # answered as given
    assert listed[deep_prompts["taskHash"]]["prompts"] == DEEP

    node = await started(make_node(manual.url), cleanups)
    with caplog.at_level(logging.WARNING, logger="resource_node"):
        first = await node.run_once()
        second = await node.run_once()  # the same two are listed again
    assert (first.tasks, first.results, first.skipped) == (3, 1, 2)
    assert (second.tasks, second.results, second.skipped) == (2, 0, 2)
    for task, field_name in ((deep_options, "modelOptions"), (deep_prompts, "prompts")):
        [line] = lines_with(caplog, task["taskHash"])
        assert "skipped" in line and f"{field_name}: nested deeper than" in line
    stats = node.stats()
    assert (stats.unreadable, stats.done, stats.failed) == (2, 1, 0)
    assert node.info()["unreadable"] == 2
    mine(manual)
    assert set(await entries(manual, good)) == {NODE.address}
    for task in (deep_options, deep_prompts):
        assert await entries(manual, task) == {}  # the node sent nothing for them


async def test_verify_entries_it_cannot_read_are_skipped_and_logged_once(
    manual: LocalChain, cleanups: list[ResourceNode], caplog: pytest.LogCaptureFixture
) -> None:
    task = await open_task(manual, target_count=3)
    await submit_result(manual, OTHER, task, honest_output(task, OTHER.address))
    mine(manual)
    [listed] = await manual.client.query_pending_tasks(NODE)
    [good_entry] = listed["verify"]
    bad_entries = [
        "not an object",
        {"submitter": "0x1234", "result": "short address"},
        {"submitter": THIRD.address, "result": 7},
        {"submitter": DEV1.address, "result": "r" * (MAX_FIELD_LENGTH + 1)},
    ]
    # What a byzantine validator could list: the real task with junk among its entries.
    listing = [{**listed, "verify": [*bad_entries, good_entry]}]
    node = await started(make_node(manual.url), cleanups)
    with caplog.at_level(logging.WARNING, logger="resource_node"):
        first = await node.act_on(listing)
        second = await node.act_on(listing)
    assert (first.results, first.verdicts, first.skipped) == (1, 1, 0)
    assert (second.results, second.verdicts, second.skipped) == (0, 0, 0)
    lines = lines_with(caplog, task["taskHash"], "verify entry")
    assert len(lines) == len(bad_entries), lines
    assert any(THIRD.address in line and "verify.result" in line for line in lines)
    assert node.stats().verdicts_accepted == 1 and node.stats().failed == 0
    mine(manual)
    assert await verdicts_by(manual, task, NODE.address) == {OTHER.address: True}


async def test_a_listing_longer_than_asked_for_is_cut_to_the_limit(
    manual: LocalChain, cleanups: list[ResourceNode], caplog: pytest.LogCaptureFixture
) -> None:
    await open_tasks(manual, 2)
    listing = await manual.client.query_pending_tasks(NODE)
    node = await started(make_node(manual.url, limit=1), cleanups)
    with caplog.at_level(logging.WARNING, logger="resource_node"):
        first = await node.act_on(listing)
        second = await node.act_on(listing)
    assert (first.tasks, first.results, second.results) == (2, 1, 0)
    assert len(lines_with(caplog, "more than the 1 asked for")) == 1
    assert await mempool_size(manual) == 1


@dataclass
class BrokenBackend:
    """A backend with a bug: it raises something other than BackendError."""

    calls: int = 0
    name: str = "broken"

    async def infer(self, request: InferenceRequest) -> str:
        self.calls += 1
        raise RuntimeError("a bug in the backend")


async def test_an_unexpected_failure_is_logged_once_and_retried_after_its_cooldown(
    manual: LocalChain, cleanups: list[ResourceNode], caplog: pytest.LogCaptureFixture
) -> None:
    await open_task(manual)
    backend = BrokenBackend()
    node = await started(make_node(manual.url, backend=backend, retry_initial=0.0), cleanups)
    with caplog.at_level(logging.WARNING, logger="resource_node"):
        for _ in range(3):
            assert (await node.run_once()).results == 1  # retried: its cooldown is zero
    assert backend.calls == 3 and node.stats().failed == 3
    [line] = lines_with(caplog, "failed unexpectedly")
    assert "not logged again" in line
    assert await mempool_size(manual) == 0


# Persistence across restarts


async def test_restart_never_resubmits(tmp_path: Path, cleanups: list[ResourceNode]) -> None:
    ledger, state = tmp_path / "ledger", tmp_path / "state"
    async with local_chain(ledger, run=False) as chain:
        task = await open_task(chain)
        await submit_result(chain, OTHER, task, honest_output(task, OTHER.address))
        mine(chain)
        first = make_node(chain.url, state_dir=state)
        await first.setup()
        report = await first.run_once()
        assert (report.results, report.verdicts) == (1, 1)
        await first.cleanup()
        assert await mempool_size(chain) == 2
    # The validator restarts before a block and without its mempool journal (PROTOCOL 5.1):
    # both answers are gone, so it offers the same work again.
    (ledger / JOURNAL_FILE).unlink()
    async with local_chain(ledger, run=False) as chain:
        assert await chain.client.query_pending_tasks(NODE) != []
        second = await started(make_node(chain.url, state_dir=state), cleanups)
        report = await second.run_once()
        assert (report.tasks, report.results, report.verdicts) == (1, 0, 0)
        assert await mempool_size(chain) == 0
        # The same key without the log does send again: the log made the difference.
        fresh = await started(make_node(chain.url, state_dir=tmp_path / "fresh"), cleanups)
        report = await fresh.run_once()
        assert (report.results, report.verdicts) == (1, 1)
        assert await mempool_size(chain) == 2


async def test_a_reset_chain_is_a_new_start(tmp_path: Path, cleanups: list[ResourceNode]) -> None:
    state = tmp_path / "state"
    async with local_chain(tmp_path / "old", run=False) as chain:
        old_task = await open_task(chain)
        old_genesis = await chain.client.genesis_hash()
        first = make_node(chain.url, state_dir=state)
        await first.setup()
        await first.run_once()
        await first.cleanup()
    assert saved_state(state)["genesisHash"] == old_genesis

    genesis = make_genesis(verify_deadline_blocks=21)  # another genesis, the same chain id
    async with local_chain(tmp_path / "new", genesis, run=False) as chain:
        task = await open_task(chain)
        assert task["taskHash"] == old_task["taskHash"]  # the same task hash on a fresh chain
        new_genesis = await chain.client.genesis_hash()
        assert new_genesis != old_genesis
        second = await started(make_node(chain.url, state_dir=state), cleanups)
        report = await second.run_once()
        assert report.results == 1 and second.stats().results_accepted == 1
        assert saved_state(state)["genesisHash"] == new_genesis
        mine(chain)
        assert NODE.address in await entries(chain, task)


# The validator away, and back


async def test_unreachable_validator_backs_off(cleanups: list[ResourceNode]) -> None:
    node = await started(make_node(f"http://127.0.0.1:{free_port()}"), cleanups)
    delays = []
    for _ in range(8):
        report = await node.run_once()
        assert report.error is not None and "refused" in report.error.lower()
        delays.append(node.next_delay())
    config = node.config
    for attempt, delay in enumerate(delays):
        base = min(config.backoff_max, config.backoff_initial * 2**attempt)
        assert max(config.poll_interval, base / 2) <= delay <= base
    assert delays[-1] > config.poll_interval
    assert node.stats().poll_errors == 8 and node.stats().polls == 8
    assert node.info()["lastError"].startswith("validator unreachable")


async def test_keeps_going_when_the_validator_comes_back(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    task = await open_task(manual)
    port = free_port()
    node = await started(make_node(f"http://127.0.0.1:{port}"), cleanups)
    for _ in range(3):
        assert (await node.run_once()).error is not None
    assert node.next_delay() > node.config.poll_interval
    async with listening(manual.node, port):
        report = await node.run_once()
        assert (report.error, report.results) == (None, 1)
        assert node.next_delay() == node.config.poll_interval
    assert (await node.run_once()).error is not None  # away again
    mine(manual)
    assert NODE.address in await entries(manual, task)
    assert node.stats().results_accepted == 1 and node.stats().poll_errors == 4


async def test_a_submission_that_did_not_arrive_is_retried(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    task = await open_task(manual)
    port = free_port()
    held = HeldBackend()
    node = await started(make_node(f"http://127.0.0.1:{port}", backend=held), cleanups)
    async with listening(manual.node, port):
        run = asyncio.create_task(node.run_once())
        await held.wait_inside(1)
    held.release.set()  # the validator went away between the poll and the submission
    await asyncio.wait_for(run, WAIT)
    assert (node.stats().failed, node.stats().done) == (0, 0)
    assert node.next_delay() > node.config.poll_interval  # back off before the next poll
    assert await mempool_size(manual) == 0
    async with listening(manual.node, port):
        report = await node.run_once()
    assert (report.error, report.results) == (None, 1)
    assert (node.stats().results_accepted, node.stats().failed) == (1, 0)
    mine(manual)
    assert NODE.address in await entries(manual, task)


async def test_a_validator_that_comes_back_reset_is_a_new_start(
    tmp_path: Path, cleanups: list[ResourceNode]
) -> None:
    port = free_port()
    state = tmp_path / "state"
    node = await started(make_node(f"http://127.0.0.1:{port}", state_dir=state), cleanups)
    async with local_chain(tmp_path / "old", run=False) as chain:
        old_task = await open_task(chain)
        async with listening(chain.node, port):
            assert (await node.run_once()).results == 1
    assert (await node.run_once()).error is not None  # away

    async with local_chain(
        tmp_path / "new", make_genesis(verify_deadline_blocks=21), run=False
    ) as chain:
        task = await open_task(chain)
        assert task["taskHash"] == old_task["taskHash"]
        async with listening(chain.node, port):
            report = await node.run_once()  # the genesis hash is checked again after the outage
        assert (report.error, report.results) == (None, 1)
        assert node.stats().results_accepted == 2
        assert saved_state(state)["genesisHash"] == await chain.client.genesis_hash()
        mine(chain)
        assert NODE.address in await entries(chain, task)


async def test_a_validator_that_comes_back_with_another_chain_id(
    tmp_path: Path, cleanups: list[ResourceNode]
) -> None:
    port = free_port()
    node = await started(make_node(f"http://127.0.0.1:{port}"), cleanups)
    async with local_chain(tmp_path / "old", run=False) as chain:
        await open_task(chain)
        async with listening(chain.node, port):
            assert (await node.run_once()).results == 1

    genesis = parse_genesis(dev_genesis(chain_id=7332, params=Params(block_time_ms=0)))
    async with local_chain(tmp_path / "new", genesis, run=False) as chain:
        task = await open_task(chain)
        async with listening(chain.node, port):
            report = await node.run_once()
        assert (report.error, report.results) == (None, 1)
        assert (node.stats().results_accepted, node.stats().failed) == (2, 0), node.last_error
        mine(chain)
        assert NODE.address in await entries(chain, task)


# Crash fault and lifecycle


async def test_crash_fault_exits_after_n_results(
    manual: LocalChain, cleanups: list[ResourceNode], tmp_path: Path
) -> None:
    await open_tasks(manual, 2)
    exits: list[int] = []
    remembered_at_exit: list[int] = []

    def exit_process(code: int) -> None:
        exits.append(code)
        remembered_at_exit.append(len(saved_state(tmp_path)["tasks"]))

    node = make_node(
        manual.url,
        faults=Faults(crash_after=2),
        exit_process=exit_process,
        state_dir=tmp_path,
        concurrency=1,
    )
    await started(node, cleanups)
    await node.run_once()
    assert exits == [CRASH_EXIT_CODE]
    assert remembered_at_exit == [2]  # both results were saved before the exit
    assert await mempool_size(manual) == 2  # and both reached the validator


async def test_run_forever_until_stop(chain: LocalChain, cleanups: list[ResourceNode]) -> None:
    receipt = await chain.client.submit_task(
        DEV0, prompts=PROMPTS, model_options=MODEL_OPTIONS, target_count=1
    )
    await chain.client.wait_for_tx(receipt.tx_hash, timeout=WAIT)
    node = await started(make_node(chain.url, poll_interval=0.05), cleanups)
    runner = asyncio.create_task(node.run_forever())
    task = await chain.client.wait_for_task(
        receipt.task_hash, timeout=WAIT, statuses=("completed",)
    )  # automine committed the node's result: the only slot is taken
    node.stop()
    await asyncio.wait_for(runner, WAIT)
    assert [entry["resourceNode"] for entry in task["executionInfo"]] == [NODE.address]
    assert node.stats().results_accepted == 1 and node.stats().polls >= 1


# The node's HTTP server: status and health


async def test_the_server_answers_status_and_health(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    await open_task(manual)
    node = await started(make_node(manual.url, faults=Faults.parse(["slow:0"])), cleanups)
    await node.run_once()
    status = NodeServer(node.info, port=0)
    await status.setup()
    try:
        assert status.port != 0 and status.url == f"http://127.0.0.1:{status.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(status.url + "/status") as resp:
                assert resp.status == 200
                info = await resp.json()
            async with http.get(status.url + "/health") as resp:
                assert resp.status == 200
                assert await resp.json() == {"status": "ok"}
    finally:
        await status.cleanup()
    assert info["address"] == NODE.address
    assert info["models"] == ["*"]
    assert info["backend"] == "deterministic"
    assert info["faults"] == []
    assert (info["inFlight"], info["done"], info["failed"], info["verified"]) == (0, 1, 0, 0)
    assert info["results"] == {"accepted": 1, "closed": 0, "duplicate": 0}
    assert info["postprocessErrors"] == 0
    assert (info["polls"], info["pollErrors"], info["lastError"]) == (1, 0, None)
    assert info["validator"] == manual.url


async def scrape_node(node: ResourceNode) -> tuple[dict[str, Any], dict[str, float]]:
    """GET /status and GET /metrics of `node`'s HTTP server; the samples by name and labels."""
    server = NodeServer(node.info, port=0, metrics=node.metrics.registry)
    await server.setup()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/status") as resp:
                info = await resp.json()
            async with http.get(server.url + "/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain; version=")
                text = await resp.text()
    finally:
        await server.cleanup()
    samples = {
        sample.name + "".join(f"|{k}={v}" for k, v in sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return info, samples


async def test_the_server_serves_the_nodes_metrics(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    task = await open_task(manual, target_count=2)
    node = await started(make_node(manual.url), cleanups)
    third = await started(make_node(manual.url, wallet=THIRD), cleanups)
    _info, before = await scrape_node(node)
    assert before["inferchain_node_tasks_computed_total"] == 0
    assert before["inferchain_node_inference_seconds_count"] == 0
    assert (await node.run_once()).results == 1
    await submit_result(manual, OTHER, task, "not what the model answers")
    mine(manual)  # each result is assigned to the two other nodes
    report = await third.run_once()
    assert (report.results, report.verdicts) == (0, 2)  # the slots are taken
    report = await node.run_once()
    assert (report.results, report.verdicts) == (0, 1)
    mine(manual)
    assert await verdicts_by(manual, task, THIRD.address) == {
        NODE.address: True,
        OTHER.address: False,
    }

    info, samples = await scrape_node(node)
    assert (info["done"], info["verified"]) == (1, 1)
    assert samples["inferchain_node_tasks_computed_total"] == 1
    assert samples["inferchain_node_tasks_verified_total"] == 1
    assert samples.get("inferchain_node_verdicts_total|verdict=valid", 0) == 0
    assert samples["inferchain_node_verdicts_total|verdict=invalid"] == 1
    assert samples["inferchain_node_inference_seconds_count"] == 2  # its result, its verdict
    assert samples["inferchain_node_inference_seconds_bucket|le=+Inf"] == 2

    info, samples = await scrape_node(third)
    assert (info["done"], info["verified"]) == (0, 2)
    assert samples["inferchain_node_tasks_computed_total"] == 0
    assert samples["inferchain_node_tasks_verified_total"] == 2
    assert samples["inferchain_node_verdicts_total|verdict=valid"] == 1
    assert samples["inferchain_node_verdicts_total|verdict=invalid"] == 1
    assert samples["inferchain_node_inference_seconds_count"] == 2


async def test_the_node_registers_its_url_once(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    """PROTOCOL 7.3: the URL the chain shows for the node becomes its own, with its models
    kept; once it shows it, nothing more is sent."""
    node = await started(make_node(manual.url), cleanups)
    url = "http://127.0.0.1:9999"
    node.announce(url)
    await node.run_once()
    mine(manual)
    listed = {n["address"]: n for n in await manual.client.get_resource_nodes()}
    assert listed[NODE.address]["endpoint"] == url
    assert listed[NODE.address]["models"] == "*"
    nonce = (await manual.client.get_account(NODE.address))["nonce"]
    node.announce(url)  # as after a restart on the same URL
    await node.run_once()
    mine(manual)
    assert (await manual.client.get_account(NODE.address))["nonce"] == nonce


async def test_a_node_the_chain_does_not_list_registers_nothing(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    stranger = Wallet.dev(5)
    node = await started(make_node(manual.url, wallet=stranger), cleanups)
    node.announce("http://127.0.0.1:9999")
    await node.run_once()
    mine(manual)
    assert (await manual.client.get_account(stranger.address))["nonce"] == 0
    listed = [n["address"] for n in await manual.client.get_resource_nodes()]
    assert stranger.address not in listed


async def test_the_server_lifecycle() -> None:
    status = NodeServer(dict, port=0)
    await status.setup()
    try:
        runner = asyncio.create_task(status.run_forever())
        status.stop()
        await asyncio.wait_for(runner, WAIT)
    finally:
        await status.cleanup()
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(status.url + "/health")


# Assigned verifiers and forced errors (PROTOCOL 4.5, 4.13)


@contextlib.asynccontextmanager
async def forced_chain(
    tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[LocalChain, Params]]:
    """A manual dev chain where every result is a forced error (canaryRateBps 10000), and
    tasks take results for 4 blocks (a rejected result leaves its slot open until then)."""
    genesis = make_genesis(**{"canary_rate_bps": 10_000, "compute_deadline_blocks": 4, **overrides})
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        yield chain, genesis.params


async def stake_more(chain: LocalChain, wallet: Wallet, amount: int) -> None:
    """`wallet` stakes `amount` more, paid by DEV0; committed."""
    await chain.client.transfer(DEV0, wallet.address, amount)
    mine(chain)
    await chain.client.stake(wallet, amount)
    mine(chain)


def mine_past_compute_deadline(chain: LocalChain, params: Params, task: dict[str, Any]) -> None:
    while chain.node.head.height < task["createdHeight"] + params.compute_deadline_blocks:
        mine(chain)


def slashes(task: dict[str, Any]) -> dict[str, list[str]]:
    """address -> the reasons it was slashed for, in the task's settlement."""
    out: dict[str, list[str]] = {}
    for slash in task["settlement"]["slashed"]:
        out.setdefault(slash["address"], []).append(slash["reason"])
    return out


def payouts(task: dict[str, Any], role: str) -> dict[str, int]:
    return {
        p["address"]: int(p["amount"]) for p in task["settlement"]["payouts"] if p["role"] == role
    }


async def test_a_node_verifies_only_the_results_it_is_assigned(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    # A fourth node: OTHER's result has three candidates, round 0 takes two (quorum 2).
    await manual.client.register_resource_node(DEV1, "*", "")
    await manual.client.stake(DEV1, MIN_NODE_STAKE)
    task = await open_task(manual, target_count=1)
    await submit_result(manual, OTHER, task, honest_output(task, OTHER.address))
    mine(manual)
    [entry] = (await entries(manual, task)).values()
    [round0] = entry["assignment"]["rounds"]
    [left_out] = {NODE.address, THIRD.address, DEV1.address} - set(round0)
    wallets = {w.address: w for w in (NODE, THIRD, DEV1)}
    outsider = await started(make_node(manual.url, wallet=wallets[left_out]), cleanups)
    assert (await outsider.run_once()).verdicts == 0  # not listed to it

    # A byzantine validator lists the result to the node left out: the chain refuses it.
    listed = {**task, "compute": False, "reveal": False}
    forged = [{**listed, "verify": [{"submitter": OTHER.address, "result": entry["result"]}]}]
    report = await outsider.act_on(forged)
    assert report.verdicts == 1
    assert (outsider.stats().verdicts_accepted, outsider.stats().failed) == (0, 1)
    assert "not assigned" in (outsider.last_error or "")
    assert not outsider.submissions.has_verdict(task["taskHash"], OTHER.address)

    for address in round0:
        node = await started(make_node(manual.url, wallet=wallets[address]), cleanups)
        assert (await node.run_once()).verdicts == 1, address
    mine(manual)
    current = await manual.client.query_task(task["taskHash"])
    assert {v["verifier"] for v in current["verificationInfos"]} == set(round0)
    assert current["executionInfo"][0]["status"] == VERIFIED


async def rejected_forced_error(
    chain: LocalChain, params: Params, node: ResourceNode, cleanups: list[ResourceNode]
) -> dict[str, Any]:
    """`node` computes a task and its result is a forced error; OTHER and THIRD (honest)
    reject it. The task, decided and waiting for `node`'s secret."""
    task = await open_task(chain, target_count=1)
    report = await node.run_once()
    assert report.results == 1
    assert (node.stats().forced_errors, node.info()["forcedErrors"]) == (1, 1)
    mine(chain)
    entry = (await entries(chain, task))[node.address]
    assert entry["result"] == forced_output(honest_output(task, node.address))
    for wallet in (OTHER, THIRD):
        verifier = await started(make_node(chain.url, wallet=wallet, params=params), cleanups)
        assert (await verifier.run_once()).verdicts == 1
    mine(chain)
    current = await chain.client.query_task(task["taskHash"])
    [entry] = current["executionInfo"]
    assert (entry["status"], entry["forcedError"], current["status"]) == (
        REJECTED,
        None,
        "processing",  # its slot is open again, until the compute deadline
    )
    [listed] = await chain.client.query_pending_tasks(NODE)
    assert listed["reveal"] is True
    return task


async def test_a_node_makes_its_forced_errors_and_reveals_them(
    tmp_path: Path, cleanups: list[ResourceNode], caplog: pytest.LogCaptureFixture
) -> None:
    async with forced_chain(tmp_path) as (chain, params):
        node = await started(make_node(chain.url, params=params), cleanups)
        with caplog.at_level(logging.INFO, logger="resource_node"):
            task = await rejected_forced_error(chain, params, node, cleanups)
            report = await node.run_once()
        assert (report.results, report.verdicts) == (0, 0)
        assert lines_with(caplog, task["taskHash"], "forced error")
        assert lines_with(caplog, f"revealed the secret of height {task['createdHeight']}")
        assert node.stats().reveals == 1 and node.info()["reveals"]["sent"] == 1
        await node.run_once()  # the reveal is on its way to a block: not sent again
        assert node.stats().reveals == 1
        mine_past_compute_deadline(chain, params, task)
        current = await chain.client.query_task(task["taskHash"])
        [entry] = current["executionInfo"]
        assert (current["status"], entry["forcedError"], current["response"]) == (
            "failed",
            True,
            None,
        )
        assert NODE.address not in slashes(current)  # a revealed forced error costs no stake
        assert set(payouts(current, "canary")) == {OTHER.address, THIRD.address}
        [record] = [
            n for n in await chain.client.get_resource_nodes() if n["address"] == NODE.address
        ]
        assert record["secrets"]["revealedHeight"] == task["createdHeight"]
        assert (await node.run_once()).tasks == 0


async def test_a_lazy_verifier_is_slashed_on_a_forced_error(
    tmp_path: Path, cleanups: list[ResourceNode]
) -> None:
    async with forced_chain(tmp_path) as (chain, params):
        # THIRD holds more than 2/3 of the assigned stake: its verdict decides the last round.
        await stake_more(chain, THIRD, 3_000 * E18)
        node = await started(make_node(chain.url, params=params), cleanups)
        task = await open_task(chain, target_count=1)
        assert (await node.run_once()).results == 1 and node.stats().forced_errors == 1
        mine(chain)
        backend = RecordingBackend()
        lazy = make_node(chain.url, wallet=OTHER, backend=backend, faults=Faults(lazy=True))
        await started(lazy, cleanups)
        assert (await lazy.run_once()).verdicts == 1 and backend.requests == []
        mine(chain)  # the lazy verdict first: it is counted before the result is decided
        honest = await started(make_node(chain.url, wallet=THIRD, params=params), cleanups)
        assert (await honest.run_once()).verdicts == 1
        mine(chain)
        await node.run_once()
        assert node.stats().reveals == 1
        mine_past_compute_deadline(chain, params, task)
        current = await chain.client.query_task(task["taskHash"])
        assert current["executionInfo"][0]["forcedError"] is True
        assert slashes(current) == {OTHER.address: ["lazy"]}
        assert set(payouts(current, "canary")) == {THIRD.address}


async def test_a_restarted_node_reveals_what_it_owes(
    tmp_path: Path, cleanups: list[ResourceNode]
) -> None:
    state = tmp_path / "state"
    async with forced_chain(tmp_path) as (chain, params):
        first = make_node(chain.url, params=params, state_dir=state)
        await first.setup()
        task = await rejected_forced_error(chain, params, first, cleanups)
        await first.cleanup()  # stopped before it revealed
        assert (
            saved_state(state)["tasks"][task["taskHash"]]["createdHeight"] == task["createdHeight"]
        )
        second = await started(make_node(chain.url, params=params, state_dir=state), cleanups)
        await second.run_once()
        assert (second.stats().reveals, second.stats().secrets_commits) == (1, 0)
        mine_past_compute_deadline(chain, params, task)
        current = await chain.client.query_task(task["taskHash"])
        assert current["executionInfo"][0]["forcedError"] is True
        assert current["status"] == "failed" and NODE.address not in slashes(current)


async def test_a_node_that_does_not_reveal_is_slashed_at_the_reveal_deadline(
    tmp_path: Path, cleanups: list[ResourceNode]
) -> None:
    async with forced_chain(
        tmp_path, compute_deadline_blocks=2, verify_deadline_blocks=2, reveal_deadline_blocks=2
    ) as (chain, params):
        node = await started(
            make_node(chain.url, params=params, faults=Faults(noreveal=True)), cleanups
        )
        task = await rejected_forced_error(chain, params, node, cleanups)
        await node.run_once()
        assert node.stats().reveals == 0
        deadline = task["createdHeight"] + 6
        while chain.node.head.height < deadline:
            await node.run_once()
            mine(chain)
        current = await chain.client.query_task(task["taskHash"])
        assert current["status"] == "failed"
        assert current["executionInfo"][0]["forcedError"] is None
        assert slashes(current) == {NODE.address: ["result"]}


@pytest.mark.parametrize("batch", [1, worker.DECIDED_BATCH])
async def test_an_unrevealed_height_waits_for_the_nodes_undecided_results(
    tmp_path: Path, cleanups: list[ResourceNode], monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    # Revealing the secret of a height tells every earlier one: a node reveals none above
    # a result of its own still undecided (its results read `batch` at a time).
    monkeypatch.setattr(worker, "DECIDED_BATCH", batch)
    async with forced_chain(tmp_path) as (chain, params):
        node = await started(make_node(chain.url, params=params), cleanups)
        first = await open_task(chain, prompts="first", target_count=1)
        assert (await node.run_once()).results == 1
        second = await open_task(chain, prompts="second", target_count=1)
        assert (await node.run_once()).results == 1
        mine(chain)
        third = await started(make_node(chain.url, wallet=THIRD, params=params), cleanups)
        other = await started(make_node(chain.url, wallet=OTHER, params=params), cleanups)
        # The second result decided (both reject it), the first not: THIRD judges only the second.
        await third.act_on(
            [
                t
                for t in await chain.client.query_pending_tasks(THIRD)
                if t["taskHash"] == second["taskHash"]
            ]
        )
        await other.act_on(
            [
                t
                for t in await chain.client.query_pending_tasks(OTHER)
                if t["taskHash"] == second["taskHash"]
            ]
        )
        mine(chain)
        listing = await chain.client.query_pending_tasks(NODE)
        assert [t["taskHash"] for t in listing if t["reveal"]] == [second["taskHash"]]
        await node.run_once()
        assert node.stats().reveals == 0  # the first result, created lower, is undecided
        for verifier in (third, other):
            await verifier.run_once()
        mine(chain)
        await node.run_once()
        assert node.stats().reveals == 1
        mine(chain)
        for task in (first, second):
            current = await chain.client.query_task(task["taskHash"])
            assert current["executionInfo"][0]["forcedError"] is True, task["prompts"]


async def test_a_node_registered_by_transaction_commits_its_secrets_then_computes(
    manual: LocalChain, cleanups: list[ResourceNode], tmp_path: Path
) -> None:
    await manual.client.register_resource_node(DEV1, "*", "")
    await manual.client.stake(DEV1, MIN_NODE_STAKE)
    before = await open_task(manual, prompts="before the secrets")
    state = tmp_path / "state"
    node = await started(make_node(manual.url, wallet=DEV1, state_dir=state), cleanups)
    assert node.stats().secrets_commits == 1 and node.info()["secrets"]["state"] == "committing"
    epoch = saved_state(state, DEV1)["secretsEpoch"]
    assert epoch is not None and epoch > 0
    assert (await node.run_once()).results == 0  # not on chain yet: it computes nothing
    mine(manual)
    after = await open_task(manual, prompts="after the secrets")
    report = await node.run_once()
    assert report.results == 1
    info = node.info()["secrets"]
    assert (info["state"], info["epoch"]) == ("ready", epoch)
    [record] = [n for n in await manual.client.get_resource_nodes() if n["address"] == DEV1.address]
    head = SecretChain.derive(DEV1.private_key, epoch).head
    assert record["secrets"]["head"] == "0x" + head.hex()
    assert record["secrets"]["base"] > before["createdHeight"]
    mine(manual)
    assert DEV1.address in await entries(manual, after)
    assert DEV1.address not in await entries(manual, before)  # its secrets came after it

    # Restarted, it finds the epoch of its state file on chain and commits nothing.
    await node.cleanup()
    cleanups.remove(node)
    again = await started(make_node(manual.url, wallet=DEV1, state_dir=state), cleanups)
    assert again.stats().secrets_commits == 0 and again.info()["secrets"]["epoch"] == epoch


async def test_a_chain_of_secrets_that_runs_out_is_followed_by_the_next_epoch(
    tmp_path: Path, cleanups: list[ResourceNode]
) -> None:
    genesis = make_genesis(
        compute_deadline_blocks=2, verify_deadline_blocks=2, reveal_deadline_blocks=2
    )
    margin = 2 + 2 + 2 + ROLLOVER_MARGIN
    # the node keeps the margin in hand while it is at most half the chain
    length = 2 * margin + 3
    reach = length - margin
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        await chain.client.register_resource_node(DEV1, "*", "")
        await chain.client.stake(DEV1, MIN_NODE_STAKE)
        mine(chain)
        node = make_node(chain.url, wallet=DEV1, params=genesis.params, secret_chain_length=length)
        await started(node, cleanups)
        mine(chain)
        await node.run_once()
        first_epoch, base = node.info()["secrets"]["epoch"], node.info()["secrets"]["base"]
        assert node.info()["secrets"]["state"] == "ready" and first_epoch > 0
        early = await open_task(chain, prompts="early")  # within the chain's reach
        assert early["createdHeight"] - base <= reach
        assert (await node.run_once()).results == 1
        for _ in range(reach):  # the node reveals what `early` waits for on the way
            mine(chain)
            await node.run_once()
        late = await open_task(chain, prompts="late")  # too close to the chain's end
        assert late["createdHeight"] - base > reach
        report = await node.run_once()
        assert report.results == 0 and node.info()["secrets"]["state"] in ("rollover", "committing")
        while node.info()["secrets"]["state"] != "ready":  # waits for `early` to settle
            await node.run_once()
            mine(chain)
            assert chain.node.head.height < late["createdHeight"] + 20
        assert node.info()["secrets"]["epoch"] > first_epoch
        assert node.stats().secrets_commits == 2
        fresh = await open_task(chain, prompts="fresh")
        assert (await node.run_once()).results == 1
        mine(chain)
        assert DEV1.address in await entries(chain, fresh)
        assert DEV1.address not in await entries(chain, late)


async def test_copy_fault_submits_a_listed_result_as_its_own_and_never_computes(
    tmp_path: Path, cleanups: list[ResourceNode]
) -> None:
    genesis = make_genesis(canary_rate_bps=0)
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        copied = await open_task(chain, prompts="copied", target_count=2)
        alone = await open_task(chain, prompts="alone", target_count=2)
        await submit_result(chain, OTHER, copied, honest_output(copied, OTHER.address))
        mine(chain)
        backend = RecordingBackend()
        node = make_node(
            chain.url, backend=backend, faults=Faults(copy=True), params=genesis.params
        )
        await started(node, cleanups)
        report = await node.run_once()
        assert (report.results, report.verdicts) == (1, 1)
        mine(chain)
        assert (await entries(chain, copied))[NODE.address]["result"] == honest_output(
            copied, OTHER.address
        )
        # nothing to copy in the other task: nothing computed, OTHER's result verified honestly
        assert NODE.address not in await entries(chain, alone)
        assert len(backend.requests) == 1  # the verdict only
        assert await verdicts_by(chain, copied, NODE.address) == {OTHER.address: True}
        # once another result of it is listed, the copier submits that
        await submit_result(chain, OTHER, alone, honest_output(alone, OTHER.address))
        mine(chain)
        assert (await node.run_once()).results == 1
        mine(chain)
        assert (await entries(chain, alone))[NODE.address]["result"] == honest_output(
            alone, OTHER.address
        )


async def test_forced_errors_follow_the_rule_at_any_rate(
    tmp_path: Path, cleanups: list[ResourceNode]
) -> None:
    # PROTOCOL 4.13 written out for a dev node: its secret of height h is its epoch 0 seed
    # hashed SECRET_CHAIN_LENGTH - h times.
    async with forced_chain(tmp_path, canary_rate_bps=5_000) as (chain, params):
        tasks = [
            await open_task(chain, prompts=f"task {n}", target_count=1, mined=False)
            for n in range(8)
        ]
        mine(chain)
        tasks = [await chain.client.query_task(task["taskHash"]) for task in tasks]
        node = await started(make_node(chain.url, params=params), cleanups)
        assert (await node.run_once()).results == len(tasks)
        mine(chain)
        seed = crypto.secrets_seed(NODE.private_key, 0)
        forced = 0
        for task in tasks:
            height = task["createdHeight"]
            secret = crypto.hash_steps(seed, crypto.SECRET_CHAIN_LENGTH - height)
            rule = crypto.is_forced_error(secret, bytes.fromhex(task["taskHash"][2:]), 5_000)
            honest = honest_output(task, NODE.address)
            result = (await entries(chain, task))[NODE.address]["result"]
            assert result == (forced_output(honest) if rule else honest), task["prompts"]
            forced += rule
        assert 0 < forced < len(tasks)  # both kinds, at this rate
        assert node.stats().forced_errors == forced


# A real-model node (the openai backend) against a stub of the outside server


@dataclass
class ModelServer:
    """A stand-in for an OpenAI-compatible server serving `demo`: completions echo the
    prompt's end and the seed; `refused` holds the option names it answers 400 for."""

    url: str = ""
    refused: tuple[str, ...] = ()
    bodies: list[dict[str, Any]] = field(default_factory=list)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        for option in self.refused:
            if option in body:
                return web.json_response({"error": f"unsupported {option}"}, status=400)
        text = f"{body['prompt'][-12:]} {body['seed']}"
        return web.json_response({"choices": [{"index": 0, "text": text}]})

    async def models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"data": [{"id": "demo"}]})


@pytest.fixture
async def model_server() -> AsyncIterator[ModelServer]:
    server = ModelServer()
    app = web.Application()
    app.router.add_post("/v1/completions", server.completions)
    app.router.add_get("/v1/models", server.models)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        await runner.cleanup()


async def test_a_real_model_node_refuses_what_it_cannot_do_and_serves_its_model_only(
    tmp_path: Path,
    cleanups: list[ResourceNode],
    model_server: ModelServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from resource_node.backends.openai_compat import OpenAIBackend

    model_server.refused = ("top_k",)
    genesis = make_genesis(canary_rate_bps=0)
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        good = await open_task(chain, model_options='{"model":"demo","max_tokens":8}')
        hot = await open_task(chain, model_options='{"model":"demo","max_tokens":4096}')
        odd = await open_task(chain, model_options='{"model":"demo","mirostat":2}')
        top_k = await open_task(chain, model_options='{"model":"demo","top_k":5}')
        other = await open_task(chain, model_options='{"model":"llama-70b"}')
        backend = OpenAIBackend(model_server.url, verify="exact")
        node = await started(make_node(chain.url, backend=backend, params=genesis.params), cleanups)
        assert backend.model == "demo"  # the server's only model, checked at setup
        with caplog.at_level(logging.WARNING, logger="resource_node.worker"):
            for _ in range(2):  # the second poll neither retries nor logs again
                await node.run_once()
        mine(chain)
        assert NODE.address in await entries(chain, good)
        for task in (hot, odd, top_k, other):
            assert NODE.address not in await entries(chain, task)
        refused = [r.getMessage() for r in caplog.records if "cannot do it" in r.getMessage()]
        assert len(refused) == 3, refused
        assert any(
            "modelOptions.max_tokens: must be from 1 to this node's cap 2048" in m for m in refused
        )
        assert any("mirostat not known" in m for m in refused)
        assert any("refused the task's request" in m for m in refused)
        assert node.stats().unreadable == 3
        # sent once each: the good task and the one whose top_k the server refused
        assert [b["max_tokens"] for b in model_server.bodies] == [8, 256]


async def test_an_accepted_result_that_was_not_taken_is_computed_again(
    manual: LocalChain, cleanups: list[ResourceNode], tmp_path: Path
) -> None:
    """A result accepted into the mempool and then gone (here a dev_revert took it away; on
    a network, another node's filled the slot in the block): listed to compute again, the
    node checks that its transaction is unknown, counts it closed and computes again."""
    task = await open_task(manual)
    before = await manual.client.dev_snapshot()
    node = await started(make_node(manual.url, state_dir=tmp_path / "state"), cleanups)
    assert (await node.run_once()).results == 1
    assert node.submissions.result_outcome(task["taskHash"]) == "accepted"
    assert await manual.client.dev_revert(before) is True
    assert await mempool_size(manual) == 0  # the result is gone

    await node.run_once()  # listed again: the node asks what became of its result

    async def closed() -> bool:
        return node.submissions.result_outcome(task["taskHash"]) == "closed"

    await wait_until(closed, "the result counted as not taken")
    assert (await node.run_once()).results == 1
    mine(manual)
    [entry] = (await entries(manual, task)).values()
    assert entry["resourceNode"] == NODE.address


async def test_the_metrics_count_the_slashes_the_node_sees(
    manual: LocalChain, cleanups: list[ResourceNode]
) -> None:
    """A wrong result rejected, an honest one verified: the settlement slashes the wrong node,
    and every node's metrics count the slash; the wrong node's also that it was slashed."""
    nodes = [
        await started(
            make_node(manual.url, wallet=w, faults=f, settlement_read_interval=0.0), cleanups
        )
        for w, f in ((NODE, Faults(wrong=1.0)), (OTHER, Faults()), (THIRD, Faults()))
    ]
    for node in nodes:
        await node.run_once()  # the settlements are read from here on
    task = await open_task(manual, prompts="Name a colour", target_count=1)
    wrong = nodes[0]
    await wrong.run_once()
    for _ in range(6):  # verdicts, the slot open again, an honest result, its verdicts
        mine(manual)
        for node in nodes[1:] + nodes[:1]:
            await node.run_once()
    settled = await manual.client.query_task(task["taskHash"])
    assert settled["status"] == "verified", settled["status"]
    assert [s["address"] for s in settled["settlement"]["slashed"]] == [NODE.address]
    for node in nodes:
        await node.run_once()
        seen = node.metrics.registry.get_sample_value("inferchain_node_slashes_seen_total")
        assert seen == 1, (node.address, seen)
    slashed = "inferchain_node_slashed_total"
    assert wrong.metrics.registry.get_sample_value(slashed) == 1
    assert nodes[1].metrics.registry.get_sample_value(slashed) == 0
