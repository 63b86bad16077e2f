"""`scripts/testnet.py` (`make testnet`) as a process of a test: started on free ports, its
output read line by line, interrupted, and killed with everything it started after a failed
test. Shared by the launcher's own tests and the explorer's, which run on the default
testnet."""

from __future__ import annotations

import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO

SCRIPT = REPO / "scripts" / "testnet.py"
STOP_TIMEOUT = 60.0
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_ports(count: int) -> int:
    """A port p such that p .. p + count - 1 are free on 127.0.0.1 right now, below the
    kernel's ephemeral range: the ports the OS hands out for port 0 (every other test's
    servers and clients) never take them between this check and the launcher's bind.

    Each pytest-xdist worker draws from its own slice of that span, and a process never
    hands out a port twice: two launchers, of one test or of two workers, never share one."""
    low = int(EPHEMERAL_RANGE.read_text().split()[0]) if EPHEMERAL_RANGE.exists() else 32768
    start = max(1024, low - 12000)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    width = (low - start) // workers
    start += width * (int(worker) % workers if worker.isdigit() else 0)
    for _ in range(50):
        base = random.randrange(start, start + width - count)
        ports = range(base, base + count)
        if any(port in _HANDED_OUT for port in ports):
            continue
        try:
            for port in ports:
                with socket.socket() as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        _HANDED_OUT.update(ports)
        return base
    raise RuntimeError(f"no {count} consecutive free ports")


_HANDED_OUT: set[int] = set()


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
            [
                sys.executable,
                str(SCRIPT),
                "--data-dir",
                str(data_dir),
                # free ports for the resource nodes, unless the test chooses them
                *(() if "--node-port" in args else ("--node-port", "0")),
                *(() if "--ao-port" in args else ("--ao-port", "0")),
                *args,
            ],
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
