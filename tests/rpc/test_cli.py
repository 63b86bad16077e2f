"""The `inferchain` command line (cli/) against a real validator in this process.

Each command runs as its own process (`python -m cli`), as a user runs it, against a dev chain
served on loopback (tests/helpers.local_chain, automine). A task is verified by three resource
node workers running in this process beside the validator (as in
tests/rpc/test_resource_node_worker.py). Its stdout is a pipe, so it prints JSON lines; what
they say is compared with what the client library reads from the same chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cli import render
from cli.follow import block_line, status_history, task_events
from cli.main import show_task
from resource_node.backends.deterministic import DeterministicBackend
from resource_node.worker import ResourceNode, WorkerConfig
from rpc import subscriptions
from rpc.client import InferchainClient, RpcError, Wallet
from tests.helpers import REPO, LocalChain, local_chain, make_genesis

DEV0 = Wallet.dev(0)
DEV1 = Wallet.dev(1)
NODES = tuple(Wallet.dev(200 + k) for k in range(3))
STRANGER = Wallet.from_key("0x" + "42" * 32)  # no balance
WAIT = 60.0  # an upper bound on each wait, so that a bug fails instead of hanging
COMPUTE_DEADLINE = 20  # blocks (the default computeDeadlineBlocks)


# The command as a process


@dataclass(frozen=True, slots=True)
class Ran:
    code: int
    stdout: str
    stderr: str

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines()]


async def inferchain(*args: str, rpc: str | None = None) -> Ran:
    """Run `inferchain ARGS` to its end (with `rpc` in $INFERCHAIN_RPC)."""
    env = {k: v for k, v in os.environ.items() if k != "INFERCHAIN_RPC"}
    if rpc is not None:
        env["INFERCHAIN_RPC"] = rpc
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


class Running:
    """`inferchain ARGS` left running: its JSON lines read one at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), WAIT)
        assert raw, f"the command ended: {await self.stderr()}"
        value: dict[str, Any] = json.loads(raw)
        return value

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        return (await asyncio.wait_for(self.process.stderr.read(), WAIT)).decode()

    async def wait(self) -> int:
        return await asyncio.wait_for(self.process.wait(), WAIT)


@contextlib.asynccontextmanager
async def running(*args: str) -> AsyncIterator[Running]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield Running(process)
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), WAIT)


# Chains


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[LocalChain]:
    """A dev chain with automine and its three resource nodes at work (no forced errors, so
    every honest result is verified)."""
    async with serving(tmp_path) as chain:
        yield chain


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, ws_limits: subscriptions.Limits | None = None
) -> AsyncIterator[LocalChain]:
    genesis = make_genesis(canary_rate_bps=0)
    async with local_chain(tmp_path / "ledger", genesis, ws_limits=ws_limits) as chain:
        workers = [
            ResourceNode(
                InferchainClient(chain.url, timeout=WAIT),
                wallet,
                DeterministicBackend(),
                config=WorkerConfig(poll_interval=0.05, params=genesis.params),
                rng=random.Random(k),
            )
            for k, wallet in enumerate(NODES)
        ]
        for worker in workers:
            await worker.setup()
        runs = [asyncio.create_task(worker.run_forever()) for worker in workers]
        try:
            yield chain
        finally:
            for worker in workers:
                worker.stop()
            await asyncio.wait_for(asyncio.gather(*runs), WAIT)
            for worker in workers:
                await worker.cleanup()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# task submit


def kinds(lines: list[dict[str, Any]]) -> list[str]:
    return [line["event"] for line in lines]


async def test_submit_wait_shows_the_task_moving_to_verified(served: LocalChain) -> None:
    ran = await inferchain(
        "task",
        "submit",
        "--rpc",
        served.url,
        "--prompt",
        "Hello",
        "--model",
        "demo",
        "--target",
        "2",
        "--wait",
    )
    assert ran.code == 0, ran.stderr
    lines = ran.lines()
    events = kinds(lines)
    task_hash = lines[0]["taskHash"]
    assert {line["taskHash"] for line in lines} == {task_hash}
    assert events[:2] == ["submitted", "included"]
    assert events[-1] == "verified" and events.count("verified") == 1
    first_result = events.index("result")
    assert events.index("processing") == first_result + 1  # the first result opened it
    assert events.count("result") == 2
    assert events.index("completed") > events.index("processing")
    assert first_result < events.index("verdict") < events.index("decided") < len(events) - 1
    task = await served.client.query_task(task_hash)
    assert task["status"] == "verified"
    assert lines[0]["txHash"] == task["txHash"] and lines[0]["sender"] == DEV0.address
    assert lines[1]["height"] == task["createdHeight"]
    results = [
        (line["resourceNode"], line["rank"], line["result"])
        for line in lines
        if line["event"] == "result"
    ]
    assert results == [(e["resourceNode"], e["rank"], e["result"]) for e in task["executionInfo"]]
    verdicts = [
        (line["verifier"], line["resourceNode"], line["valid"])
        for line in lines
        if line["event"] == "verdict"
    ]
    given = [(v["verifier"], v["submitter"], v["valid"]) for v in task["verificationInfos"]]
    assert verdicts == given  # each verdict once, in seq order
    assert lines[-1]["response"] == task["response"]
    assert lines[-1]["settlement"] == task["settlement"]
    assert lines[-1]["height"] == task["finishedHeight"]


async def test_submit_wait_polls_a_validator_that_refuses_the_websocket(tmp_path: Path) -> None:
    async with serving(tmp_path, subscriptions.Limits(connections=0)) as chain:
        ran = await inferchain(
            "task", "submit", "--rpc", chain.url, "--prompt", "Hi", "--model", "demo",
            "--target", "2", "--wait",
        )  # fmt: skip
        assert ran.code == 0, ran.stderr
        events = kinds(ran.lines())
        assert events[:2] == ["submitted", "included"] and events[-1] == "verified"
        assert events.count("result") == 2


async def test_submit_prints_the_hash_of_the_task_it_signed(chain: LocalChain) -> None:
    ran = await inferchain(
        "task",
        "submit",
        "--rpc",
        chain.url,
        "--json",
        "--prompt",
        "Name a colour",
        "--model",
        "demo",
        "--max-tokens",
        "8",
        "--option",
        "seed=3",
        "--from",
        "1",
    )
    assert ran.code == 0, ran.stderr
    (line,) = ran.lines()
    assert line["event"] == "submitted" and line["sender"] == DEV1.address
    task = await chain.client.query_task(line["taskHash"])
    assert (task["sender"], task["prompts"], task["targetCount"]) == (
        DEV1.address,
        "Name a colour",
        1,
    )
    assert json.loads(task["modelOptions"]) == {"model": "demo", "max_tokens": 8, "seed": 3}
    quiet = await inferchain(
        "task", "submit", "--rpc", chain.url, "--prompt", "Hi", "--model", "demo", "-q"
    )
    assert quiet.code == 0, quiet.stderr
    assert (await chain.client.query_task(quiet.stdout.strip()))["prompts"] == "Hi"


async def test_submit_signs_with_a_key_file(chain: LocalChain, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text(DEV0.private_key.hex() + "\n")
    ran = await inferchain(
        "task",
        "submit",
        "--rpc",
        chain.url,
        "--prompt",
        "Hi",
        "--model",
        "demo",
        "--key",
        str(key),
    )
    assert ran.code == 0, ran.stderr
    (line,) = ran.lines()
    assert (await chain.client.query_task(line["taskHash"]))["sender"] == DEV0.address


async def test_submit_wait_exits_1_when_the_task_fails(chain: LocalChain) -> None:
    """No resource node works on this chain: the task fails at its compute deadline."""
    async with running(
        "task", "submit", "--rpc", chain.url, "--prompt", "Hello", "--model", "demo", "--wait"
    ) as cli:
        submitted = await cli.line()
        assert submitted["event"] == "submitted"
        included = await cli.line()
        assert included["event"] == "included"
        await chain.client.dev_mine(COMPUTE_DEADLINE + 1)
        failed = await cli.line()
        assert await cli.wait() == 1
    task = await chain.client.query_task(submitted["taskHash"])
    assert task["status"] == failed["event"] == "failed"
    assert failed["settlement"] == task["settlement"] and failed["response"] is None


# Reads


async def test_task_show_is_the_task_the_client_reads(served: LocalChain) -> None:
    receipt = await served.client.submit_task(
        DEV0, prompts="Hello", model_options='{"model":"demo"}', target_count=2
    )
    task = await served.client.wait_for_task(receipt.task_hash, timeout=WAIT)
    ran = await inferchain("task", "show", "--rpc", served.url, "--json", receipt.task_hash)
    assert ran.code == 0, ran.stderr
    assert ran.lines() == [task]


async def test_account_show_is_the_account_the_client_reads(chain: LocalChain) -> None:
    for wallet in (DEV0, NODES[1]):
        ran = await inferchain("account", "show", "--rpc", chain.url, wallet.address.lower())
        assert ran.code == 0, ran.stderr
        assert ran.lines() == [await chain.client.get_account(wallet.address)]


async def test_nodes_are_the_resource_nodes_the_client_reads(chain: LocalChain) -> None:
    ran = await inferchain("nodes", "--rpc", chain.url, "--json")
    assert ran.code == 0, ran.stderr
    listed = await chain.client.get_resource_nodes()
    assert ran.lines() == listed and len(listed) == 3
    by_variable = await inferchain("nodes", rpc=chain.url)  # $INFERCHAIN_RPC, no --rpc
    assert by_variable.code == 0, by_variable.stderr
    assert by_variable.lines() == listed


async def test_blocks_are_the_last_blocks(chain: LocalChain) -> None:
    for _ in range(3):
        await chain.client.wait_for_tx(await chain.client.transfer(DEV0, DEV1.address, 1))
    head = await chain.client.block_number()
    ran = await inferchain("blocks", "--rpc", chain.url, "--count", "3")
    assert ran.code == 0, ran.stderr
    wanted = [block_line(await chain.client.get_block(h)) for h in range(head - 2, head + 1)]
    assert ran.lines() == wanted
    assert [line["txCount"] for line in wanted] == [1, 1, 1]


async def test_blocks_follow_prints_each_new_block(chain: LocalChain) -> None:
    head = await chain.client.block_number()
    async with running("blocks", "--rpc", chain.url, "--count", "1", "--follow") as cli:
        assert await cli.line() == block_line(await chain.client.get_block(head))
        for height in (head + 1, head + 2):
            await chain.client.transfer(DEV0, DEV1.address, 1)
            line = await cli.line()
            assert line == block_line(await chain.client.get_block(height))


async def test_task_watch_shows_each_status_change(served: LocalChain) -> None:
    start = str(await served.client.block_number() + 1)
    async with (
        running("task", "watch", "--rpc", served.url, "--from-height", start) as every,
        running(
            "task",
            "watch",
            "--rpc",
            served.url,
            "--from-height",
            start,
            "--sender",
            DEV0.address,
        ) as mine,
    ):
        other = await served.client.submit_task(
            DEV1, prompts="Hi", model_options='{"model":"demo"}', target_count=1
        )
        await served.client.wait_for_task(other.task_hash, timeout=WAIT)
        receipt = await served.client.submit_task(
            DEV0, prompts="Hello", model_options='{"model":"demo"}', target_count=2
        )
        await served.client.wait_for_task(receipt.task_hash, timeout=WAIT)
        seen: dict[str, list[dict[str, Any]]] = {}
        while len(seen) < 2 or any(lines[-1]["status"] != "verified" for lines in seen.values()):
            line = await every.line()
            seen.setdefault(line["taskHash"], []).append(line)
        mine_lines = [await mine.line()]
        while mine_lines[-1]["status"] != "verified":
            mine_lines.append(await mine.line())
    for changes in seen.values():
        statuses = [line["status"] for line in changes]
        assert statuses[0] == "submitted" and statuses[-1] == "verified", changes
        assert [line["previous"] for line in changes] == [None, *statuses[:-1]]
        heights = [line["height"] for line in changes]
        assert heights == sorted(set(heights))  # one change a block at most
        task = await served.client.query_task(changes[0]["taskHash"])
        assert (heights[0], heights[-1]) == (task["createdHeight"], task["finishedHeight"])
        assert {line["sender"] for line in changes} == {task["sender"]}
    assert set(seen) == {other.task_hash, receipt.task_hash}
    assert {line["taskHash"] for line in mine_lines} == {receipt.task_hash}
    assert mine_lines == seen[receipt.task_hash]


# Bad input: exit 2, one line on stderr, nothing sent


def one_line_error(ran: Ran) -> str:
    assert ran.code == 2, ran
    assert ran.stdout == ""
    assert "Traceback" not in ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["task", "show", "0x12"], ["HASH", "0x12", "64 hex digits"]),
        (["task", "show", "0x" + "g" * 64], ["HASH", "0x" + "g" * 64]),
        (["account", "show", "0xabc"], ["ADDRESS", "0xabc", "40 hex digits"]),
        (["account", "show", "0x" + DEV0.address[2:].swapcase()], ["ADDRESS", "EIP-55"]),
        (["task", "watch", "--sender", "nobody"], ["--sender", "nobody"]),
    ],
    ids=["short-hash", "hex-hash", "short-address", "checksum", "watch-sender"],
)
async def test_malformed_input_is_named_and_not_sent(args: list[str], names: list[str]) -> None:
    """Pointed at a port nothing listens on: an error that names the input shows that it was
    refused before anything was sent (sending would fail to connect)."""
    ran = await inferchain(*args, "--rpc", f"http://127.0.0.1:{free_port()}")
    message = one_line_error(ran)
    for name in names:
        assert name in message, message
    assert "no answer" not in message


async def test_an_unreachable_rpc_says_so() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["nodes"], ["blocks", "--follow"], ["task", "watch"]):
        message = one_line_error(await inferchain(*args, "--rpc", url))
        assert message.startswith(f"inferchain: error: no answer from the chain at {url}")
    message = one_line_error(await inferchain("nodes", "--rpc", "127.0.0.1:8545"))
    assert "--rpc" in message and "http://" in message


async def test_the_chains_refusals_print_message_and_data(
    chain: LocalChain, tmp_path: Path
) -> None:
    unknown = "0x" + "11" * 32
    message = one_line_error(await inferchain("task", "show", "--rpc", chain.url, unknown))
    with pytest.raises(RpcError) as refused:
        await chain.client.query_task(unknown)
    assert f"{refused.value.message} ({refused.value.code})" in message
    assert json.dumps(refused.value.data) in message
    message = one_line_error(
        await inferchain(
            "task",
            "submit",
            "--rpc",
            chain.url,
            "--prompt",
            "x",
            "--model",
            "demo",
            "--target",
            "99",
        )
    )
    assert "Invalid params (-32602)" in message and '"param": "targetCount"' in message
    key = tmp_path / "stranger.key"
    key.write_text(STRANGER.private_key.hex())
    message = one_line_error(
        await inferchain(
            "task",
            "submit",
            "--rpc",
            chain.url,
            "--prompt",
            "x",
            "--model",
            "demo",
            "--key",
            str(key),
        )
    )
    assert "Insufficient balance (-32002)" in message and STRANGER.address in message
    assert (await chain.client.task_stats())["total"] == 0  # nothing was admitted


async def test_bad_keys_are_named(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    bad = tmp_path / "bad.key"
    bad.write_text("not hex")
    submit = ["task", "submit", "--rpc", url, "--prompt", "x", "--model", "demo"]
    for path, words in ((bad, "not a hex string"), (tmp_path / "none", "No such file")):
        message = one_line_error(await inferchain(*submit, "--key", str(path)))
        assert str(path) in message and words in message, message
    message = one_line_error(await inferchain(*submit, "--option", "novalue"))
    assert "--option 'novalue'" in message


# What the command line derives, in this process


async def test_the_polled_events_are_the_subscriptions(served: LocalChain) -> None:
    """Without /ws, `task submit --wait` derives a task's events from queryTask: they are the
    events the `task` subscription gives, in its order."""
    height = await served.client.block_number()
    receipt = await served.client.submit_task(
        DEV0, prompts="Hello", model_options='{"model":"demo"}', target_count=2
    )
    subscribed = []
    stream = served.client.subscribe("task", taskHash=receipt.task_hash, fromHeight=height)
    async with contextlib.aclosing(stream):
        async with asyncio.timeout(WAIT):
            async for event in stream:
                subscribed.append(event)
                if event["event"] == "settled":
                    break
    assert task_events(await served.client.query_task(receipt.task_hash)) == subscribed


async def test_the_terminal_shows_the_settlement(served: LocalChain) -> None:
    receipt = await served.client.submit_task(
        DEV0, prompts="Hello", model_options='{"model":"demo"}', target_count=2
    )
    task = await served.client.wait_for_task(receipt.task_hash, timeout=WAIT)
    settlement = task["settlement"]
    console = Console(record=True, width=200, force_terminal=True)
    show_task(console, task)
    text = console.export_text()
    rows = [line for line in text.splitlines() if line.startswith("│ 0x")]
    for payout in settlement["payouts"]:
        amount = render.aegis(payout["amount"])
        assert any(
            payout["address"] in row and f"paid: {payout['role']}" in row and amount in row
            for row in rows
        ), (payout, text)
    assert any(task["sender"] in row and "refund" in row for row in rows), text
    assert f"settlement at block {settlement['height']}" in text
    assert len(settlement["payouts"]) >= 2 + 4  # two results, each judged by two nodes


def test_amounts_are_shown_exactly_in_aegis() -> None:
    assert render.aegis("1500000000000000") == "0.0015"
    assert render.aegis(2000 * 10**18) == "2000"
    assert render.aegis("1") == "0.000000000000000001"
    assert render.aegis("0") == "0"


def test_a_slash_is_a_negative_row() -> None:
    task = {
        "sender": DEV0.address,
        "settlement": {
            "height": 9,
            "fee": "3",
            "networkReward": "0",
            "slashed": [{"address": NODES[0].address, "amount": "10", "reason": "result"}],
            "payouts": [{"address": NODES[1].address, "amount": "13", "role": "verify", "rank": 1}],
            "refund": "0",
            "burned": "0",
        },
    }
    rows = render.settlement_rows(task)
    assert (NODES[0].address, "slashed: result", "", "-0.00000000000000001") in rows
    assert (NODES[1].address, "paid: verify", "1", "0.000000000000000013") in rows


def test_a_rejected_result_opens_its_slot_again() -> None:
    """PROTOCOL 4.3: a rejected result frees its slot, so a completed task is processing
    again; a block shows the status it ends with."""
    entry = {"verifications": [], "result": "x", "rank": 1}
    task = {
        "createdHeight": 4,
        "targetCount": 1,
        "finishedHeight": 9,
        "status": "verified",
        "executionInfo": [
            {
                **entry,
                "resourceNode": NODES[0].address,
                "height": 5,
                "status": 3,
                "decidedHeight": 7,
            },
            {
                **entry,
                "resourceNode": NODES[1].address,
                "height": 7,
                "status": 2,
                "decidedHeight": 9,
            },
        ],
    }
    assert status_history(task) == [(4, "submitted"), (5, "completed"), (9, "verified")]
    task["executionInfo"][1]["height"] = 8
    assert status_history(task) == [
        (4, "submitted"),
        (5, "completed"),
        (7, "processing"),
        (8, "completed"),
        (9, "verified"),
    ]
    assert status_history({**task, "createdHeight": None}) == []
