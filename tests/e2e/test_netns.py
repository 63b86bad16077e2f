"""`scripts/testnet.py --netns --latency wan`: every validator and resource node in its own
network namespace on its own address, the links between them delayed as a WAN's
(`testnet.netns`). A task submitted from the root namespace to one validator through the
links is verified; a TCP connect between two namespaces takes at least the RTT the links are
configured to give (so the delay is really applied); a process binds its namespace's address,
not loopback; and on SIGINT every namespace of the run is gone. Under the same latency a
validator killed and restarted catches up while the others keep committing.

A project `--emit compose` writes runs the same way without a Docker engine: each service in
a namespace that resolves the services' names, its mounts' targets replaced by what they
mount; a task is verified and the nodes registered their service names.

The perturbation round and the Compose project are long runs (`INFERCHAIN_LONG=1`). Root
only, and TUN devices are needed: skipped, saying why, elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rpc.client import InferchainClient, RpcError, TransportError, Wallet
from testnet import compose, netns
from testnet.commands import AO_READY, RESOURCE_NODE_READY, VALIDATOR_READY
from testnet.launcher import emit_compose, parse_args
from testnet.process import Process, stop_all
from tests.e2e.launcher import Launcher
from tests.helpers import REPO, wait_until

pytestmark = pytest.mark.slow

START_TIMEOUT = 120.0
TASK_TIMEOUT = 120.0
CATCH_UP_TIMEOUT = 90.0
CONNECTS = 5  # TCP connects timed between two namespaces; the fastest is the RTT measured
VALIDATORS = 4
CLEANUP_TIMEOUT = 30.0
PERTURB_TIMEOUT = 300.0
LONG = os.environ.get("INFERCHAIN_LONG") == "1"
NODES = 2


def why_unusable() -> str | None:
    """Why namespaces with links cannot run here, or None."""
    reason = netns.unusable()
    if reason is not None:
        return reason
    try:
        fd = netns.open_tun("ictest-probe")
    except OSError as exc:
        return f"TUN devices cannot be made here: {exc}"
    os.close(fd)
    return None


skip_unless_usable = pytest.mark.skipif((reason := why_unusable()) is not None, reason=str(reason))

# launch(data_dir, *args) -> a started Launcher
Launch = Callable[..., Launcher]


@pytest.fixture
def launch() -> Iterator[Launch]:
    """Every launcher started through it, the processes it started and its namespaces are
    gone after the test, pass or fail."""
    started: list[Launcher] = []

    def start(data_dir: Path, *args: str) -> Launcher:
        launcher = Launcher(data_dir, "--netns", *args)
        started.append(launcher)
        return launcher

    yield start
    for launcher in started:
        launcher.kill_all()
        prefix, _ = netns.run_prefix(launcher.data_dir)
        deadline = time.monotonic() + CLEANUP_TIMEOUT
        # the processes killed may take a moment to be gone from their namespaces
        while netns.delete_namespaces(prefix) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert netns.namespaces_of(prefix) == [], "a namespace of the run is left"


def plan_of(data_dir: Path) -> netns.Plan:
    return netns.Plan.from_json((data_dir / "netns.json").read_text(encoding="utf-8"))


def urls_of(data_dir: Path) -> list[str]:
    genesis = json.loads((data_dir / "genesis.json").read_text(encoding="utf-8"))
    return [validator["url"] for validator in genesis["validators"]]


def probe_from(host: netns.Host, address: str, port: int) -> subprocess.CompletedProcess[str]:
    """`python -m testnet.netns --probe` in `host`'s namespace: CONNECTS TCP connects."""
    command = [sys.executable, "-m", "testnet.netns", "--probe", f"{address}:{port}"]
    return subprocess.run(
        [*netns.exec_prefix(host), *command, "--count", str(CONNECTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )


@skip_unless_usable
async def test_a_network_in_namespaces_verifies_a_task_under_wan_latency(
    launch: Launch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "net"
    launcher = launch(
        data_dir,
        *("--latency", "wan", "--validators", str(VALIDATORS), "--nodes", str(NODES)),
        *("--no-ao", "--no-demo", "--fresh"),
    )
    launcher.wait_for_line(f"nodes {NODES}/{NODES}", START_TIMEOUT)
    plan = plan_of(data_dir)
    urls = urls_of(data_dir)
    addresses = [plan.host(f"validator-{k}").address for k in range(VALIDATORS)]
    assert [url.split("//")[1].split(":")[0] for url in urls] == addresses
    assert not any("127.0.0.1" in url for url in urls)

    # From the root namespace, through the links, to the last validator.
    async with InferchainClient(urls[-1]) as client:
        receipt = await client.submit_task(
            Wallet.dev(1),
            prompts='{"prompt":"Hello across regions"}',
            model_options=json.dumps({"model": "demo", "max_tokens": 8}),
            target_count=1,
        )
        task = await client.wait_for_task(receipt.task_hash, timeout=TASK_TIMEOUT)
    assert task["status"] == "verified", task

    # The first and the last validator sit in the nearest and the farthest region.
    first, last = plan.host("validator-0"), plan.host(f"validator-{VALIDATORS - 1}")
    floor = plan.rtt_floor_ms(first, last)
    assert floor >= 50
    port = int(urls[-1].rsplit(":", 1)[1])
    measured = probe_from(first, last.address, port)
    assert measured.returncode == 0, measured.stderr
    rtt = float(measured.stdout.split()[1])  # "min 99.2 ms  median ..."
    assert rtt >= floor, f"a connect took {rtt} ms, the links give at least {floor} ms"
    loopback = probe_from(last, "127.0.0.1", port)
    assert loopback.returncode == 1, "the validator should bind its namespace's address only"
    assert "cannot connect to 127.0.0.1" in loopback.stderr

    assert sorted(netns.namespaces_of(plan.prefix)) == sorted(h.name for h in plan.hosts)
    code = launcher.interrupt()
    assert code == 0, launcher.output
    assert launcher.output.rstrip().endswith("stopped"), launcher.output
    assert netns.namespaces_of(plan.prefix) == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    assert plan.prefix not in links.stdout


async def height_of(url: str) -> int | None:
    async with InferchainClient(url, timeout=5.0) as client:
        try:
            return int((await client.health())["height"])
        except (TransportError, RpcError):  # it does not answer (yet)
            return None


@skip_unless_usable
async def test_a_validator_killed_under_wan_latency_restarts_and_catches_up(
    launch: Launch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "net"
    launcher = launch(
        data_dir,
        *("--latency", "wan", "--validators", str(VALIDATORS), "--nodes", str(NODES)),
        *("--no-ao", "--no-demo", "--fresh", "--restart"),
    )
    launcher.wait_for_line(f"nodes {NODES}/{NODES}", START_TIMEOUT)
    urls = urls_of(data_dir)
    victim = 2
    pids = json.loads((data_dir / "launcher.json").read_text(encoding="utf-8"))["processes"]
    os.kill(pids[f"validator {victim}"], signal.SIGKILL)
    launcher.wait_for_line(f"validator {victim} restarted", CATCH_UP_TIMEOUT)

    async def height_0() -> int | None:
        return await height_of(urls[0])

    at_restart = await wait_until(height_0, "validator 0 answers", CATCH_UP_TIMEOUT)

    async def committed_on() -> bool:
        height = await height_of(urls[0])
        return height is not None and height >= at_restart + 3

    async def caught_up() -> bool:
        height = await height_of(urls[victim])
        return height is not None and height >= at_restart + 3

    await wait_until(committed_on, "the network commits 3 more blocks", CATCH_UP_TIMEOUT)
    await wait_until(caught_up, f"validator {victim} catches up", CATCH_UP_TIMEOUT)
    assert launcher.interrupt() == 0, launcher.output
    assert netns.namespaces_of(plan_of(data_dir).prefix) == []


@pytest.mark.long
@pytest.mark.skipif(
    not LONG, reason="a round of every perturbation under WAN latency: INFERCHAIN_LONG=1"
)
@skip_unless_usable
async def test_every_perturbation_recovers_under_wan_latency(
    launch: Launch, tmp_path: Path
) -> None:
    """The launcher's `--perturb` round (pause, disconnect, split, slow links, restart,
    foreign genesis, a resource node killed) with every link at 52-146 ms RTT."""
    launcher = launch(
        tmp_path / "net",
        *("--latency", "wan", "--validators", str(VALIDATORS), "--nodes", str(NODES)),
        *("--no-ao", "--fresh", "--perturb"),
    )
    launcher.wait_for_line("perturbation round 2", PERTURB_TIMEOUT)
    first = launcher.output.split("perturbation round 1")[1].split("perturbation round 2")[0]
    outcomes = [line for line in first.splitlines() if line.startswith("  ")]
    assert len(outcomes) == 7, first
    assert all(" recovered " in line for line in outcomes), first
    assert launcher.interrupt() == 0, launcher.output


# An emitted Compose project, run without an engine: each service in a namespace whose
# /etc/hosts (ip netns exec mounts /etc/netns/NS/hosts there) resolves the services' names,
# each mount's target in its command replaced by the file or directory it mounts.

NETNS_ETC = Path("/etc/netns")
READY = {"rpc": VALIDATOR_READY, "resource_node": RESOURCE_NODE_READY, "ao": AO_READY}


def outside_containers(service: dict[str, Any], project: Path, volumes: Path) -> list[str]:
    """The service's command (without `python`) with every mount's target replaced by what
    it mounts: a file of the project, or the volume's directory under `volumes`."""
    mounts = {
        mount["target"]: str(
            project / mount["source"] if mount["type"] == "bind" else volumes / mount["source"]
        )
        for mount in service["volumes"]
    }
    args = []
    for arg in service["command"][1:]:
        for target in sorted(mounts, key=len, reverse=True):
            if arg == target or arg.startswith(target + "/"):
                arg = mounts[target] + arg[len(target) :]
                break
        args.append(arg)
    return args


@pytest.fixture
def project_run(tmp_path: Path) -> Iterator[list[Any]]:
    """[namespaces, processes, hosts dirs] of the test, all gone after it, pass or fail."""
    held: list[Any] = [None, [], []]
    yield held
    stop_all(held[1], 20.0)
    if held[0] is not None:
        held[0].down()
    for directory in held[2]:
        shutil.rmtree(directory, ignore_errors=True)
    with contextlib.suppress(OSError):
        NETNS_ETC.rmdir()  # only when nothing else is there


@pytest.mark.long
@pytest.mark.skipif(not LONG, reason="an emitted project run in namespaces: INFERCHAIN_LONG=1")
@skip_unless_usable
async def test_an_emitted_compose_project_runs_by_service_name(
    tmp_path: Path, project_run: list[Any]
) -> None:
    project = tmp_path / "project"
    args = parse_args(["--emit", "compose", str(project), "--validators", "2", "--nodes", "2"])
    assert emit_compose(args, project) == 0
    document = json.loads((project / compose.COMPOSE_FILE).read_text(encoding="utf-8"))
    services: dict[str, Any] = document["services"]
    run = tmp_path / "run"
    run.mkdir()
    plan = netns.make_plan(run, list(services), "none")
    lines = ["127.0.0.1 localhost", *(f"{plan.host(n).address} {n}" for n in services)]
    for host in plan.hosts:
        directory = NETNS_ETC / host.name
        project_run[2].append(directory)
        directory.mkdir(parents=True)
        (directory / "hosts").write_text("\n".join(lines) + "\n", encoding="ascii")
    project_run[0] = netns.Namespaces(plan, run)
    project_run[0].up()
    processes = []
    for name, service in services.items():
        command = outside_containers(service, project, run / "volumes")
        process = Process(
            name,
            command,
            run / f"{name}.log",
            ready_prefix=READY[command[1]],
            prefix=plan.command_prefix(name),
        )
        project_run[1].append(process)
        process.spawn()
        processes.append(process)
    for process in processes:
        await asyncio.to_thread(process.wait_ready)

    url = f"http://{plan.host('validator-0').address}:8545"
    async with InferchainClient(url) as client:
        receipt = await client.submit_task(
            Wallet.dev(1),
            prompts='{"prompt":"Hello by name"}',
            model_options=json.dumps({"model": "demo", "max_tokens": 8}),
            target_count=1,
        )
        task = await client.wait_for_task(receipt.task_hash, timeout=TASK_TIMEOUT)
        assert task["status"] == "verified", task
        nodes = await client.get_resource_nodes()
    endpoints = sorted(str(node["endpoint"]) for node in nodes)
    assert endpoints == ["http://node-0:9100", "http://node-1:9101"]
