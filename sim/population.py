"""What a simulation runs: a population of behaviours with their counts and stakes, the task
count and rate, the genesis params overrides and a seed; read from CLI flags or a JSON file.

A group is written `COUNT*BEHAVIOUR[@STAKE]` on the command line (`8*honest`,
`2*wrong:0.2`, `1*whale@40000`; the stake in whole AEGIS) and as
`{"behaviour": ..., "count": ..., "stake": ..., "falseAccept": ...}` in JSON. The verification's
error rates (`falseReject`, `falseAccept` by fault kind, a group's own `falseAccept` for its
wrong results), the tasks' `temperature` and the nodes' `minTemperature` default to today's
exact model: every verdict the truth, every task at the backend's default temperature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from chain.protocol.errors import GenesisError
from chain.protocol.genesis import PARAM_FIELDS, Params, _params
from sim.verification import ANY_FAULT, FAULT_KINDS, ErrorRates

UNIT = 10**18
DEFAULT_STAKE = 2_000  # AEGIS, as a dev resource node stakes
BEHAVIOURS = (
    "honest",
    "wrong",
    "lazy",
    "copying",
    "late-copying",
    "silent",
    "sybil-pair",
    "whale",
    "other-prompt",
    "truncated",
    "other-model",
)
# The behaviours the chain should make lose against honest work (property 4 of the tests).
BAD_BEHAVIOURS = ("wrong", "lazy", "copying", "silent", "sybil-pair", "whale")
# The faults of real-model networks: wrong results of their own kind (sim.verification).
OUTPUT_FAULTS = ("other-prompt", "truncated", "other-model")
GROUP_TEXT = re.compile(r"(?:(\d+)\*)?([a-z-]+)(?::([0-9.]+))?(?:@(\d+))?")


class PopulationError(ValueError):
    """A population that cannot run, naming what is wrong."""


@dataclass(frozen=True, slots=True)
class Group:
    """`count` nodes of one behaviour, each staking `stake` AEGIS. `wrong` carries its
    probability `p`; a `sybil-pair` group of count n is n pairs (2n addresses).
    `false_accept`, when given, is how often an honest verifier accepts this group's wrong
    results (its forced errors aside), instead of the rate of their fault kind."""

    behaviour: str
    count: int = 1
    stake: int = DEFAULT_STAKE
    p: float = 0.0
    false_accept: float | None = None

    @property
    def label(self) -> str:
        return f"wrong:{self.p:g}" if self.behaviour == "wrong" else self.behaviour

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"behaviour": self.label, "count": self.count, "stake": self.stake}
        if self.false_accept is not None:
            out["falseAccept"] = self.false_accept
        return out


@dataclass(frozen=True, slots=True)
class Population:
    """One simulation's input. `params` are genesis params overrides by their wire names."""

    groups: tuple[Group, ...]
    tasks: int = 400
    seed: int = 1
    params: dict[str, Any] = field(default_factory=dict)
    task_rate: int = 4  # tasks the sender submits per block
    target_count: int = 3
    errors: ErrorRates = field(default_factory=ErrorRates)
    temperature: float | None = None  # the tasks' modelOptions.temperature; None: not named
    min_temperature: float = 0.0  # nodes raise tasks with targetCount > 1 to at least this

    def chain_params(self) -> Params:
        """The genesis params: the sim's deadlines (shorter than the chain's defaults, so a
        run takes fewer blocks) under the overrides given."""
        base = {"blockTimeMs": 1000, "computeDeadlineBlocks": 10, "verifyDeadlineBlocks": 10}
        try:
            return _params({**base, **self.params})
        except GenesisError as exc:
            raise PopulationError(str(exc)) from exc

    def with_seed(self, seed: int) -> Population:
        return replace(self, seed=seed)

    def with_errors(self, errors: ErrorRates) -> Population:
        return replace(self, errors=errors)

    def to_json(self) -> dict[str, Any]:
        out = {
            "nodes": [g.to_json() for g in self.groups],
            "tasks": self.tasks,
            "seed": self.seed,
            "params": dict(self.params),
            "taskRate": self.task_rate,
            "targetCount": self.target_count,
        }
        if not self.errors.exact:
            out.update(self.errors.to_json())
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.min_temperature:
            out["minTemperature"] = self.min_temperature
        return out


def parse_group(text: str) -> Group:
    """`COUNT*BEHAVIOUR[:P][@STAKE]` -> Group."""
    match = GROUP_TEXT.fullmatch(text.strip())
    if match is None:
        raise PopulationError(f"{text!r}: expected COUNT*BEHAVIOUR[@STAKE], e.g. 8*honest")
    count, behaviour, p, stake = match.groups()
    return make_group(
        behaviour,
        int(count) if count else 1,
        int(stake) if stake else DEFAULT_STAKE,
        float(p) if p is not None else None,
        text,
    )


def make_group(
    behaviour: str,
    count: int,
    stake: int,
    p: float | None,
    where: str,
    false_accept: float | None = None,
) -> Group:
    if behaviour not in BEHAVIOURS:
        raise PopulationError(f"{where}: unknown behaviour {behaviour!r}; one of {BEHAVIOURS}")
    if (p is not None) != (behaviour == "wrong"):
        raise PopulationError(f"{where}: only wrong takes a probability (wrong:P)")
    if p is not None and not 0.0 <= p <= 1.0:
        raise PopulationError(f"{where}: P must be between 0 and 1")
    if count < 1 or stake < 1:
        raise PopulationError(f"{where}: count and stake must be at least 1")
    return Group(behaviour, count, stake, p or 0.0, false_accept)


def rate(value: Any, where: str) -> float:
    """A probability from 0 to 1."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise PopulationError(f"{where}: expected a rate from 0 to 1")
    return float(value)


def false_accept_rates(value: Any, where: str = "falseAccept") -> dict[str, float]:
    """`falseAccept`: one rate for every fault, or {kind: rate} (`*` for the kinds not named)."""
    if not isinstance(value, dict):
        return {ANY_FAULT: rate(value, where)}
    kinds = (ANY_FAULT, *FAULT_KINDS)
    for kind in value:
        if kind not in kinds:
            raise PopulationError(f"{where}: unknown fault kind {kind!r}; one of {kinds}")
    return {kind: rate(v, f"{where}.{kind}") for kind, v in value.items()}


def temperature(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 2:
        raise PopulationError(f"{where}: expected a temperature from 0 to 2")
    return float(value)


def population_from_json(obj: Any) -> Population:
    """The JSON form: {"nodes": [{"behaviour", "count", "stake"}], "tasks", "seed",
    "params", "taskRate", "targetCount"} (all but nodes optional)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("nodes"), list):
        raise PopulationError("expected an object with a list `nodes`")
    known = {
        "nodes",
        "tasks",
        "seed",
        "params",
        "taskRate",
        "targetCount",
        "falseReject",
        "falseAccept",
        "temperature",
        "minTemperature",
    }
    unknown = set(obj) - known
    if unknown:
        raise PopulationError(f"unknown fields {sorted(unknown)}; expected {sorted(known)}")
    groups = []
    for i, item in enumerate(obj["nodes"]):
        where = f"nodes[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("behaviour"), str):
            raise PopulationError(f"{where}: expected an object with a `behaviour`")
        name, _, p = item["behaviour"].partition(":")
        groups.append(
            make_group(
                name,
                _int(item.get("count", 1), f"{where}.count"),
                _int(item.get("stake", DEFAULT_STAKE), f"{where}.stake"),
                float(p) if p else None,
                where,
                None
                if item.get("falseAccept") is None
                else rate(item["falseAccept"], f"{where}.falseAccept"),
            )
        )
    params = obj.get("params", {})
    if not isinstance(params, dict) or any(k not in PARAM_FIELDS for k in params):
        raise PopulationError(f"params: an object of genesis params ({', '.join(PARAM_FIELDS)})")
    return checked(
        Population(
            tuple(groups),
            tasks=_int(obj.get("tasks", 400), "tasks"),
            seed=_int(obj.get("seed", 1), "seed", 0),
            params=params,
            task_rate=_int(obj.get("taskRate", 4), "taskRate"),
            target_count=_int(obj.get("targetCount", 3), "targetCount"),
            errors=ErrorRates.of(
                rate(obj.get("falseReject", 0), "falseReject"),
                false_accept_rates(obj.get("falseAccept", {})),
            ),
            temperature=(
                None
                if obj.get("temperature") is None
                else temperature(obj["temperature"], "temperature")
            ),
            min_temperature=temperature(obj.get("minTemperature", 0), "minTemperature"),
        )
    )


def checked(population: Population) -> Population:
    """The population, once it can run: nodes to verify, and its params valid."""
    nodes = sum(g.count * (2 if g.behaviour == "sybil-pair" else 1) for g in population.groups)
    if nodes < 2:
        raise PopulationError("at least two resource nodes are needed (no self-vote)")
    params = population.chain_params()
    if not 1 <= population.target_count <= params.max_target_count:
        raise PopulationError(f"targetCount must be between 1 and {params.max_target_count}")
    return population


def _int(value: Any, where: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise PopulationError(f"{where}: expected an integer of at least {low}")
    return value
