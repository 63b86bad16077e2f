"""A process of the project run by a launcher (the testnet supervisor, the tests, the benchmark):
its stderr appended to a log file, its stdout a pipe on which it says when it is ready, and
the signals the launchers send it. Also: running a command that is expected to exit by itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 30.0
EXIT_WAIT_S = 10.0


class LaunchError(Exception):
    """The network cannot start or go on (a process did not start, or exited); the message
    says why and which log to read."""


class Process:
    """One process, `python *args` (after `prefix`, a command that runs it, such as `ip netns
    exec NS`): `spawn()` starts it, `wait_ready()` reads its stdout up to
    the line that starts with `ready_prefix` and keeps what follows (its URL) in `url`."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        log_path: Path,
        *,
        ready_prefix: str,
        may_exit_with: int | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.command = [*prefix, sys.executable, *args]
        self.log_path = log_path
        self.ready_prefix = ready_prefix
        self.may_exit_with = may_exit_with  # an exit code that is not a failure (a crash fault)
        self.exit_expected = False  # killed on purpose, or exited as its fault says
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                self.command,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                # Left unread after the ready line: our processes print nothing else there.
                stdout=subprocess.PIPE,
                stderr=log_file,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                # Its own process group: a Ctrl-C at the terminal reaches the launcher only,
                # which then stops its processes in order instead of racing them.
                process_group=0,
            )

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> str:
        """Block until the ready line; LaunchError if the process exits first or is not ready
        within `timeout` seconds."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buffer = b""
        while True:
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                if line.startswith(self.ready_prefix):
                    self.url = line.removeprefix(self.ready_prefix).strip()
                    return self.url
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                raise LaunchError(
                    f"{self.name} was not ready in {timeout:g} s\n  log: {self.log_path}"
                )
            chunk = os.read(fd, 65536)
            if not chunk:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(EXIT_WAIT_S)  # to say how it ended
                raise LaunchError(self.exit_report())
            buffer += chunk

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        """`spawn()`, then `wait_ready()`: its URL."""
        self.spawn()
        return self.wait_ready(timeout)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, on purpose: its exit is not a failure."""
        self.exit_expected = True
        self.close()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, then its exit code (subprocess.TimeoutExpired after `timeout` seconds)."""
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(timeout)

    def close(self) -> None:
        """SIGKILL if it still runs, and close its stdout."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def exit_report(self) -> str:
        """How it ended, its last log line and where its log is."""
        code = None if self.proc is None else self.proc.returncode
        if code is not None and code < 0:
            report = f"{self.name} was killed by {signal.Signals(-code).name}"
        else:
            report = f"{self.name} exited with code {code}"
        last = last_line(self.log_path)
        if last:
            report += f"\n  its last log line: {last}"
        if "already in use" in last.lower():
            report += "\n  is another testnet running? Stop it or choose another --port"
        return f"{report}\n  log: {self.log_path}"


def log_tail(path: Path, count: int) -> list[str]:
    """The last `count` non-empty lines of a log file (read from its last 16 KiB), oldest
    first; [] if there are none."""
    try:
        with path.open("rb") as file:
            file.seek(0, 2)
            start = max(0, file.tell() - 16384)
            file.seek(start)
            # "\n" only: splitlines() would also cut at a form feed or a separator character
            lines = file.read().decode(errors="replace").split("\n")
    except OSError:
        return []
    if start > 0:
        lines = lines[1:]  # the end of a line that began before what was read
    return [line.rstrip() for line in lines if line.strip()][-count:]


def last_line(path: Path) -> str:
    """The last non-empty line of a log file, or "" if there is none."""
    try:
        with path.open("rb") as file:
            file.seek(0, 2)
            file.seek(max(0, file.tell() - 4096))
            lines = file.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def stop_all(processes: Iterable[Process], timeout: float) -> None:
    """SIGTERM to every running process, wait up to `timeout` seconds, then SIGKILL; their
    stdout closed."""
    processes = list(processes)
    running = [p for p in processes if p.running()]
    for process in running:
        assert process.proc is not None
        process.proc.terminate()
    deadline = time.monotonic() + timeout
    for process in running:
        assert process.proc is not None
        try:
            code = process.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %g s: killed", process.name, timeout)
            process.proc.kill()
            process.proc.wait()
            continue
        if code != 0:
            log.warning("%s stopped with code %d; see %s", process.name, code, process.log_path)
    for process in processes:
        process.close()


@dataclass(frozen=True, slots=True)
class Exited:
    """How a process that was expected to exit by itself ended."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False  # it still ran after the timeout and was killed


def run_to_exit(args: Sequence[str], timeout: float, prefix: Sequence[str] = ()) -> Exited:
    """Run `python *args` (after `prefix`, as `Process` does), which should exit by itself (a
    refused start), and collect its output; killed if it still runs after `timeout` seconds."""
    proc = subprocess.Popen(
        [*prefix, sys.executable, *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        return Exited(proc.returncode, stdout, stderr, timed_out=True)
    return Exited(proc.returncode, stdout, stderr)
