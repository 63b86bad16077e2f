"""What every part of the benchmark shares: validator processes, latency figures, RSS."""

from __future__ import annotations

import contextlib
import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from testnet.commands import VALIDATOR_READY, validator_args
from testnet.process import LaunchError, Process

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0


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


def rss_parts(pid: int) -> dict[str, int]:
    """VmRSS and its anonymous and file-backed parts (RssAnon, RssFile), in bytes. LevelDB
    maps its table files: their pages read count in RssFile, and the kernel may take them
    back; RssAnon is the process's own memory."""
    wanted = {"VmRSS:": "rss", "RssAnon:": "anon", "RssFile:": "file"}
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name = line.split(maxsplit=1)[0] if line else ""
        if name in wanted:
            out[wanted[name]] = int(line.split()[1]) * 1024
    return out


class Service(Process):
    """`python *args`, a process of ours that prints `Listening on URL` when it serves; a
    context manager that starts it and stops it with SIGTERM."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        super().__init__(" ".join(args[:2]), args, log_path, ready_prefix=VALIDATOR_READY)

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        try:
            return super().start(timeout)
        except LaunchError:
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {self.log_path}") from None

    def stop(self) -> None:
        """SIGTERM, up to STOP_TIMEOUT_S for it to exit, then SIGKILL."""
        if self.running():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.terminate(STOP_TIMEOUT_S)
        self.close()
        self.proc = None


def validator(genesis_path: Path, data_dir: Path, *extra: str) -> Service:
    """`python -m rpc` on an ephemeral loopback port; its log beside the data directory."""
    args = validator_args(genesis_path, data_dir, log_level="WARNING", extra=extra)
    return Service(args, data_dir.parent / f"{data_dir.name}.log")


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
