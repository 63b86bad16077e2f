"""A network beyond loopback on one machine: every process in its own Linux network namespace
with its own address on a private /24, the links between them delayed and lossy as a WAN's
(`scripts/testnet.py --netns --latency wan`, root only).

The links. `tc netem` is the usual tool, but a kernel built without `sch_netem` (these
machines' is) cannot load it, so the links are a userspace switch that needs only TUN
devices: the link process (`python -m testnet.netns PLAN`) opens one TUN device per
namespace, moves it into its namespace with the host's address, and one more in the root
namespace (the gateway, the launcher's side, `.1`). Every IPv4 packet a namespace sends comes
out of its device in the switch, which writes it into the device of its destination after the
link's delay, or drops it with the link's loss. The kernel of each namespace runs real TCP
over it. The devices are the switch's: they vanish with its process, whatever ends it.

The model (the README's too): each host sits in a region with a one-way delay d to the core;
a packet from a to b waits d(a) + d(b), plus a jitter drawn uniformly from [0, j] per packet
(never less: the configured delay is a floor), and packets of one link stay in order. So
rtt(a, b) = 2 (d(a) + d(b)) plus at most 2 j. The gateway's d is 0. `wan` puts the hosts
round-robin in four regions whose RTTs fall in 52-146 ms, as the regions of CometBFT's QA
latency tables do; `lan` is 0.25 ms each (RTT 1 ms); `none` is no delay. A loss P drops each
packet with probability P, once per link.

`python -m testnet.netns --probe ADDRESS:PORT` times TCP connects, for the RTT between two
namespaces (run in one with `ip netns exec`).

Names: a run's prefix (`ic` and four hex digits) and its subnet (10.77.X.0/24) derive from its
data directory, so two runs on two data directories do not collide, and a run finds the
leftovers of a crashed one on the same directory (its namespaces) and deletes them first.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from testnet.process import START_TIMEOUT_S, LaunchError, Process, stop_all

log = logging.getLogger("testnet.netns")

LINKS_READY = "Links up"  # what the link process prints once every device is up
SUBNET_BASE = "10.77"
GATEWAY_HOST = 1  # the root namespace's address in the subnet: .1
FIRST_HOST = 2
MAX_HOSTS = 250
PARENT_POLL_S = 1.0  # the link process exits when its parent is gone
IP_TIMEOUT_S = 10.0
MTU = 1500
STOP_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 10.0

# (region, one-way delay to the core in ms): rtt(a, b) = 2 (d(a) + d(b)), 52..144 ms here
WAN_REGIONS: tuple[tuple[str, float], ...] = (
    ("us-east", 13.0),
    ("eu-west", 20.0),
    ("us-west", 28.0),
    ("ap-northeast", 36.0),
)
WAN_JITTER_MS = 1.0
LAN_DELAY_MS = 0.25
LATENCIES = ("none", "lan", "wan")

TUN_DEVICE = "/dev/net/tun"
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


class NetnsError(Exception):
    """The namespaces or their links cannot be set up; the message says why."""


@dataclass(frozen=True, slots=True)
class Host:
    """One process's place: its namespace (also its device's name), its address, its region
    and that region's one-way delay."""

    name: str
    address: str
    region: str
    delay_ms: float


@dataclass(frozen=True, slots=True)
class Plan:
    """A run's namespaces and links."""

    prefix: str
    subnet: str  # "10.77.X": the /24's first three octets
    hosts: tuple[Host, ...]
    jitter_ms: float
    loss: float  # per packet per link, 0..1

    @property
    def gateway(self) -> Host:
        return Host(f"{self.prefix}-gw", f"{self.subnet}.{GATEWAY_HOST}", "host", 0.0)

    def host(self, name: str) -> Host:
        """The host called `prefix-name` (`validator-0` -> `ic1a2b-v0`'s Host)."""
        wanted = f"{self.prefix}-{short_name(name)}"
        for host in self.hosts:
            if host.name == wanted:
                return host
        raise KeyError(name)

    # testnet.network.Placement

    def bind(self, name: str) -> str:
        return self.host(name).address

    def reach(self, name: str) -> str:
        return self.host(name).address

    def command_prefix(self, name: str) -> list[str]:
        return exec_prefix(self.host(name))

    def dev_control_from(self) -> list[str]:
        return [self.gateway.address]  # the launcher sets the dev links from there

    def rtt_floor_ms(self, a: Host, b: Host) -> float:
        """The least RTT the links give between `a` and `b` (the model above)."""
        return 2 * (a.delay_ms + b.delay_ms)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw = json.loads(text)
        hosts = tuple(Host(**host) for host in raw["hosts"])
        return cls(raw["prefix"], raw["subnet"], hosts, raw["jitter_ms"], raw["loss"])


def short_name(name: str) -> str:
    """`validator-3` -> `v3`, `node-1` -> `n1`, `ao` -> `ao`: a device name has 15 bytes."""
    kind, _, index = name.partition("-")
    return {"validator": "v", "node": "n"}.get(kind, kind) + index


def run_prefix(data_dir: Path) -> tuple[str, str]:
    """The prefix and the subnet of the run on `data_dir` (module docstring)."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).digest()
    return f"ic{digest[:2].hex()}", f"{SUBNET_BASE}.{1 + digest[2] % 254}"


def make_plan(data_dir: Path, names: Sequence[str], latency: str, loss: float = 0.0) -> Plan:
    """The plan of a run on `data_dir` for the processes `names` (`validator-0`, `node-0`,
    `ao`), in that order round-robin over the regions of `latency`."""
    if latency not in LATENCIES:
        raise ValueError(f"latency: one of {', '.join(LATENCIES)}, got {latency!r}")
    if not 0.0 <= loss < 1.0:
        raise ValueError(f"loss: a probability in [0, 1), got {loss}")
    if len(names) > MAX_HOSTS:
        raise ValueError(f"at most {MAX_HOSTS} processes in namespaces, got {len(names)}")
    prefix, subnet = run_prefix(data_dir)
    hosts = []
    for i, name in enumerate(names):
        if latency == "wan":
            region, delay = WAN_REGIONS[i % len(WAN_REGIONS)]
        elif latency == "lan":
            region, delay = "lan", LAN_DELAY_MS
        else:
            region, delay = "none", 0.0
        address = f"{subnet}.{FIRST_HOST + i}"
        hosts.append(Host(f"{prefix}-{short_name(name)}", address, region, delay))
    jitter = WAN_JITTER_MS if latency == "wan" else 0.0
    return Plan(prefix, subnet, tuple(hosts), jitter, loss)


def unusable() -> str | None:
    """Why namespaces cannot be made here (not root, no `ip`, no TUN device), or None."""
    if os.geteuid() != 0:
        return "--netns needs root (network namespaces and TUN devices): run it as root"
    if shutil.which("ip") is None:
        return "--netns needs the ip command (iproute2): apt-get install iproute2"
    if not os.path.exists(TUN_DEVICE):
        return f"--netns needs TUN devices ({TUN_DEVICE} is missing)"
    return None


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`ip ARGS`; NetnsError with its message when it fails and `check`."""
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
    )
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def namespaces_of(prefix: str) -> list[str]:
    """The namespaces whose name starts with `prefix-`."""
    listed = ip("netns", "list", check=False).stdout.splitlines()
    names = [line.split()[0] for line in listed if line.strip()]
    return sorted(name for name in names if name.startswith(prefix + "-"))


def exec_prefix(host: Host) -> list[str]:
    """The command that runs a program in `host`'s namespace."""
    return ["ip", "netns", "exec", host.name]


def delete_namespaces(prefix: str) -> list[str]:
    """Delete the namespaces of `prefix` in which nothing runs any more; the names of those
    in which a process still runs (left alone)."""
    busy = []
    for name in namespaces_of(prefix):
        if ip("netns", "pids", name, check=False).stdout.split():
            busy.append(name)
            continue
        ip("netns", "delete", name, check=False)
    return busy


def create_namespaces(plan: Plan) -> None:
    """A namespace per host with its loopback up, after deleting the leftovers of `plan`'s
    prefix; NetnsError when a leftover still runs a process, or the subnet is taken."""
    busy = delete_namespaces(plan.prefix)
    if busy:
        pids = sorted({p for n in busy for p in ip("netns", "pids", n).stdout.split()})
        raise NetnsError(
            f"processes still run in the namespaces {', '.join(busy)} of a previous run on "
            f"this data directory (pids {' '.join(pids)}): stop them first"
        )
    routes = ip("-4", "route", "show", f"{plan.subnet}.0/24", check=False).stdout.strip()
    if routes:
        raise NetnsError(f"the subnet {plan.subnet}.0/24 is taken here ({routes})")
    for host in plan.hosts:
        ip("netns", "add", host.name)
        ip("-n", host.name, "link", "set", "lo", "up")


class Namespaces:
    """A run's namespaces and its link process: `up()` makes them (leftovers of a crashed run
    on the same data directory deleted first), `down()` takes everything away, and is also
    called at the interpreter's exit, so a crash of the launcher leaves nothing behind."""

    def __init__(self, plan: Plan, root: Path, log_level: str | None = None) -> None:
        self.plan = plan
        self.root = root
        self.log_level = log_level
        self.links: Process | None = None

    def up(self, timeout: float = START_TIMEOUT_S) -> None:
        """NetnsError if they cannot be made (the namespaces made so far are deleted)."""
        atexit.register(self.down)
        try:
            create_namespaces(self.plan)
            path = self.root / "netns.json"
            path.write_text(self.plan.to_json(), encoding="utf-8")
            self.links = Process(
                "links",
                links_args(path, self.log_level),
                self.root / "links.log",
                ready_prefix=LINKS_READY,
            )
            self.links.start(timeout)
        except (NetnsError, LaunchError, OSError) as exc:
            self.down()
            raise NetnsError(
                f"the namespaces of {self.plan.prefix} cannot be set up: {exc}"
            ) from exc

    def down(self) -> None:
        """Stop the link process (its devices go with it) and delete the namespaces; those in
        which a process still runs are kept, and said."""
        if self.links is not None:
            stop_all([self.links], STOP_TIMEOUT_S)
            self.links = None
        busy = delete_namespaces(self.plan.prefix)
        if busy:
            log.warning("namespaces still in use, kept: %s", ", ".join(busy))
        atexit.unregister(self.down)


# The link process


def open_tun(name: str) -> int:
    """A new TUN device `name` (IPv4 packets, no header), non-blocking, in this namespace."""
    fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


class Switch:
    """The links of a plan: every packet read from a host's device is written to its
    destination's after d(src) + d(dst) + jitter, in order per link, unless it is lost."""

    def __init__(self, plan: Plan, rng: random.Random | None = None) -> None:
        self.plan = plan
        self.hosts = [plan.gateway, *plan.hosts]
        self.by_address = {struct.unpack("!I", _packed(h.address))[0]: h for h in self.hosts}
        self.fds: dict[str, int] = {}
        self.rng = rng or random.Random()
        # a link's packets in flight, each with the time it is due
        self.queues: dict[tuple[str, str], deque[tuple[float, bytes]]] = {}
        self.forwarded = 0
        self.dropped = 0

    def open(self) -> None:
        """The devices: each opened, moved into its namespace with its address, and up."""
        cidr = "/24"
        for host in self.hosts:
            self.fds[host.name] = open_tun(host.name)
            where: list[str] = []
            if host != self.plan.gateway:
                ip("link", "set", host.name, "netns", host.name)
                where = ["-n", host.name]
            ip(*where, "link", "set", host.name, "mtu", str(MTU))
            ip(*where, "addr", "add", host.address + cidr, "dev", host.name)
            ip(*where, "link", "set", host.name, "up")

    def close(self) -> None:
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()

    def readable(self, source: Host) -> None:
        loop = asyncio.get_running_loop()
        fd = self.fds[source.name]
        while True:
            try:
                packet = os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                return
            if len(packet) < 20 or packet[0] >> 4 != 4:
                continue  # IPv4 only
            target = self.by_address.get(struct.unpack("!I", packet[16:20])[0])
            if target is None or target is source:
                continue
            if self.plan.loss and self.rng.random() < self.plan.loss:
                self.dropped += 1
                continue
            delay = source.delay_ms + target.delay_ms
            if self.plan.jitter_ms:
                delay += self.rng.uniform(0.0, self.plan.jitter_ms)
            link = (source.name, target.name)
            queue = self.queues.setdefault(link, deque())
            # In order per link: a packet is never due before the one sent ahead of it.
            at = max(loop.time() + delay / 1000, queue[-1][0] if queue else 0.0)
            queue.append((at, packet))
            if len(queue) == 1:
                loop.call_at(at, self.deliver, link, target)

    def deliver(self, link: tuple[str, str], target: Host) -> None:
        """Write the packets of `link` that are due, and wait for the next one."""
        loop = asyncio.get_running_loop()
        queue = self.queues[link]
        fd = self.fds.get(target.name)
        while queue and queue[0][0] <= loop.time():
            _, packet = queue.popleft()
            if fd is None:
                continue
            try:
                os.write(fd, packet)
                self.forwarded += 1
            except OSError:
                self.dropped += 1  # its queue is full: as a wire drops it
        if queue:
            loop.call_at(queue[0][0], self.deliver, link, target)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        for host in self.hosts:
            loop.add_reader(self.fds[host.name], self.readable, host)
        print(f"{LINKS_READY} ({len(self.plan.hosts)} namespaces)", flush=True)
        parent = os.getppid()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PARENT_POLL_S)
            if os.getppid() != parent:
                log.warning("the launcher is gone: the links go down")
                break
        for host in self.hosts:
            loop.remove_reader(self.fds[host.name])
        log.info("forwarded %d packets, dropped %d", self.forwarded, self.dropped)


def _packed(address: str) -> bytes:
    return bytes(int(octet) for octet in address.split("."))


def links_args(plan_path: Path, log_level: str | None = None) -> list[str]:
    """The link process's command line (the interpreter's arguments)."""
    args = ["-m", "testnet.netns", str(plan_path)]
    return args if log_level is None else [*args, "--log-level", log_level]


def connect_times(address: str, port: int, count: int) -> list[float]:
    """The times of `count` TCP connects to address:port in ms (a connect is one round trip);
    OSError when one fails."""
    times = []
    for _ in range(count):
        started = time.monotonic()
        with socket.create_connection((address, port), timeout=PROBE_TIMEOUT_S):
            times.append((time.monotonic() - started) * 1000)
    return times


def probe(target: str, count: int) -> int:
    """`--probe ADDRESS:PORT`: print the least and the median connect time, in ms; 1 when a
    connect fails (saying why)."""
    address, _, port = target.rpartition(":")
    try:
        times = sorted(connect_times(address, int(port), count))
    except ValueError:
        print(f"--probe: ADDRESS:PORT, got {target!r}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cannot connect to {target}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"min {times[0]:.1f} ms  median {times[len(times) // 2]:.1f} ms  ({count} connects)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testnet.netns",
        description="The links of a network in namespaces; or, with --probe, the RTT to a port "
        "(run it in a namespace with ip netns exec)",
    )
    parser.add_argument("plan", nargs="?", help="the plan (JSON) the launcher wrote")
    parser.add_argument("--probe", metavar="ADDRESS:PORT", help="time TCP connects to it")
    parser.add_argument("--count", type=int, default=20, metavar="N", help="connects to time")
    parser.add_argument("--log-level", default="INFO", type=str.upper)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    if args.probe is not None:
        if args.count < 1:
            parser.error("--count: 1 or more")
        return probe(args.probe, args.count)
    if args.plan is None:
        parser.error("the plan, or --probe")
    try:
        plan = Plan.from_json(Path(args.plan).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("cannot read the plan %s: %s", args.plan, exc)
        return 2
    switch = Switch(plan)
    try:
        switch.open()
        asyncio.run(switch.run())
    except (OSError, NetnsError) as exc:
        log.error("%s", exc)
        return 1
    finally:
        switch.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
