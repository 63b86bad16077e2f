"""`python -m resource_node`: option checks in this process, and the process itself (ready
lines, status server, clean stop on SIGTERM, the crash fault's exit status)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from chain.protocol.genesis import Params, dev_genesis, parse_genesis
from resource_node.__main__ import build_setup, main, parse_args
from resource_node.backends.deterministic import DeterministicBackend
from resource_node.backends.faults import Faults
from rpc.client import Wallet
from tests.helpers import LocalChain

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_dev_index_is_account_200_plus_i() -> None:
    setup = build_setup(parse_args(["--rpc", "http://127.0.0.1:1", "--dev-index", "1"]))
    assert setup.wallet.address == Wallet.dev(201).address
    assert isinstance(setup.backend, DeterministicBackend)
    assert setup.faults == Faults()
    assert setup.config.models == ("*",)


def test_options_reach_the_node(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("0x" + Wallet.dev(5).private_key.hex() + "\n")
    setup = build_setup(
        parse_args(
            [
                "--rpc",
                "http://127.0.0.1:1",
                "--key",
                str(key),
                "--models",
                "llama, mistral",
                "--backend-opt",
                "tokens_per_second=50",
                "--fault",
                "wrong:0.5",
                "--fault",
                "lazy,slow:1",
                "--concurrency",
                "2",
                "--poll-interval",
                "0.5",
                "--state-dir",
                str(tmp_path / "state"),
            ]
        )
    )
    assert setup.wallet.address == Wallet.dev(5).address
    assert setup.config.models == ("llama", "mistral")
    assert (setup.config.concurrency, setup.config.poll_interval) == (2, 0.5)
    assert setup.config.state_dir == tmp_path / "state"
    assert setup.faults == Faults(wrong=0.5, lazy=True, slow=1.0)
    assert isinstance(setup.backend, DeterministicBackend)
    assert setup.backend.tokens_per_second == 50


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dev-index", "0", "--fault", "byzantine"], "unknown fault"),
        (["--dev-index", "0", "--models", " , "], "--models"),
        (["--dev-index", "0", "--concurrency", "0"], "--concurrency"),
        (["--dev-index", "0", "--poll-interval", "0"], "--poll-interval"),
        (["--dev-index", "0", "--backend-opt", "nope"], "key=value"),
        (["--dev-index", "0", "--backend", "openai"], "base_url"),
        (["--dev-index", "-1"], "--dev-index"),
        (["--key", "/nonexistent/key"], "--key"),
        (["--dev-index", "0", "--genesis", "/nonexistent/genesis.json"], "--genesis"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    extra: list[str], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["--rpc", "http://127.0.0.1:1", *extra]) == 2
    assert message in caplog.text


def test_a_key_file_without_a_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = tmp_path / "key"
    key.write_text("not hex")
    assert main(["--rpc", "http://127.0.0.1:1", "--key", str(key)]) == 2
    assert f"--key {key}" in caplog.text


# The process


class NodeProcess:
    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.address = ""
        self.url = ""

    async def read_ready(self) -> None:
        assert self.proc.stdout is not None
        first = await asyncio.wait_for(self.proc.stdout.readline(), START_TIMEOUT)
        second = await asyncio.wait_for(self.proc.stdout.readline(), START_TIMEOUT)
        lines = (first.decode(), second.decode())
        assert lines[0].startswith("Resource node ") and lines[0].endswith(" ready\n"), (
            lines,
            self.log_path.read_text(),
        )
        assert lines[1].startswith("Serving on http://127.0.0.1:"), lines
        self.address = lines[0].split()[2]
        self.url = lines[1].removeprefix("Serving on ").strip()


StartNode = Callable[..., Awaitable[NodeProcess]]


@pytest.fixture
async def start_node(tmp_path: Path) -> AsyncIterator[StartNode]:
    started: list[NodeProcess] = []

    async def start(*args: str) -> NodeProcess:
        log_path = tmp_path / f"node-{len(started)}.log"
        with log_path.open("w") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "resource_node",
                *args,
                cwd=REPO,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        node = NodeProcess(proc, log_path)
        started.append(node)
        await node.read_ready()
        return node

    yield start
    for node in started:
        if node.proc.returncode is None:
            node.proc.kill()
            await node.proc.wait()


async def test_process_serves_status_and_stops_on_sigterm(
    start_node: StartNode, tmp_path: Path
) -> None:
    node = await start_node(
        "--rpc",
        f"http://127.0.0.1:{closed_port()}",  # no validator: the node waits for one
        "--dev-index",
        "2",
        "--state-dir",
        str(tmp_path / "state"),
        "--fault",
        "lazy",
    )
    assert node.address == Wallet.dev(202).address
    async with aiohttp.ClientSession() as http:
        async with http.get(node.url + "/health") as resp:
            assert await resp.json() == {"status": "ok"}
        async with http.get(node.url + "/status") as resp:
            info = await resp.json()
        async with http.get(node.url + "/info") as resp:
            infernet = await resp.json()
    assert info["address"] == node.address
    assert info["faults"] == ["lazy"]
    assert info["backend"] == "deterministic"
    assert infernet["containers"] == [
        {
            "id": "deterministic",
            "external": True,
            "image": "inferchain/deterministic:v1",
            "description": "the node's deterministic backend",
        }
    ]
    assert infernet["pending"] == {"offchain": 0, "onchain": 0}
    node.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(node.proc.wait(), START_TIMEOUT) == 0


async def test_crash_fault_exits_with_status_3(start_node: StartNode, chain: LocalChain) -> None:
    receipt = await chain.client.submit_task(
        Wallet.dev(0), prompts="Hello", model_options='{"model":"demo"}', target_count=1
    )
    await chain.client.wait_for_tx(receipt.tx_hash, timeout=START_TIMEOUT)
    node = await start_node("--rpc", chain.url, "--dev-index", "0", "--fault", "crash:1")
    assert await asyncio.wait_for(node.proc.wait(), START_TIMEOUT) == 3
    # The result was accepted into the mempool before the exit; it is committed in a later block.
    task = await chain.client.wait_for_task(
        receipt.task_hash, timeout=START_TIMEOUT, statuses=("completed", "verified")
    )
    assert [entry["resourceNode"] for entry in task["executionInfo"]] == [node.address]
    assert "fault crash:1" in node.log_path.read_text()


async def test_sigterm_at_the_ready_line_stops_cleanly(
    start_node: StartNode, tmp_path: Path
) -> None:
    """The signal handlers are in place before the ready lines are printed: a SIGTERM sent
    as soon as they are read is a clean stop (exit code 0), not a death by signal (-15)."""
    for attempt in range(2):
        node = await start_node(
            "--rpc",
            f"http://127.0.0.1:{closed_port()}",
            "--dev-index",
            "1",
            "--state-dir",
            str(tmp_path / f"state-{attempt}"),
        )
        node.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(node.proc.wait(), START_TIMEOUT) == 0


def test_the_genesis_gives_the_params(tmp_path: Path) -> None:
    genesis = dev_genesis(params=Params(canary_rate_bps=0, reveal_deadline_blocks=7))
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(genesis))
    args = ["--rpc", "http://127.0.0.1:1", "--dev-index", "0"]
    setup = build_setup(parse_args([*args, "--genesis", str(path)]))
    assert (setup.config.params.canary_rate_bps, setup.config.params.reveal_deadline_blocks) == (
        0,
        7,
    )
    assert setup.config.genesis_hash == "0x" + parse_genesis(genesis).hash.hex()
    default = build_setup(parse_args(args))  # without it: the protocol's defaults
    assert (default.config.params, default.config.genesis_hash) == (Params(), None)


def test_a_genesis_that_is_not_one_exits_2(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "genesis.json"
    path.write_text('{"chainId": "x"}')
    assert main(["--rpc", "http://127.0.0.1:1", "--dev-index", "0", "--genesis", str(path)]) == 2
    assert "--genesis" in caplog.text
