"""Where a process's time goes: py-spy sampling each process of a network under load, and a
summary of the samples by function.

`Sampler` starts `py-spy record` (raw, "collapsed" stacks: one line per distinct stack and
its sample count) on each given process for a fixed time and writes `<name>.txt` under a
directory. py-spy is not a dependency of the package (`pip install py-spy`); without it the
sampler says so and records nothing. py-spy samples without stopping the process
(`--nonblocking`), so the figures are of the process as it runs.

`summarize` reads such a file: the share of the samples in which each function is on the
stack (inclusive) and at its top (self), over the samples where the process was busy. The
samples of a thread waiting in the event loop's selector, a lock or a queue count as idle.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

RATE_HZ = 50
# The top frame of a thread that waits: an event loop's selector, a condition or lock, an
# executor's worker between two work items.
IDLE = re.compile(
    r"^(\w*Selector\.select|select|poll) \(selectors\.py\)$"
    r"|^\w*\.?wait \(threading\.py\)$"
    r"|^_worker \(concurrent/futures/thread\.py\)$"
)
_LINE = re.compile(r":\d+\)$")


@dataclass(frozen=True, slots=True)
class Share:
    function: str  # "name (module/file.py)"
    inclusive: float  # share of the busy samples with it on the stack
    self_: float  # share of the busy samples with it on top


@dataclass(frozen=True, slots=True)
class Summary:
    samples: int
    idle: int
    top: tuple[Share, ...]  # by inclusive share, then self share

    @property
    def busy(self) -> int:
        return self.samples - self.idle


def frame_name(frame: str) -> str:
    """A frame of py-spy's collapsed format, `func (module/file.py:LINE)`, without its line:
    the same function is one entry."""
    return _LINE.sub(")", frame.strip())


def summarize(lines: Iterable[str], top: int = 30) -> Summary:
    """The busy samples' shares by function, from collapsed stacks (`a;b;c COUNT`)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    samples = idle = 0
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";")]
        samples += n
        if IDLE.match(frames[-1]):
            idle += n
            continue
        for name in set(frames):
            inclusive[name] += n
        own[frames[-1]] += n
    busy = samples - idle
    if busy <= 0:
        return Summary(samples, idle, ())
    ranked = sorted(inclusive, key=lambda name: (-inclusive[name], -own[name], name))[:top]
    shares = tuple(Share(name, inclusive[name] / busy, own[name] / busy) for name in ranked)
    return Summary(samples, idle, shares)


def render(name: str, summary: Summary, skip: Sequence[str] = ("asyncio/", "runpy")) -> str:
    """A summary as text: the busy share, then each function's shares in percent."""
    busy = 100 * summary.busy / summary.samples if summary.samples else 0.0
    lines = [f"{name}: {summary.samples} samples, {busy:.0f}% busy"]
    for share in summary.top:
        if any(part in share.function for part in skip):
            continue
        lines.append(f"  {100 * share.inclusive:5.1f}% {100 * share.self_:5.1f}%  {share.function}")
    return "\n".join(lines)


class Sampler:
    """py-spy on each of a network's processes for `seconds`, into `directory`."""

    def __init__(self, directory: Path, seconds: float, rate_hz: int = RATE_HZ) -> None:
        self.directory = directory
        self.seconds = seconds
        self.rate_hz = rate_hz
        beside = Path(sys.executable).parent / "py-spy"  # in the venv, if not on PATH
        self.py_spy = shutil.which("py-spy") or (str(beside) if beside.exists() else None)
        self._procs: list[tuple[str, asyncio.subprocess.Process]] = []

    async def start(self, processes: Sequence[tuple[str, int]]) -> str | None:
        """Sample each (name, pid); None, or why nothing is sampled."""
        if self.py_spy is None:
            return "py-spy is not installed (pip install py-spy): no profile taken"
        self.directory.mkdir(parents=True, exist_ok=True)
        for name, pid in processes:
            proc = await asyncio.create_subprocess_exec(
                self.py_spy,
                "record",
                "--nonblocking",
                "--rate",
                str(self.rate_hz),
                "--duration",
                str(max(1, round(self.seconds))),
                "--format",
                "raw",
                "--output",
                str(self.directory / f"{name}.txt"),
                "--pid",
                str(pid),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            self._procs.append((name, proc))
        return None

    async def finish(self) -> dict[str, str]:
        """Wait for every sampler; the text summary of each process that gave samples (also
        written to `summary.txt`)."""
        out = {}
        for name, proc in self._procs:
            await proc.wait()
            path = self.directory / f"{name}.txt"
            if path.exists():
                with path.open() as handle:
                    out[name] = render(name, summarize(handle))
        if out:
            (self.directory / "summary.txt").write_text("\n\n".join(out.values()) + "\n")
        return out
