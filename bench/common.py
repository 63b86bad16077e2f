"""What every part of the benchmark shares: validator processes, latency figures, RSS."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Throughput:
    """`count` operations in `seconds`, with per-operation latencies in milliseconds."""

    count: int
    seconds: float
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"rate": round(self.rate, 1)}


def percentile(samples: list[float], q: float) -> float:
    """The q-quantile (0..1) of `samples` by the nearest-rank method."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


def throughput(count: int, seconds: float, latencies_s: list[float] | None = None) -> Throughput:
    if not latencies_s:
        return Throughput(count, seconds)
    return Throughput(
        count,
        seconds,
        round(percentile(latencies_s, 0.50) * 1000, 3),
        round(percentile(latencies_s, 0.99) * 1000, 3),
    )


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class Service:
    """A process of ours that prints `Listening on URL` when it serves; stopped with SIGTERM."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.command = [sys.executable, *args]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> str:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + START_TIMEOUT_S
        buffer = b""
        while (match := LISTENING.search(buffer)) is None:
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                self.stop()
                raise RuntimeError(f"{' '.join(self.command[1:3])} did not start: {self.log_path}")
            buffer += chunk
        self.url = match.group(1).decode()
        return self.url

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


LISTENING = re.compile(rb"Listening on (\S+)\r?\n")


def validator(genesis_path: Path, data_dir: Path, *extra: str) -> Service:
    """`python -m rpc` on an ephemeral loopback port; its log beside the data directory."""
    args = ["-m", "rpc", "--genesis", str(genesis_path), "--data-dir", str(data_dir)]
    args += ["--port", "0", "--quiet", "--log-level", "WARNING", *extra]
    return Service(args, data_dir.parent / f"{data_dir.name}.log")


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
