"""Imperfect verification: the error rates of a tolerant verification method, and the draws
that apply them to a verdict.

Real models are verified by a tolerant method (`scored`: the verifier teacher-forces the
submitted text through its own model and checks it against the distribution), not by
recomputing bit for bit. It has a false-reject rate FR (an honest verifier judges an honest
result invalid) and a false-accept rate FA (it judges a faulty result valid), one per kind of
fault. An honest verifier's verdict on a result is the truth, except that it is `invalid` on a
right result with probability FR and `valid` on a wrong one with probability FA of that
result's fault. The draw is a hash of the simulation's seed and (task, verifier, submitter), so
a run is reproducible and raising a rate only adds errors to the same verdicts.

With every rate 0 (the default) verdicts are the truth: the exact model of the deterministic
backend.
"""

from __future__ import annotations

from dataclasses import dataclass

from chain.protocol import crypto

DRAW_TAG = b"inferchain/sim/verdict-error/v1"
ANY_FAULT = "*"
# The kinds of wrong result the simulator makes, each with a false-accept rate of its own:
# a behaviour's deliberate wrong answers (wrong:P), forced errors (PROTOCOL 4.13), junk
# (whales, sybil pairs), a copy of another node's result made at a temperature above 0,
# another prompt's output, a truncated output and a different model's text.
FAULT_KINDS = ("wrong", "forced", "junk", "copy", "other-prompt", "truncated", "other-model")


@dataclass(frozen=True, slots=True)
class ErrorRates:
    """FR, and FA by fault kind (`*` for every kind not named)."""

    false_reject: float = 0.0
    false_accept: tuple[tuple[str, float], ...] = ()

    @classmethod
    def of(cls, false_reject: float, false_accept: dict[str, float]) -> ErrorRates:
        return cls(false_reject, tuple(sorted(false_accept.items())))

    @property
    def exact(self) -> bool:
        return self.false_reject == 0 and all(rate == 0 for _, rate in self.false_accept)

    def accept_rate(self, kind: str) -> float:
        rates = dict(self.false_accept)
        return rates.get(kind, rates.get(ANY_FAULT, 0.0))

    def scaled(self, factor: float) -> ErrorRates:
        """Every rate times `factor`, at most 1."""
        return ErrorRates(
            min(1.0, self.false_reject * factor),
            tuple((kind, min(1.0, rate * factor)) for kind, rate in self.false_accept),
        )

    def label(self) -> str:
        rates = dict(self.false_accept)
        parts = [f"FR {self.false_reject:g}"]
        if ANY_FAULT in rates:
            parts.append(f"FA {rates.pop(ANY_FAULT):g}")
        parts.extend(f"FA[{kind}] {rate:g}" for kind, rate in sorted(rates.items()))
        return ", ".join(parts)

    def to_json(self) -> dict[str, object]:
        return {"falseReject": self.false_reject, "falseAccept": dict(self.false_accept)}


def uniform(seed: int, task_hash: bytes, verifier: str, submitter: str) -> float:
    """The draw in [0, 1) of one verdict: `verifier` judging `submitter`'s result in a task."""
    digest = crypto.keccak(
        DRAW_TAG
        + seed.to_bytes(8, "big")
        + task_hash
        + bytes.fromhex(verifier[2:])
        + bytes.fromhex(submitter[2:])
    )
    return int.from_bytes(digest[:8], "big") / 2**64


class Verification:
    """One simulation's verification method: its rates, and the false-accept rate of every
    wrong result submitted so far (by task and submitter), which its submitter records since
    the kind of a fault is what sets how often it passes."""

    def __init__(self, rates: ErrorRates, seed: int) -> None:
        self.rates = rates
        self.seed = seed
        self.accept: dict[tuple[bytes, str], float] = {}
        self.false_rejects = 0
        self.false_accepts = 0

    def submitted(self, task_hash: bytes, submitter: str, kind: str, rate: float | None) -> None:
        """`submitter`'s result in the task is a fault of `kind` (were it wrong), passing at
        `rate` when given (its behaviour's own), else at the rate of its kind."""
        self.accept[(task_hash, submitter)] = self.rates.accept_rate(kind) if rate is None else rate

    def verdict(self, task_hash: bytes, verifier: str, submitter: str, right: bool) -> bool:
        """An honest verifier's verdict on a result that is `right` or not."""
        if right:
            rate = self.rates.false_reject
        else:
            rate = self.accept.get((task_hash, submitter), self.rates.accept_rate(ANY_FAULT))
        if rate == 0 or uniform(self.seed, task_hash, verifier, submitter) >= rate:
            return right
        if right:
            self.false_rejects += 1
        else:
            self.false_accepts += 1
        return not right
