"""`scripts/testnet.py` (`make testnet`) as a real process: it starts its validators and resource
nodes, the demo task ends verified, and on SIGINT it stops every process it started, exits 0
and says "stopped".

A result is verified by another resource node than the one that computed it, so every network
here runs at least two resource nodes.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow

SCRIPT = REPO / "scripts" / "testnet.py"
DEMO_TIMEOUT = 180.0
STOP_TIMEOUT = 60.0
DEMO_VERIFIED = "verified at block"


def free_ports(count: int) -> int:
    """A port p such that p .. p + count - 1 are free on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base: int = probe.getsockname()[1]
        if base + count > 65536:
            continue
        try:
            for port in range(base + 1, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no {count} consecutive free ports")


def pids_using(data_dir: Path) -> list[int]:
    """Processes whose command line names `data_dir` (the launcher's children)."""
    needle = str(data_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry.name))
    return found


class Launcher:
    """scripts/testnet.py in its own process; its stdout is read line by line."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--data-dir", str(data_dir), *args],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.output = ""
        self._buffer = b""
        self._lines: list[str] = []

    def wait_for_line(self, text: str, timeout: float) -> str:
        """The first line (not read before) that contains `text`."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while self._lines:
                line = self._lines.pop(0)
                if text in line:
                    return line
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                pytest.fail(f"no line with {text!r} in {timeout} s; output:\n{self.output}")
            chunk = os.read(fd, 65536)
            if not chunk:
                pytest.fail(f"the launcher exited before {text!r}; output:\n{self.output}")
            self.output += chunk.decode(errors="replace")
            *lines, self._buffer = (self._buffer + chunk).split(b"\n")
            self._lines += [line.decode(errors="replace") for line in lines]

    def interrupt(self) -> int:
        """SIGINT, then the exit code; the rest of its output is kept in `output`."""
        self.proc.send_signal(signal.SIGINT)
        rest, _ = self.proc.communicate(timeout=STOP_TIMEOUT)
        self.output += rest.decode(errors="replace")
        return self.proc.returncode

    def kill_all(self) -> None:
        """After a failed test: no process of it may outlive the test."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in pids_using(self.data_dir):
            os.kill(pid, signal.SIGKILL)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


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
    launcher = launch(
        data_dir,
        *("--validators", str(validators), "--nodes", str(nodes), "--fresh"),
        *("--block-time", "200", "--port", str(port)),
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
    genesis = json.loads((data_dir / "genesis.json").read_text())
    urls = [validator["url"] for validator in genesis["validators"]]
    assert urls == [f"http://127.0.0.1:{port + k}" for k in range(validators)]
    return launcher.output


def test_one_validator_runs_the_demo_and_stops_cleanly(launch: Launch, tmp_path: Path) -> None:
    run_network(launch, tmp_path / "testnet", validators=1, nodes=2)


def test_four_validators_run_the_demo_and_stop_cleanly(launch: Launch, tmp_path: Path) -> None:
    output = run_network(launch, tmp_path / "testnet", validators=4, nodes=3)
    assert "round " in output
