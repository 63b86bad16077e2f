"""`scripts/testnet.py --netns --latency wan`: every validator and resource node in its own
network namespace on its own address, the links between them delayed as a WAN's
(`testnet.netns`). A task submitted from the root namespace to one validator through the
links is verified; a TCP connect between two namespaces takes at least the RTT the links are
configured to give (so the delay is really applied); a process binds its namespace's address,
not loopback; and on SIGINT every namespace of the run is gone. Under the same latency a
validator killed and restarted catches up while the others keep committing.

Root only, and TUN devices are needed: skipped, saying why, elsewhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rpc.client import InferchainClient, RpcError, TransportError, Wallet
from testnet import netns
from tests.e2e.launcher import Launcher
from tests.helpers import wait_until

pytestmark = pytest.mark.slow

START_TIMEOUT = 120.0
TASK_TIMEOUT = 120.0
CATCH_UP_TIMEOUT = 90.0
CONNECTS = 5  # TCP connects timed between two namespaces; the fastest is the RTT measured
VALIDATORS = 4
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
        netns.delete_namespaces(prefix)


def plan_of(data_dir: Path) -> netns.Plan:
    return netns.Plan.from_json((data_dir / "netns.json").read_text(encoding="utf-8"))


def urls_of(data_dir: Path) -> list[str]:
    genesis = json.loads((data_dir / "genesis.json").read_text(encoding="utf-8"))
    return [validator["url"] for validator in genesis["validators"]]


PROBE = """
import socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
best = None
for _ in range(count):
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=10):
        took = (time.monotonic() - started) * 1000
    best = took if best is None else min(best, took)
try:
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    loopback = "open"
except OSError:
    loopback = "refused"
print(f"{best:.3f} {loopback}")
"""


def connect_from(host: netns.Host, address: str, port: int) -> tuple[float, str]:
    """From `host`'s namespace: the fastest of CONNECTS TCP connects to address:port, in ms,
    and whether `port` is open on that namespace's loopback."""
    done = subprocess.run(
        [*netns.exec_prefix(host), sys.executable, "-c", PROBE, address, str(port), str(CONNECTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    best, loopback = done.stdout.split()
    return float(best), loopback


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
    rtt, _ = connect_from(first, last.address, port)
    assert rtt >= floor, f"a connect took {rtt} ms, the links give at least {floor} ms"
    _, loopback = connect_from(last, last.address, port)
    assert loopback == "refused", "the validator should bind its namespace's address only"

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
