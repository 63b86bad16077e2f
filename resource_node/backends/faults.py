"""Byzantine and unreliable behaviour on purpose, to test the network's rules (PROTOCOL 4.5-4.8).

A fault spec is a comma-separated list (and `--fault` may repeat):

- `wrong:P`: with probability P (default 1) submit a wrong result, the honest output plus a
  marker. The draw is a function of the node's seed for the task, so it is reproducible per
  (task, node). Verdicts stay honest. Its forced errors (PROTOCOL 4.13) are made and revealed
  as an honest node's are: a wrong output is only wrong.
- `lazy`: verify without computing; every verdict is valid=true (slashed `lazy` when the
  result was a forced error).
- `silent`: never submit results or verdicts.
- `noreveal`: never reveal a secret: each of its verified or rejected results is treated as
  wrong at its reveal deadline.
- `copy`: never compute: submit as its own result another node's result of the task as soon
  as the listing shows one (in the task's executionInfo or a verify entry).
- `otherprompt`: answer every task with the output for another prompt (one made from the
  seed), as a node that serves a cached or unrelated answer.
- `truncate`: submit only the first half of the characters of each output it computes.
- `slow:S`: S extra seconds of latency for every inference.
- `crash:N`: the process exits (`os._exit(3)`) after its N-th submitted result.

`wrong`, `otherprompt`, `truncate` and `slow` wrap a backend (`Faults.compute_backend`,
`Faults.verify_backend`); `lazy`, `silent`, `noreveal`, `copy` and `crash` are read by the
worker. The wrappers own nothing:
close the inner backend.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

from chain.protocol import crypto, wire
from resource_node.backends import Backend, InferenceRequest

WRONG_DOMAIN = b"inferchain/fault/wrong"
WRONG_MARKER = " [wrong]"
KINDS = (
    "wrong", "lazy", "silent", "noreveal", "copy", "otherprompt", "truncate", "slow", "crash"
)  # fmt: skip
# the faults without an argument
FLAGS = ("lazy", "silent", "noreveal", "copy", "otherprompt", "truncate")
OTHER_PROMPTS = (
    "Describe a city you have never visited, number {n}.",
    "Write a recipe that uses {n} eggs.",
    "Tell a short story about the number {n}.",
)

Sleep = Callable[[float], Awaitable[None]]


def wrong_draw(seed: int) -> float:
    """A number in [0, 1) that is a pure function of the seed."""
    digest = crypto.keccak(WRONG_DOMAIN + str(seed).encode())
    return int.from_bytes(digest[:8], "big") / 2**64


def is_wrong(seed: int, probability: float) -> bool:
    return wrong_draw(seed) < probability


@dataclass(frozen=True, slots=True)
class WrongBackend:
    """Returns a wrong result (the inner output plus `WRONG_MARKER`) with `probability`."""

    inner: Backend
    probability: float

    @property
    def name(self) -> str:
        return self.inner.name

    async def infer(self, request: InferenceRequest) -> str:
        output = await self.inner.infer(request)
        if is_wrong(request.seed, self.probability):
            return output + WRONG_MARKER
        return output


@dataclass(frozen=True, slots=True)
class OtherPromptBackend:
    """Answers with the output for another prompt than the task's, made from the seed."""

    inner: Backend

    @property
    def name(self) -> str:
        return self.inner.name

    async def infer(self, request: InferenceRequest) -> str:
        other = OTHER_PROMPTS[request.seed % len(OTHER_PROMPTS)].format(n=request.seed % 997)
        return await self.inner.infer(replace(request, prompts=json.dumps({"prompt": other})))


@dataclass(frozen=True, slots=True)
class TruncatedBackend:
    """Returns the first half of the characters of the inner output."""

    inner: Backend

    @property
    def name(self) -> str:
        return self.inner.name

    async def infer(self, request: InferenceRequest) -> str:
        output = await self.inner.infer(request)
        return output[: len(output) // 2]


@dataclass(frozen=True, slots=True)
class SlowBackend:
    """Awaits `seconds` (on the injectable `sleep`) before each inference."""

    inner: Backend
    seconds: float
    sleep: Sleep = asyncio.sleep

    @property
    def name(self) -> str:
        return self.inner.name

    async def infer(self, request: InferenceRequest) -> str:
        await self.sleep(self.seconds)
        return await self.inner.infer(request)


def _number(kind: str, arg: str, spec: str) -> float:
    try:
        value = float(arg)
    except ValueError as exc:
        raise ValueError(f"fault {spec!r}: {kind} takes a number, got {arg!r}") from exc
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"fault {spec!r}: {kind} takes a finite number")
    return value


@dataclass(frozen=True, slots=True)
class Faults:
    """The faults of one node; the default is an honest node."""

    wrong: float = 0.0
    lazy: bool = False
    silent: bool = False
    slow: float = 0.0
    crash_after: int | None = None
    noreveal: bool = False
    copy: bool = False
    otherprompt: bool = False
    truncate: bool = False

    @classmethod
    def parse(cls, specs: Iterable[str]) -> Faults:
        """From spec strings such as `"wrong:0.5,lazy"`, `"slow:2"`; ValueError when malformed."""
        seen: set[str] = set()
        wrong, slow = 0.0, 0.0
        flags: set[str] = set()
        crash_after: int | None = None
        for item in (part.strip() for spec in specs for part in spec.split(",")):
            if not item:
                continue
            kind, sep, arg = item.partition(":")
            kind = kind.strip().lower()
            arg = arg.strip()
            if kind not in KINDS:
                raise ValueError(f"unknown fault {item!r}; known: {', '.join(KINDS)}")
            if kind in seen:
                raise ValueError(f"fault {kind} given twice")
            seen.add(kind)
            if kind == "wrong":
                wrong = _number(kind, arg, item) if sep else 1.0
                if not 0.0 <= wrong <= 1.0:
                    raise ValueError(f"fault {item!r}: the probability must be in [0, 1]")
            elif kind in FLAGS:
                if sep:
                    raise ValueError(f"fault {item!r}: {kind} takes no argument")
                flags.add(kind)
            elif kind == "slow":
                if not sep:
                    raise ValueError(f"fault {item!r}: write slow:SECONDS")
                slow = _number(kind, arg, item)
                if slow < 0:
                    raise ValueError(f"fault {item!r}: seconds must not be negative")
            else:
                if not sep or not wire.ascii_digits(arg) or int(arg) < 1:
                    raise ValueError(f"fault {item!r}: write crash:N with N >= 1 results")
                crash_after = int(arg)
        return cls(
            wrong=wrong,
            lazy="lazy" in flags,
            silent="silent" in flags,
            slow=slow,
            crash_after=crash_after,
            noreveal="noreveal" in flags,
            copy="copy" in flags,
            otherprompt="otherprompt" in flags,
            truncate="truncate" in flags,
        )

    def describe(self) -> list[str]:
        """The faults as spec strings (empty for an honest node)."""
        out: list[str] = []
        if self.wrong > 0:
            out.append(f"wrong:{self.wrong:g}")
        if self.lazy:
            out.append("lazy")
        if self.silent:
            out.append("silent")
        if self.noreveal:
            out.append("noreveal")
        if self.copy:
            out.append("copy")
        if self.otherprompt:
            out.append("otherprompt")
        if self.truncate:
            out.append("truncate")
        if self.slow > 0:
            out.append(f"slow:{self.slow:g}")
        if self.crash_after is not None:
            out.append(f"crash:{self.crash_after}")
        return out

    def _slowed(self, backend: Backend, sleep: Sleep) -> Backend:
        return SlowBackend(backend, self.slow, sleep) if self.slow > 0 else backend

    def compute_backend(self, backend: Backend, sleep: Sleep = asyncio.sleep) -> Backend:
        """The backend that computes this node's own results: `otherprompt`, `truncate`,
        `wrong` and `slow` applied."""
        wrapped = OtherPromptBackend(backend) if self.otherprompt else backend
        wrapped = TruncatedBackend(wrapped) if self.truncate else wrapped
        wrapped = WrongBackend(wrapped, self.wrong) if self.wrong > 0 else wrapped
        return self._slowed(wrapped, sleep)

    def verify_backend(self, backend: Backend, sleep: Sleep = asyncio.sleep) -> Backend:
        """The backend that recomputes other nodes' results: only `slow` applied."""
        return self._slowed(backend, sleep)
