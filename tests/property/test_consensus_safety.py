"""Tendermint under a byzantine validator and a hostile network: safety always, liveness when fair.

A small discrete-event simulation runs one `chain.consensus.Tendermint` per honest validator
(three of four, one height after another) and a byzantine fourth with less than 1/3 of the
power. The byzantine validator is silent, equivocates (different proposals or votes to
different validators, for valid, invalid or nil values, sometimes for the next height or a
later round), or sends random messages. Hypothesis picks the powers, the byzantine validator
and its behaviour, the network's delays and losses, and the seed of the schedule.

- Hostile schedule: message delays up to seconds, some messages lost and sent again much
  later, timeouts stretched or shrunk so they fire in any order relative to messages. Checked:
  no two honest validators decide different values at a height; no honest validator signs
  two different votes for one (height, round, type); every decision is a valid value carried
  by precommits of more than 2/3 of the power.
- Fair schedule: every message arrives within 50 ms (the byzantine validator's messages are
  gossiped on to every honest validator, as the paper assumes), timeouts are seconds long.
  Checked in addition: every honest validator decides every height, at the latest in the first
  round whose proposer is honest (the paper's liveness argument after GST).
"""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.consensus import (
    Action,
    Broadcast,
    Decide,
    Message,
    Proposal,
    RequestValue,
    ScheduleTimeout,
    Tendermint,
    ValidatorSet,
    VoteMsg,
    VoteType,
)

ADDRESSES = tuple(f"0x{c * 40}" for c in "abcd")
POWERS = {
    "equal": (1, 1, 1, 1),
    "unequal": (5, 4, 3, 2),
    "stakes": (10_000 * 10**18, 7_000 * 10**18, 6_000 * 10**18, 3_000 * 10**18),
}
HEIGHTS = 3
MAX_EVENTS = 5000
FAIR_DELAY_MS = 50


def digest(*parts: object) -> bytes:
    return hashlib.sha256("/".join(map(str, parts)).encode()).digest()


@dataclass(frozen=True)
class Scenario:
    powers: tuple[int, ...]
    byzantine: str
    behaviour: str  # silent | equivocate | random
    fair: bool
    loss: float
    max_delay_ms: int
    seed: int


@dataclass(order=True)
class Event:
    at: float
    seq: int
    kind: str = field(compare=False)  # deliver | timeout | byzantine
    who: str = field(compare=False, default="")
    payload: Message | ScheduleTimeout | None = field(compare=False, default=None)


class Simulation:
    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        self.rng = random.Random(scenario.seed)
        self.vs = ValidatorSet(tuple(zip(ADDRESSES, scenario.powers, strict=True)))
        self.honest = [a for a in ADDRESSES if a != scenario.byzantine]
        self.valid: set[bytes] = {digest("byzantine-valid", h) for h in range(1, HEIGHTS + 2)}
        self.machines = {a: Tendermint(self.vs, a, self.valid.__contains__) for a in self.honest}
        self.events: list[Event] = []
        self.seq = 0
        self.now = 0.0
        self.decisions: dict[int, dict[str, Decide]] = {}
        self.signed: dict[tuple[str, int, int, str], bytes | None] = {}
        self.proposed: dict[int, list[bytes]] = {}

    # the network

    def push(
        self, at: float, kind: str, who: str = "", payload: Message | ScheduleTimeout | None = None
    ) -> None:
        self.seq += 1
        heapq.heappush(self.events, Event(at, self.seq, kind, who, payload))

    def delay(self) -> float:
        delay = self.rng.uniform(0, self.s.max_delay_ms)
        if self.rng.random() < self.s.loss:
            delay += self.rng.uniform(5_000, 20_000)  # lost; the gossip layer sends it again
        return delay

    def send(self, to: str, message: Message) -> None:
        self.push(self.now + self.delay(), "deliver", to, message)

    # honest validators

    def handle(self, who: str, actions: list[Action]) -> None:
        machine = self.machines[who]
        for action in actions:
            if isinstance(action, Broadcast):
                message = action.message
                if isinstance(message, VoteMsg):
                    key = (who, message.height, message.round, message.type)
                    assert self.signed.setdefault(key, message.value) == message.value, key
                for other in self.honest:
                    if other != who:
                        self.send(other, message)
            elif isinstance(action, ScheduleTimeout):
                stretch = 1.0 if self.s.fair else self.rng.uniform(0.1, 2.0)
                self.push(self.now + action.duration_ms * stretch, "timeout", who, action)
            elif isinstance(action, RequestValue):
                value = digest("value", action.height, action.round, who)
                self.valid.add(value)
                self.proposed.setdefault(action.height, []).append(value)
                self.handle(who, machine.on_value(action.height, action.round, value))
            elif isinstance(action, Decide):
                self.check_decision(who, action)
                if action.height < HEIGHTS:
                    self.handle(who, machine.start(action.height + 1))

    def check_decision(self, who: str, decision: Decide) -> None:
        assert decision.value in self.valid
        voters = [v.validator for v in decision.precommits]
        assert len(set(voters)) == len(voters)
        assert sum(self.vs.power(v) for v in voters) >= self.vs.quorum
        for vote in decision.precommits:
            assert (vote.height, vote.round, vote.type, vote.value) == (
                decision.height,
                decision.round,
                "precommit",
                decision.value,
            )
        at_height = self.decisions.setdefault(decision.height, {})
        assert who not in at_height
        for other, earlier in at_height.items():
            assert earlier.value == decision.value, (
                f"height {decision.height}: {other} decided {earlier.value.hex()}, "
                f"{who} decided {decision.value.hex()}"
            )
        at_height[who] = decision

    # the byzantine validator

    def byzantine_act(self) -> None:
        rng, me = self.rng, self.s.byzantine
        target = self.machines[rng.choice(self.honest)]
        height = target.height + (1 if rng.random() < 0.1 else 0)
        round_ = max(0, target.round + rng.choice((-1, 0, 0, 0, 1, 2)))
        values: list[bytes | None] = [
            *self.proposed.get(height, []),
            digest("byzantine-valid", height),
            digest("byzantine-invalid", height),
        ]
        kind = rng.choice(("proposal", "prevote", "precommit"))
        messages: list[Message] = []
        if kind == "proposal":
            mine = [r for r in range(round_, round_ + 12) if self.vs.proposer(height, r) == me]
            if not mine:
                return
            r = mine[0]
            for value in rng.sample(values, 2):
                assert value is not None
                messages.append(Proposal(height, r, value, rng.randint(-1, r), me))
        else:
            vote_type: VoteType = "prevote" if kind == "prevote" else "precommit"
            for value in rng.sample([*values, None], 2):
                messages.append(VoteMsg(height, round_, vote_type, value, me))
        if self.s.behaviour == "equivocate":
            plan = [(to, rng.choice(messages)) for to in self.honest]
        else:
            plan = [(to, messages[0]) for to in rng.sample(self.honest, rng.randint(1, 3))]
        for to, message in plan:
            self.send(to, message)
            for other in self.honest:  # gossip: honest validators pass messages on
                if other != to and (self.s.fair or rng.random() < 0.5):
                    self.send(other, message)

    # the run

    def done(self) -> bool:
        return all(
            len(self.decisions.get(h, {})) == len(self.honest) for h in range(1, HEIGHTS + 1)
        )

    def run(self) -> None:
        for who in self.honest:
            self.handle(who, self.machines[who].start(1))
        if self.s.behaviour != "silent":
            self.push(self.rng.uniform(0, 100), "byzantine")
        for _ in range(MAX_EVENTS):
            if not self.events or self.done():
                return
            event = heapq.heappop(self.events)
            self.now = event.at
            if event.kind == "byzantine":
                self.byzantine_act()
                self.push(self.now + self.rng.uniform(20, 400), "byzantine")
            elif event.kind == "timeout":
                assert isinstance(event.payload, ScheduleTimeout)
                t = event.payload
                self.handle(
                    event.who, self.machines[event.who].on_timeout(t.kind, t.height, t.round)
                )
            else:
                assert isinstance(event.payload, Proposal | VoteMsg)
                self.handle(event.who, self.machines[event.who].on_message(event.payload))


@st.composite
def scenarios(draw: st.DrawFn, powers: tuple[int, ...], fair: bool) -> Scenario:
    total = sum(powers)
    eligible = [a for a, p in zip(ADDRESSES, powers, strict=True) if 3 * p < total]
    return Scenario(
        powers=powers,
        byzantine=draw(st.sampled_from(eligible)),
        behaviour=draw(st.sampled_from(("silent", "equivocate", "random"))),
        fair=fair,
        loss=0.0 if fair else draw(st.sampled_from((0.0, 0.1, 0.3))),
        max_delay_ms=FAIR_DELAY_MS if fair else draw(st.sampled_from((100, 1000, 4000))),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("powers", ["equal", "unequal"])
@SETTINGS
@given(data=st.data())
def test_no_two_honest_validators_decide_differently(powers: str, data: st.DataObject) -> None:
    sim = Simulation(data.draw(scenarios(POWERS[powers], fair=False)))
    sim.run()
    for height, decided in sim.decisions.items():
        assert len({d.value for d in decided.values()}) == 1, height


@pytest.mark.parametrize("powers", ["equal", "stakes"])
@SETTINGS
@given(data=st.data())
def test_fair_schedule_decides_every_height_in_a_few_rounds(
    powers: str, data: st.DataObject
) -> None:
    sim = Simulation(data.draw(scenarios(POWERS[powers], fair=True)))
    sim.run()
    assert sim.done(), {h: sorted(d) for h, d in sim.decisions.items()}
    for height, decided in sim.decisions.items():
        honest_round = next(
            r for r in range(len(ADDRESSES)) if sim.vs.proposer(height, r) != sim.s.byzantine
        )
        assert max(d.round for d in decided.values()) <= honest_round


# Found by this simulation when an equivocator's votes counted only on first sight: one honest
# validator locked on a value whose quorum the others could never see, and no height decided.
STALLED_BY_FIRST_VOTE_COUNTING = [
    Scenario(POWERS["equal"], ADDRESSES[1], "equivocate", True, 0.0, 50, 2363175007),
    Scenario(POWERS["stakes"], ADDRESSES[2], "equivocate", True, 0.0, 50, 3370988051),
]


@pytest.mark.parametrize("scenario", STALLED_BY_FIRST_VOTE_COUNTING)
def test_an_equivocator_cannot_stall_a_fair_network(scenario: Scenario) -> None:
    sim = Simulation(scenario)
    sim.run()
    assert sim.done()
    assert sum(len(m.evidence) for m in sim.machines.values()) > 0
