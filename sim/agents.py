"""The simulated participants: one agent per resource node, by behaviour, and the senders.

An agent sees what `queryPendingTasks` tells its node (a `Job` per task: compute it, verify
the results it is assigned to, reveal the secret its decided result waits for), built from
`tasks.pending_work` on the simulated state or from the real chain's answer, and decides the
messages it sends in the next block. The model is a pure function of (task, seed), and at
temperature 0 of the task alone: any node recomputes any result, and an honest verifier judges
it through the simulation's `Verification` (exact, as with the deterministic backend, unless
error rates are given: then a right result is rejected at FR and a wrong one accepted at the FA
of its fault). A network may raise the temperature of tasks with more than one slot
(`minTemperature`), so that no two of their nodes compute the same text.

Behaviours (PROTOCOL 4.5, 4.6, 4.13):
- honest: computes, makes its forced errors, verifies by recomputing, reveals once decided;
- wrong:P: as honest, but each answer it computes (its own result or a recomputation when it
  verifies) is wrong with probability P;
- lazy: computes honestly, votes valid without computing;
- copying: submits the text of an earlier result of the task without computing; computed
  with another seed it is wrong (detected as a copy, fault `copy`), unless the task runs at
  temperature 0, where every seed gives the same text and the copy is right;
- late-copying: as copying, but only a result already verified (so never another node's
  forced error), and it makes its own forced errors: at temperature 0 it earns as an honest
  node without computing. (The plain copier skips its forced errors: at temperature 0 its
  copy on such a task is a right result the chain takes as a forced error, and the honest
  verifiers who judged it valid are slashed as lazy, PROTOCOL 4.13.)
- other-prompt, truncated, other-model: as honest, but every result it submits is another
  prompt's output, a truncated output or a different model's text (a wrong result of that
  fault);
- silent: never answers;
- sybil-pair: two addresses of one operator: one submits junk, the other votes valid on its
  partner's results and honestly otherwise (both verify honestly otherwise);
- whale: a large stake that lies (junk results, every verdict against the truth) and colludes
  with a sender, whose single-slot tasks it answers first.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from chain.protocol import crypto, tasks, wire
from chain.protocol.types import (
    Message,
    ResultStatus,
    RevealSecret,
    SubmitInferenceResult,
    SubmitTask,
    SubmitVerification,
)
from sim.verification import Verification

ANSWER_TAG = b"inferchain/sim/answer/v1"
WRONG_TAG = b"inferchain/sim/wrong/v1"
KEY_TAG = b"inferchain/sim/key/v1"
# A node computes one task per block, the first in its own order (queryPendingTasks sorts
# each node's tasks differently), as a resource node works on one task at a time.
COMPUTE_PER_BLOCK = 1
# The behaviours whose every result is a wrong result of the fault they are named after.
FAULTY_OUTPUTS = ("other-prompt", "truncated", "other-model")


def answer(task_hash: bytes, seed: int, temperature: float | None = None) -> str:
    """The model's output for a task and a seed (PROTOCOL 4.4), as a bytes field. A task that
    names no temperature runs at the backend's default (above 0); at temperature 0 the output
    is the same for every seed."""
    tail = b"greedy" if temperature == 0 else seed.to_bytes(8, "big")
    return wire.hex0x(crypto.keccak(ANSWER_TAG + task_hash + tail))


def temperature_of(model_options: str) -> float | None:
    """The temperature a task's modelOptions names, if any."""
    options = tasks.parse_json_object(model_options, "modelOptions")
    value = None if options is None else options.get("temperature")
    return float(value) if isinstance(value, int | float) else None


def wrong_answer(task_hash: bytes, address: str, why: bytes) -> str:
    """A deliberately wrong output: anything other than `answer`, told apart by `why`."""
    return wire.hex0x(crypto.keccak(WRONG_TAG + why + task_hash + bytes.fromhex(address[2:])))


def derived_key(seed: int, index: int) -> bytes:
    """Account key `index` of the simulation with this seed (a valid secp256k1 key)."""
    counter = 0
    while True:
        key = crypto.keccak(
            KEY_TAG + seed.to_bytes(8, "big") + index.to_bytes(4, "big") + bytes([counter])
        )
        if 0 < int.from_bytes(key, "big") < crypto.SECP256K1_N:
            return key
        counter += 1


@dataclass(frozen=True, slots=True)
class Check:
    """One result a node is assigned to verify."""

    submitter: str
    result: str
    seed: int


@dataclass(frozen=True, slots=True)
class Job:
    """What one node may do in one open task, as queryPendingTasks says (PROTOCOL 5.1);
    `results` are the task's results so far, (node, result) in rank order."""

    task_hash: bytes
    created_height: int
    sender: str
    compute: bool
    verify: tuple[Check, ...]
    reveal: bool
    results: tuple[tuple[str, str], ...]
    target_count: int = 1
    temperature: float | None = None
    verified: tuple[str, ...] = ()  # the nodes whose result is verified


def job_of_work(work: tasks.Work) -> Job:
    task = work.task
    assert task.created_height is not None
    return Job(
        task.task_hash,
        task.created_height,
        task.sender,
        work.compute,
        tuple(Check(e.resource_node, e.result, e.seed) for e in work.verify),
        work.reveal,
        tuple((e.resource_node, e.result) for e in task.execution_info),
        task.target_count,
        temperature_of(task.model_options),
        tuple(e.resource_node for e in task.execution_info if e.status == ResultStatus.VERIFIED),
    )


def job_of_json(item: dict[str, Any]) -> Job:
    """A queryPendingTasks item of the real chain."""
    entries = sorted(item["executionInfo"], key=lambda e: e["rank"])
    return Job(
        bytes.fromhex(item["taskHash"][2:]),
        int(item["createdHeight"]),
        item["sender"],
        bool(item["compute"]),
        tuple(Check(v["submitter"], v["result"], int(v["seed"])) for v in item["verify"]),
        bool(item["reveal"]),
        tuple((e["resourceNode"], e["result"]) for e in entries),
        int(item["targetCount"]),
        temperature_of(item["modelOptions"]),
        tuple(e["resourceNode"] for e in entries if e["status"] == ResultStatus.VERIFIED),
    )


class SecretChain:
    """A node's hash chain of secrets (PROTOCOL 4.13), from its key, `length` heights long
    from base 0: the secret of height h is keccak^(length - h)(secrets_seed(key))."""

    def __init__(self, key: bytes, length: int) -> None:
        value = crypto.secrets_seed(key, 0)
        self.values = [value]
        for _ in range(length):
            value = crypto.keccak(value)
            self.values.append(value)
        self.length = length

    @property
    def head(self) -> bytes:
        return self.values[-1]

    def secret(self, height: int) -> bytes:
        return self.values[self.length - height]


class Agent:
    """One resource node's decisions, by behaviour (see the module docstring)."""

    def __init__(
        self,
        behaviour: str,
        key: bytes,
        secrets: SecretChain,
        canary_rate_bps: int,
        *,
        verification: Verification,
        p: float = 0.0,
        partner: str | None = None,
        rng_seed: int = 0,
        false_accept: float | None = None,
        min_temperature: float = 0.0,
    ) -> None:
        self.behaviour = behaviour
        self.key = key
        self.address = crypto.address_of_private_key(key)
        self.secrets = secrets
        self.canary_rate_bps = canary_rate_bps
        self.p = p
        self.partner = partner
        self.verification = verification
        self.false_accept = false_accept
        self.min_temperature = min_temperature
        self.rng = random.Random(f"{rng_seed}/{self.address}")
        self.lies = 0  # junk results and verdicts against the truth sent (whales, sybils)

    @property
    def first(self) -> bool:
        """Whether this agent's transactions go first in a block (the whale's collusion)."""
        return self.behaviour == "whale"

    def decide(self, jobs: list[Job]) -> list[Message]:
        if self.behaviour == "silent":
            return []
        out: list[Message] = []
        computed = 0
        for job in jobs:
            if job.compute and computed < COMPUTE_PER_BLOCK:
                result = self.result(job)
                if result is not None:
                    out.append(SubmitInferenceResult(job.task_hash, self.address, result))
                    computed += 1
            for check in job.verify:
                valid = self.verdict(job, check)
                out.append(SubmitVerification(job.task_hash, self.address, check.submitter, valid))
        reveal = [job.created_height for job in jobs if job.reveal]
        if reveal:
            height = max(reveal)
            out.append(RevealSecret(self.address, height, self.secrets.secret(height)))
        return out

    def forced_error(self, job: Job) -> bool:
        if not self.canary_rate_bps:
            return False
        secret = self.secrets.secret(job.created_height)
        return crypto.is_forced_error(secret, job.task_hash, self.canary_rate_bps)

    def temperature(self, job: Job) -> float | None:
        """The temperature this network's nodes run `job` at: the task's, raised to
        `min_temperature` when the task has more than one slot."""
        if job.temperature is None or job.target_count == 1:
            return job.temperature
        return max(job.temperature, self.min_temperature)

    def output(self, job: Job, seed: int) -> str:
        """What the model gives for `job` with `seed`, as this network runs it."""
        return answer(job.task_hash, seed, self.temperature(job))

    def result(self, job: Job) -> str | None:
        """The result this node submits for `job`, or None to leave the task."""
        kind, result = self.fault(job)
        if result is not None:
            self.verification.submitted(
                job.task_hash,
                self.address,
                kind,
                None if kind == "forced" else self.false_accept,
            )
        return result

    def fault(self, job: Job) -> tuple[str, str | None]:
        """The result for `job` and the kind of fault it would be if wrong."""
        behaviour = self.behaviour
        if behaviour in ("whale", "sybil-junk"):
            self.lies += 1
            return "junk", wrong_answer(job.task_hash, self.address, b"junk")
        if behaviour == "copying":
            earlier = [result for node, result in job.results if node != self.address]
            return "copy", earlier[0] if earlier else None
        if behaviour == "late-copying":
            if self.forced_error(job):
                return "forced", wrong_answer(job.task_hash, self.address, b"forced")
            done = [result for node, result in job.results if node in job.verified]
            return "copy", done[0] if done else None
        if self.forced_error(job):
            return "forced", wrong_answer(job.task_hash, self.address, b"forced")
        if behaviour == "wrong" and self.rng.random() < self.p:
            return "wrong", wrong_answer(job.task_hash, self.address, b"wrong")
        if behaviour in FAULTY_OUTPUTS:
            return behaviour, wrong_answer(job.task_hash, self.address, behaviour.encode())
        return behaviour, self.output(job, crypto.task_seed(job.task_hash, self.address))

    def verdict(self, job: Job, check: Check) -> bool:
        behaviour = self.behaviour
        if behaviour == "lazy":
            return True
        if behaviour == "sybil-voter" and check.submitter == self.partner:
            return True
        if behaviour == "wrong" and self.rng.random() < self.p:
            return False  # its recomputation came out wrong: it matches no result
        truth = check.result == self.output(job, check.seed)
        if behaviour == "whale":
            self.lies += 1
            return not truth
        return self.verification.verdict(job.task_hash, self.address, check.submitter, truth)


class Sender:
    """A task sender: `rate` tasks per block until `count` are sent, each with
    `target_count` slots. A whale's colluding sender sends single-slot tasks."""

    def __init__(
        self,
        key: bytes,
        count: int,
        rate: int,
        target_count: int,
        tag: str,
        temperature: float | None = None,
    ) -> None:
        self.key = key
        self.address = crypto.address_of_private_key(key)
        self.remaining = count
        self.rate = rate
        self.target_count = target_count
        self.tag = tag
        self.model_options = (
            "" if temperature is None else wire.hex0x(f'{{"temperature":{temperature:g}}}'.encode())
        )
        self.nonce = 0

    def decide(self) -> list[Message]:
        out: list[Message] = []
        for _ in range(min(self.rate, self.remaining)):
            prompt = f"{self.tag} task {self.nonce}"
            out.append(
                SubmitTask(
                    sender=self.address,
                    nonce=self.nonce,
                    schema="text",
                    target_count=self.target_count,
                    prompts=wire.hex0x(prompt.encode()),
                    model_options=self.model_options,
                )
            )
            self.nonce += 1
            self.remaining -= 1
        return out
