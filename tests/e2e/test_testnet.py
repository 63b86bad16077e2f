"""`scripts/testnet.py` (`make testnet`) as a real process: it starts its validators and resource
nodes, the demo task ends verified, and on SIGINT it stops every process it started, exits 0
and says "stopped". A second launcher where a network runs (its data directory, its ports, a
validator still holding a ledger) is refused at once and starts and submits nothing. A
validator killed with SIGKILL is reported with its exit code and log tail while the others
go on committing; with too few the launcher says blocks cannot commit, with none it exits;
with `--restart` the killed validator comes back. With `--models` a task goes only to the
nodes that serve its model.

A result is verified by another resource node than the one that computed it, so every network
here runs at least two resource nodes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.protocol.genesis import RESOURCE_NODE_KEY_OFFSET
from rpc.client import InferchainClient, Wallet
from testnet.process import Exited, log_tail, run_to_exit
from tests.e2e.launcher import SCRIPT, Launcher, free_ports, pids_using
from tests.helpers import ValidatorProcess, make_genesis, write_genesis

pytestmark = pytest.mark.slow

DEMO_TIMEOUT = 180.0
STOP_TIMEOUT = 60.0
REFUSAL_TIMEOUT = 30.0
BLOCK_TIMEOUT = 60.0
DEMO_VERIFIED = "verified at block"


# launch(data_dir, *args) -> a started Launcher (the `launch` fixture)
Launch = Callable[..., Launcher]


@pytest.fixture
def launch() -> Iterator[Launch]:
    """Every launcher started through it, and every process it started, is gone after the
    test, pass or fail."""
    started: list[Launcher] = []

    def start(data_dir: Path, *args: str) -> Launcher:
        launcher = Launcher(data_dir, *args)
        started.append(launcher)
        return launcher

    yield start
    for launcher in started:
        launcher.kill_all()


def run_network(launch: Launch, data_dir: Path, validators: int, nodes: int) -> str:
    """Start the network, wait for the demo result and all validators in the status line,
    interrupt it and check it stopped everything; its output."""
    port = free_ports(validators)
    node_port = free_ports(nodes)
    launcher = launch(
        data_dir,
        *("--validators", str(validators), "--nodes", str(nodes), "--fresh"),
        *("--block-time", "200", "--port", str(port), "--node-port", str(node_port)),
    )
    launcher.wait_for_line(DEMO_VERIFIED, DEMO_TIMEOUT)
    status = launcher.wait_for_line(f"validators {validators}/{validators}", DEMO_TIMEOUT)
    assert f"nodes {nodes}/{nodes}" in status
    assert pids_using(data_dir), "the validators and resource nodes should be running"
    code = launcher.interrupt()
    assert code == 0, launcher.output
    assert launcher.output.rstrip().endswith("stopped"), launcher.output
    assert pids_using(data_dir) == [], launcher.output
    for k in range(validators):
        assert f"http://127.0.0.1:{port + k}" in launcher.output
    for i in range(nodes):  # each resource node's URL: its Infernet and Ocean APIs
        assert f"HTTP http://127.0.0.1:{node_port + i} (Infernet" in launcher.output
    assert re.search(r"AO unit +HTTP http://127\.0\.0\.1:\d+ \(processes", launcher.output)
    genesis = json.loads((data_dir / "genesis.json").read_text())
    urls = [validator["url"] for validator in genesis["validators"]]
    assert urls == [f"http://127.0.0.1:{port + k}" for k in range(validators)]
    return launcher.output


def test_one_validator_runs_the_demo_and_stops_cleanly(launch: Launch, tmp_path: Path) -> None:
    run_network(launch, tmp_path / "testnet", validators=1, nodes=2)


def test_four_validators_run_the_demo_and_stop_cleanly(launch: Launch, tmp_path: Path) -> None:
    output = run_network(launch, tmp_path / "testnet", validators=4, nodes=3)
    assert "round " in output


def refused(data_dir: Path, *args: str) -> Exited:
    """Run a launcher that must refuse to start; its output."""
    exited = run_to_exit([str(SCRIPT), "--data-dir", str(data_dir), *args], REFUSAL_TIMEOUT)
    assert not exited.timed_out, f"the second launcher kept running: {exited}"
    assert exited.returncode == 2, exited
    assert "Traceback" not in exited.stderr, exited.stderr
    assert "demo task" not in exited.stdout, exited.stdout
    return exited


def launcher_pids(data_dir: Path) -> dict[str, int]:
    """The pids the running launcher recorded: its own ("launcher") and its processes'."""
    info = json.loads((data_dir / "launcher.json").read_text())
    return {"launcher": info["launcher"], **info["processes"]}


async def test_a_second_launcher_is_refused_and_submits_nothing(
    launch: Launch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "testnet"
    port = free_ports(1)
    args = ("--validators", "1", "--nodes", "2", "--block-time", "200", "--port", str(port))
    first = launch(data_dir, *args, "--fresh")
    first.wait_for_line(DEMO_VERIFIED, DEMO_TIMEOUT)
    url = f"http://127.0.0.1:{port}"
    pids = launcher_pids(data_dir)
    async with InferchainClient(url) as client:
        before = await client.task_stats()
    assert before["total"] == 1

    same = refused(data_dir, *args)
    assert f"a testnet is already running in {data_dir}" in same.stderr
    assert f"kill {pids['launcher']}" in same.stderr
    assert f"validator 0 pid {pids['validator 0']}" in same.stderr
    assert url in same.stderr

    # Another data directory on the same ports: the ports are taken, by a network.
    beside = refused(tmp_path / "other", *args)
    assert f"port {port} is already in use" in beside.stderr
    assert f"a network is already running: {url} answers as chain 7331" in beside.stderr

    # --fresh on the running network's directory deletes nothing.
    other_port = free_ports(1)
    fresh = refused(data_dir, "--validators", "1", "--port", str(other_port), "--fresh")
    assert f"a testnet is already running in {data_dir}" in fresh.stderr
    assert (data_dir / "validator-0" / "CURRENT").exists()

    async with InferchainClient(url) as client:
        assert (await client.task_stats())["total"] == before["total"]
    assert first.proc.poll() is None, first.output
    assert launcher_pids(data_dir) == pids


async def test_a_validator_left_running_on_the_data_dir_is_named(tmp_path: Path) -> None:
    data_dir = tmp_path / "testnet"
    genesis_path = write_genesis(tmp_path / "genesis.json", make_genesis())
    orphan = ValidatorProcess(genesis_path, data_dir / "validator-0")
    try:
        orphan.start()
        exited = refused(data_dir, "--validators", "1", "--port", str(free_ports(1)), "--fresh")
        assert f"pid {orphan.pid} holds the LevelDB LOCK of {data_dir / 'validator-0'}" in (
            exited.stderr
        )
        assert f"kill {orphan.pid}" in exited.stderr
        assert orphan.running()
        assert (data_dir / "validator-0" / "CURRENT").exists()
    finally:
        orphan.close()


def test_a_port_taken_by_another_program_is_named(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        exited = refused(tmp_path / "testnet", "--validators", "1", "--port", str(port))
    assert f"port {port} is already in use on 127.0.0.1" in exited.stderr
    assert "does not answer as a validator: another program listens there" in exited.stderr
    assert not (tmp_path / "testnet" / "genesis.json").exists()
    assert not (tmp_path / "testnet" / "launcher.json").exists()


async def wait_for_height_above(url: str, height: int) -> int:
    async with InferchainClient(url) as client:
        return await client.wait_for_block(height + 1, timeout=BLOCK_TIMEOUT)


def start_four(launch: Launch, data_dir: Path, *extra: str) -> tuple[Launcher, int]:
    port = free_ports(4)
    launcher = launch(
        data_dir,
        *("--validators", "4", "--nodes", "0", "--no-demo", "--fresh"),
        *("--block-time", "200", "--port", str(port), *extra),
    )
    launcher.wait_for_line("validators 4/4", DEMO_TIMEOUT)
    return launcher, port


async def test_a_killed_validator_is_reported_and_the_others_go_on(
    launch: Launch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "testnet"
    launcher, port = start_four(launch, data_dir)
    pids = launcher_pids(data_dir)
    # The banner says which pid to kill.
    assert f"RPC http://127.0.0.1:{port + 3}  pid {pids['validator 3']}" in launcher.output

    os.kill(pids["validator 3"], signal.SIGKILL)
    exit_line = launcher.wait_for_line("validator 3 (pid", DEMO_TIMEOUT)
    assert f"(pid {pids['validator 3']}) was killed by SIGKILL (exit code -9)" in exit_line
    assert str(data_dir / "validator-3.log") in launcher.wait_for_line("last lines", DEMO_TIMEOUT)
    launcher.wait_for_line("validators 3/4", DEMO_TIMEOUT)
    url = f"http://127.0.0.1:{port}"
    async with InferchainClient(url) as client:
        height = await client.block_number()
    # Three of four hold more than 2/3 of the power: blocks still commit.
    await wait_for_height_above(url, height)
    assert launcher.proc.poll() is None

    os.kill(pids["validator 2"], signal.SIGKILL)
    launcher.wait_for_line("validator 2 (pid", DEMO_TIMEOUT)
    halted = launcher.wait_for_line("cannot make blocks", DEMO_TIMEOUT)
    assert "validators 2/4 run, holding 50% of the voting power" in halted
    assert "NO QUORUM" in launcher.wait_for_line("validators 2/4", DEMO_TIMEOUT)
    assert launcher.proc.poll() is None

    os.kill(pids["validator 1"], signal.SIGKILL)
    os.kill(pids["validator 0"], signal.SIGKILL)
    launcher.wait_for_line("no validator runs any more", DEMO_TIMEOUT)
    rest, _ = launcher.proc.communicate(timeout=STOP_TIMEOUT)
    launcher.output += rest.decode(errors="replace")
    assert launcher.proc.returncode == 1, launcher.output
    assert pids_using(data_dir) == [], launcher.output
    assert not (data_dir / "launcher.json").exists()


async def test_restart_brings_a_killed_validator_back(launch: Launch, tmp_path: Path) -> None:
    data_dir = tmp_path / "testnet"
    launcher, port = start_four(launch, data_dir, "--restart", "--nodes", "2")
    killed = launcher_pids(data_dir)["validator 3"]

    os.kill(killed, signal.SIGKILL)
    assert "was killed by SIGKILL" in launcher.wait_for_line("validator 3 (pid", DEMO_TIMEOUT)
    assert "(restart 1)" in launcher.wait_for_line("restarting validator 3 in 1 s", DEMO_TIMEOUT)
    back = launcher.wait_for_line("validator 3 restarted", DEMO_TIMEOUT)
    launcher.wait_for_line("validators 4/4", DEMO_TIMEOUT)
    new_pid = launcher_pids(data_dir)["validator 3"]
    assert new_pid != killed and f"(pid {new_pid})" in back
    # The restarted validator follows the chain again.
    async with InferchainClient(f"http://127.0.0.1:{port}") as client:
        height = await client.block_number()
    await wait_for_height_above(f"http://127.0.0.1:{port + 3}", height)

    # A resource node likewise.
    node = launcher_pids(data_dir)["resource node 1"]
    os.kill(node, signal.SIGKILL)
    assert f"(pid {node}) was killed by SIGKILL" in launcher.wait_for_line(
        "resource node 1 (pid", DEMO_TIMEOUT
    )
    launcher.wait_for_line("resource node 1 restarted", DEMO_TIMEOUT)
    assert "validators 4/4" in launcher.wait_for_line("nodes 2/2", DEMO_TIMEOUT)
    assert launcher_pids(data_dir)["resource node 1"] != node
    assert launcher.interrupt() == 0, launcher.output


async def test_tasks_go_to_the_nodes_that_serve_their_model(launch: Launch, tmp_path: Path) -> None:
    """`--models "demo;llama"`: node 0 serves demo, node 1 llama, in the genesis and in the
    nodes alike. A llama task is computed by node 1 alone (node 0 may not take it, and no
    other node may verify it: unverified at its verify deadline, neither paid nor slashed);
    a task for a model no node serves gets no result and fails at its compute deadline,
    its whole fee refunded."""
    data_dir = tmp_path / "testnet"
    port = free_ports(1)
    launcher = launch(
        data_dir,
        *("--validators", "1", "--nodes", "2", "--models", "demo;llama", "--no-ao"),
        *("--no-demo", "--fresh", "--block-time", "100", "--port", str(port)),
    )
    launcher.wait_for_line("nodes 2/2", DEMO_TIMEOUT)
    genesis = json.loads((data_dir / "genesis.json").read_text())
    assert [node["models"] for node in genesis["resourceNodes"]] == ["demo", "llama"]
    node_1 = Wallet.dev(RESOURCE_NODE_KEY_OFFSET + 1).address
    assert genesis["resourceNodes"][1]["address"] == node_1

    async with InferchainClient(f"http://127.0.0.1:{port}") as client:
        params = await client.get_params()
        llama, nobody = [
            await client.submit_task(
                Wallet.dev(0),
                prompts='{"prompt":"Hello"}',
                model_options=json.dumps({"model": model, "max_tokens": 8}),
            )
            for model in ("llama", "mistral")
        ]
        unserved = await client.wait_for_task(nobody.task_hash, timeout=DEMO_TIMEOUT)
        served = await client.wait_for_task(llama.task_hash, timeout=DEMO_TIMEOUT)

    assert [entry["resourceNode"] for entry in served["executionInfo"]] == [node_1]
    [entry] = served["executionInfo"]
    assert entry["assignment"]["rounds"] == [[]]  # no other node serves llama
    assert entry["status"] == 4  # unverified
    assert served["status"] == "failed"
    assert served["settlement"]["refund"] == served["fee"]
    assert served["settlement"]["slashed"] == []

    assert unserved["status"] == "failed"
    assert unserved["executionInfo"] == []
    deadline = unserved["createdHeight"] + params.compute_deadline_blocks
    assert unserved["finishedHeight"] == deadline
    assert unserved["settlement"]["refund"] == unserved["fee"]
    assert unserved["settlement"]["payouts"] == []
    assert launcher.interrupt() == 0, launcher.output


LOG_LINE = st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=40)


@given(
    st.integers(min_value=0, max_value=40_000),
    st.lists(LOG_LINE, max_size=30),
    st.integers(min_value=1, max_value=10),
)
def test_the_log_tail_is_the_last_lines_written(long: int, lines: list[str], count: int) -> None:
    """What the launcher prints of an exited process's log: its last `count` non-empty lines,
    in order, as they were written (trailing blanks aside); a line cut by the 16 KiB window is
    left out, never shown in part."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "process.log"
        first = "x" * long
        data = "".join(f"{line}\n" for line in [first, *lines]).encode()
        path.write_bytes(data)
        whole = [first] if long and len(data) <= 16384 else []
        kept = whole + [line.rstrip() for line in lines if line.strip()]
        assert log_tail(path, count) == kept[-count:]
        assert log_tail(Path(directory) / "missing.log", count) == []
