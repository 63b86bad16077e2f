"""The plan of a network in namespaces (`testnet.netns`): the regions of `--latency wan` give
every pair of processes an RTT of 50-150 ms, addresses and names are unique and fit a device's
name, a run's prefix follows its data directory; the switch delays each packet by the two
hosts' delays at least, keeps a link's order, drops with the loss asked and drops what it
cannot route; and the launcher's options and genesis name the namespaces' addresses.

The switch runs here over SOCK_SEQPACKET socket pairs in place of its TUN devices (one packet
per message, both ways on one descriptor, as a TUN device's)."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import socket
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.protocol.genesis import parse_genesis
from resource_node.__main__ import parse_args as node_parse_args
from rpc.__main__ import parse_args as validator_parse_args
from testnet import netns
from testnet.launcher import network_genesis, parse_args, process_names, read_genesis
from testnet.network import Network
from tests.helpers import REPO

NAMES = [*(f"validator-{k}" for k in range(12)), *(f"node-{i}" for i in range(8)), "ao"]


def test_every_pair_of_wan_hosts_has_an_rtt_of_50_to_150_ms() -> None:
    plan = netns.make_plan(Path("/tmp/x"), NAMES, "wan")
    assert {host.region for host in plan.hosts} == {name for name, _ in netns.WAN_REGIONS}
    for a, b in itertools.combinations_with_replacement(plan.hosts, 2):
        floor = plan.rtt_floor_ms(a, b)
        assert floor >= 50 and floor + 2 * plan.jitter_ms <= 150, (a, b)


@given(st.integers(min_value=1, max_value=netns.MAX_HOSTS))
def test_addresses_and_names_are_unique_and_fit(count: int) -> None:
    names = [f"validator-{k}" for k in range(count)]
    plan = netns.make_plan(Path("/data/run"), names, "lan")
    addresses = [host.address for host in plan.hosts]
    assert len(set(addresses)) == count
    assert plan.gateway.address not in addresses
    assert all(address.startswith(plan.subnet + ".") for address in addresses)
    assert all(0 < int(a.rsplit(".", 1)[1]) < 255 for a in addresses)
    devices = [host.name for host in (*plan.hosts, plan.gateway)]
    assert len(set(devices)) == len(devices)
    assert all(len(name) <= 15 for name in devices)  # IFNAMSIZ - 1


def test_a_runs_prefix_follows_its_data_directory(tmp_path: Path) -> None:
    assert netns.run_prefix(tmp_path / "a") == netns.run_prefix(tmp_path / "a")
    assert netns.run_prefix(tmp_path / "a") != netns.run_prefix(tmp_path / "b")
    plan = netns.make_plan(tmp_path / "a", NAMES, "wan", loss=0.01)
    assert netns.Plan.from_json(plan.to_json()) == plan
    assert plan.host("node-3").name == f"{plan.prefix}-n3"
    with pytest.raises(KeyError):
        plan.host("node-99")


@pytest.mark.parametrize(
    ("latency", "loss", "message"),
    [("metro", 0.0, "latency: one of none, lan, wan"), ("wan", 1.0, "loss: a probability")],
)
def test_a_bad_plan_is_refused(latency: str, loss: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        netns.make_plan(Path("/tmp/x"), NAMES, latency, loss)


# The switch


def ipv4(source: str, target: str, payload: bytes) -> bytes:
    """An IPv4 header (only what the switch reads: version, addresses) and `payload`."""
    return (
        bytes([0x45])
        + bytes(11)
        + bytes(map(int, source.split(".")))
        + bytes(map(int, target.split(".")))
        + payload
    )


class Wires:
    """A switch over socket pairs: `ends[name]` is the host's side of its device."""

    def __init__(self, plan: netns.Plan, seed: int = 0) -> None:
        self.switch = netns.Switch(plan, random.Random(seed))
        self.ends: dict[str, socket.socket] = {}
        self._theirs: list[socket.socket] = []
        loop = asyncio.get_running_loop()
        for host in self.switch.hosts:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            ours.setblocking(False)
            theirs.setblocking(False)
            self.ends[host.name] = ours
            self._theirs.append(theirs)
            self.switch.fds[host.name] = theirs.fileno()
            loop.add_reader(theirs.fileno(), self.switch.readable, host)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._theirs:
            loop.remove_reader(sock.fileno())
        for sock in [*self.ends.values(), *self._theirs]:
            sock.close()

    async def send(self, name: str, packet: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.ends[name], packet)

    async def receive(self, name: str, count: int, timeout: float = 10.0) -> list[bytes]:
        loop = asyncio.get_running_loop()
        got: list[bytes] = []
        while len(got) < count:
            got.append(await asyncio.wait_for(loop.sock_recv(self.ends[name], 65536), timeout))
        return got


async def test_a_packet_waits_both_hosts_delays_and_a_link_keeps_its_order() -> None:
    plan = netns.make_plan(Path("/tmp/x"), ["validator-0", "validator-1"], "wan")
    a, b = plan.hosts
    wires = Wires(plan)
    loop = asyncio.get_running_loop()
    try:
        sent = [ipv4(a.address, b.address, struct.pack("!I", n)) for n in range(20)]
        started = loop.time()
        for packet in sent:
            await wires.send(a.name, packet)
        got = await wires.receive(b.name, len(sent))
        took_ms = (loop.time() - started) * 1000
    finally:
        wires.close()
    assert got == sent  # in order, jitter notwithstanding
    assert took_ms >= a.delay_ms + b.delay_ms


async def test_loss_drops_about_its_share_and_unroutable_packets_are_dropped() -> None:
    plan = netns.make_plan(Path("/tmp/x"), ["validator-0", "validator-1"], "none", loss=0.5)
    a, b = plan.hosts
    wires = Wires(plan, seed=7)
    try:
        await wires.send(a.name, b"\x60" + bytes(39))  # IPv6: not routed
        await wires.send(a.name, ipv4(a.address, "10.99.0.1", b"elsewhere"))
        await wires.send(a.name, ipv4(a.address, a.address, b"itself"))
        got = 0
        for n in range(400):
            await wires.send(a.name, ipv4(a.address, b.address, struct.pack("!I", n)))
            await asyncio.wait_for(_settled(wires.switch, n + 1), 10)
            if wires.switch.forwarded > got:
                got += len(await wires.receive(b.name, wires.switch.forwarded - got))
    finally:
        wires.close()
    assert wires.switch.forwarded == got
    assert 100 < got < 300  # of 400 at a loss of 0.5, seeded
    assert wires.switch.forwarded + wires.switch.dropped == 400


async def _settled(switch: netns.Switch, count: int) -> None:
    while switch.forwarded + switch.dropped < count:
        await asyncio.sleep(0)  # the switch's reader runs


# The launcher's options and genesis


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--latency", "wan"], "--latency and --loss are the links of --netns"),
        (["--loss", "1"], "--latency and --loss are the links of --netns"),
        (["--netns", "--loss", "60"], "--loss: a percentage between 0 and 50"),
        (["--netns", "--latency", "metro"], "invalid choice: 'metro'"),
    ],
)
def test_bad_link_options_exit_2_naming_them(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_args(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_netns_without_root_exits_2_saying_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as caught:
        parse_args(["--netns"])
    assert caught.value.code == 2
    assert "--netns needs root" in capsys.readouterr().err


def test_the_genesis_and_the_command_lines_name_the_namespaces(tmp_path: Path) -> None:
    args = parse_args(["--validators", "3", "--nodes", "2", "--no-ao"])
    plan = netns.make_plan(tmp_path, process_names(args), "wan")
    base = read_genesis(str(REPO / "genesis.json"))
    genesis = parse_genesis(network_genesis(base, 3, 8545, 2, {}, plan))
    hosts = [plan.host(f"validator-{k}").address for k in range(3)]
    assert [v.url for v in genesis.validators] == [
        f"http://{host}:{8545 + k}" for k, host in enumerate(hosts)
    ]
    assert [node.endpoint for node in genesis.resource_nodes] == [
        f"http://{plan.host(f'node-{i}').address}:{9100 + i}" for i in range(2)
    ]

    net = Network(genesis, tmp_path, [8545, 8546, 8547], placement=plan)
    assert net.urls == [v.url for v in genesis.validators]
    validator = validator_parse_args(net.validator_args(1)[2:])
    assert validator.host == hosts[1]
    assert validator.peer == [net.urls[0], net.urls[2]]
    assert validator.dev_control_from == [plan.gateway.address]  # the launcher's address
    node = node_parse_args(net.node_args(1)[2:])
    assert node.host == plan.host("node-1").address
    assert node.rpc == net.urls[1]
    assert net.prefix_of("node-1") == ["ip", "netns", "exec", plan.host("node-1").name]
    assert Network(genesis, tmp_path, [8545, 8546, 8547]).prefix_of("node-1") == []


def test_a_bad_dev_control_address_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        validator_parse_args(["--dev-control-from", "launcher"])
    assert caught.value.code == 2
    assert "--dev-control-from: expected an IP address, got 'launcher'" in capsys.readouterr().err
