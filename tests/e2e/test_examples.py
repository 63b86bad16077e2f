"""The dApp examples (`examples/python/dapp.py`, `examples/js/dapp.mjs`) against a real network:
a validator process and three resource nodes. Each submits a task, follows it over the
WebSocket and prints its settlement; it must exit 0, having printed every event of the task in
order, and the settlement it printed (in words and as JSON) must be what queryTask answers.
The JavaScript one also signs with ethers: the task on chain is the one it signed. A bad
option exits 2 and an unreachable validator 3, each saying why."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chain.protocol import crypto, wire
from chain.protocol.types import SubmitTask
from rpc.client import InferchainClient, Wallet
from testnet.process import Process
from tests.helpers import (
    REPO,
    ResourceNodeProcess,
    ValidatorProcess,
    make_genesis,
    node_for,
    write_genesis,
)

pytestmark = pytest.mark.slow

PYTHON_DAPP = REPO / "examples" / "python" / "dapp.py"
JS_DIR = REPO / "examples" / "js"
JS_DAPP = JS_DIR / "dapp.mjs"
RUN_TIMEOUT = 120.0
TASK_LINE = re.compile(r"^task (0x[0-9a-f]{64}) submitted by (0x[0-9a-fA-F]{40})$", re.M)
EVENT_LINE = re.compile(r"^block (\d+): (submitted|result|verdict|decided|settled)\b", re.M)
SETTLEMENT_JSON = re.compile(r"^settlement (\{.*\})$", re.M)


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A validator process (200 ms blocks) with three resource nodes, so that each result is
    verified by two others: the validator's URL."""
    root = tmp_path_factory.mktemp("examples")
    genesis_path = write_genesis(root / "genesis.json", make_genesis(block_time_ms=200))
    validator = ValidatorProcess(genesis_path, root / "validator")
    nodes: list[Process] = []
    try:
        url = validator.start()
        for i in range(3):
            nodes.append(
                ResourceNodeProcess(url, i, root / f"node-{i}", "--genesis", str(genesis_path))
            )
            nodes[-1].start()
        yield url
    finally:
        for node in nodes:
            node.close()
        validator.close()


def run(args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def check_run(done: subprocess.CompletedProcess[str], url: str) -> dict[str, Any]:
    """An example's run: exit 0, the task's events in order, the settlement as queryTask
    answers it; the task."""
    out = done.stdout
    assert done.returncode == 0, f"exit {done.returncode}\nstdout: {out}\nstderr: {done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    [(task_hash, sender)] = TASK_LINE.findall(out)
    assert sender == Wallet.dev(0).address
    async with InferchainClient(url) as client:
        task = await client.query_task(task_hash)
    assert task["status"] in ("verified", "failed")

    events = EVENT_LINE.findall(out)
    kinds = [kind for _, kind in events]
    assert kinds[0] == "submitted" and kinds[-1] == "settled", out
    assert kinds.count("result") == len(task["executionInfo"]) >= 1, out
    verdicts = sum(len(entry["verifications"]) for entry in task["executionInfo"])
    assert kinds.count("verdict") == verdicts >= 1, out
    heights = [int(height) for height, _ in events]
    assert heights == sorted(heights), out
    assert heights[0] == task["createdHeight"] and heights[-1] == task["finishedHeight"]

    settlement = task["settlement"]
    [printed] = SETTLEMENT_JSON.findall(out)
    assert json.loads(printed) == settlement
    assert (
        f"settlement at block {settlement['height']}: fee {settlement['fee']}, network reward "
        f"{settlement['networkReward']}, refund {settlement['refund']}, burned "
        f"{settlement['burned']}"
    ) in out
    for payout in settlement["payouts"]:
        assert (
            f"  paid {payout['address']} {payout['amount']} ({payout['role']}, rank "
            f"{payout['rank']})"
        ) in out
    for slash in settlement["slashed"]:
        assert f"  slashed {slash['address']} {slash['amount']} ({slash['reason']})" in out
    assert ("  nobody was paid" in out) == (not settlement["payouts"])
    assert ("  nobody was slashed" in out) == (not settlement["slashed"])
    if task["status"] == "verified":
        assert any(p["role"] == "compute" for p in settlement["payouts"]), settlement
    assert out.rstrip().endswith(
        f"verified: queryTask shows the same settlement (task {task['status']})"
    ), out
    return task


# Python


async def test_the_python_dapp_follows_its_task_to_the_settlement(network: str) -> None:
    await check_run(run([sys.executable, str(PYTHON_DAPP), "--rpc", network]), network)


def test_the_python_dapp_refuses_a_key_it_cannot_read(tmp_path: Path) -> None:
    missing = tmp_path / "missing.key"
    done = run([sys.executable, str(PYTHON_DAPP), "--key", str(missing)])
    assert done.returncode == 2, done
    assert f"--key {missing}: cannot read it" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_python_dapp_says_when_the_validator_does_not_answer() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    done = run([sys.executable, str(PYTHON_DAPP), "--rpc", url])
    assert done.returncode == 3, done
    assert url in done.stderr
    assert "Traceback" not in done.stderr


# JavaScript


def node() -> str:
    return node_for("the JavaScript dApp example", ("ethers", "ws"), JS_DIR)


async def test_the_js_dapp_signs_follows_and_shows_the_settlement(network: str) -> None:
    done = run([node(), str(JS_DAPP), "--rpc", network], cwd=JS_DIR)
    task = await check_run(done, network)
    # What it signed with ethers is the task on chain: the taskHash is its EIP-712 digest.
    async with InferchainClient(network) as client:
        chain_id = await client.chain_id()
    fields = ("sender", "nonce", "schema", "targetCount", "prompts", "modelOptions", "SID")
    message = wire.message_from_params(
        SubmitTask, {**{field: task[field] for field in fields}, "feeParams": task["feeParams"]}
    )
    assert wire.hex0x(crypto.digest(message, chain_id)) == task["taskHash"]
    assert json.loads(task["modelOptions"]) == {"model": "demo"}


def test_the_js_dapp_refuses_a_key_that_is_not_one(tmp_path: Path) -> None:
    key = tmp_path / "bad.key"
    key.write_text("not a key\n")
    done = run([node(), str(JS_DAPP), "--key", str(key)], cwd=JS_DIR)
    assert done.returncode == 2, done
    assert f"--key {key}: not a private key" in done.stderr


def test_the_js_dapp_says_when_the_validator_does_not_answer() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    done = run([node(), str(JS_DAPP), "--rpc", url], cwd=JS_DIR)
    assert done.returncode == 3, done
    assert url in done.stderr
