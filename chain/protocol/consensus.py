"""Tendermint BFT consensus for one validator, as a pure state machine (PROTOCOL 6).

This is Algorithm 1 of "The latest gossip on BFT consensus" (Buchman, Kwon, Milosevic, 2018)
written as events in, actions out. `Tendermint` never touches the network, the disk or the
clock: the node feeds it events (`start`, `on_proposal`, `on_vote`, `on_timeout`, `on_value`,
`recheck`) and carries out the actions each call returns (`Broadcast`, `ScheduleTimeout`,
`RequestValue`, `Decide`). Signatures are checked by the node before a message comes in and
added by the node to what goes out; values are 32-byte block hashes, and the injected
predicate `valid(value)` says whether the node holds that block and it re-executes.

The upon-rules, by line of Algorithm 1 (arXiv 1807.04938v3), all for the current height h_p:

- 11 StartRound: the proposer proposes validValue (with validRound), or asks the node for a
  fresh value with `RequestValue`; everyone else schedules timeoutPropose.
- 22 PROPOSAL(round_p, v, -1) in step propose: prevote v if valid and not locked on another
  value, else nil.
- 28 PROPOSAL(round_p, v, vr) with 0 <= vr < round_p and 2f+1 PREVOTE(vr, v) in step propose:
  prevote v if valid and (lockedRound <= vr or lockedValue = v), else nil.
- 34 2f+1 PREVOTE(round_p, *) in step prevote, first time: schedule timeoutPrevote.
- 36 PROPOSAL(round_p, v) and 2f+1 PREVOTE(round_p, v), valid(v), step >= prevote, first time:
  in step prevote lock v and precommit it; in any case validValue = v, validRound = round_p.
- 44 2f+1 PREVOTE(round_p, nil) in step prevote: precommit nil.
- 47 2f+1 PRECOMMIT(round_p, *), first time: schedule timeoutPrecommit.
- 49 PROPOSAL(r, v) and 2f+1 PRECOMMIT(r, v) for any round r, valid(v): `Decide`.
- 55 f+1 messages of any kind from round r > round_p: StartRound(r).
- 57-67 the three timeouts, each ignored unless it is for the current height, round and step.

"2f+1" is voting power strictly above 2/3 of the total (`ValidatorSet.quorum`) and "f+1" power
strictly above 1/3 (`ValidatorSet.f_plus_one`); power is summed over distinct validators.

Choices where the paper leaves room, each for a reason:

- Broadcast includes the sender: the machine records its own proposals and votes in its log
  at once. Feeding them back in later is harmless (an identical message is a duplicate).
- The message log counts messages as the paper does: a validator counts once in every "any"
  threshold (34, 47, 55), and an identical message twice is counted once. A validator that
  votes two different values in one (round, type) equivocates: both votes are kept (up to
  `MAX_VALUES_PER_VOTER`) and recorded as `Equivocation` evidence, and each counts towards
  its own value. Counting only the first would let an equivocator that shows different votes
  to different validators split their views for good (one locks, the others never see the
  quorum the lock came from); counting both is safe because two quorums for different
  values share more than 1/3 of the power, so they share an honest validator, who never
  votes twice. The same holds for proposals (up to `MAX_PROPOSALS_PER_ROUND` per round).
- Messages of height h_p + 1 are buffered (up to `max_buffered`) and replayed by
  `start(h_p + 1)`; older heights, later heights and non-validators are ignored, and so are
  messages more than `max_round_ahead` rounds above round_p (they would cost memory and
  proposer computation without end; gossip re-sends them once they come into range).
- A proposer waiting for `on_value` also schedules timeoutPropose (as CometBFT does), so a
  node that never answers cannot stall it; the answer is ignored once the round or step moved.
- `valid` is asked again whenever a rule needs it until it says yes (a node may receive the
  block after its hash); `recheck()` re-runs the rules after the node learned new blocks.
- After `Decide` the machine waits for `start(h + 1)`; the node commits first.
- Timeouts grow with the round: duration = base + round * delta, per kind (`Timeouts`), up to
  an optional ceiling (a validator that comes back after a long outage then does not wait
  minutes for the round the others reached).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from chain.protocol.types import Vote

if TYPE_CHECKING:
    from chain.protocol.genesis import Genesis

HASH_LENGTH = 32
PREVOTE: Literal["prevote"] = "prevote"
PRECOMMIT: Literal["precommit"] = "precommit"
VOTE_TYPES = (PREVOTE, PRECOMMIT)
TIMEOUT_KINDS = ("propose", "prevote", "precommit")

# distinct values kept per (validator, round, vote type), and proposals kept per round:
# anything past this is an equivocator's noise, already on record as evidence
MAX_VALUES_PER_VOTER = 4
MAX_PROPOSALS_PER_ROUND = 4
# proposer priorities are kept every this many selection runs to answer earlier rounds fast
PROPOSER_CHECKPOINT_RUNS = 256
PROPOSER_MEMO_SIZE = 4096

VoteType = Literal["prevote", "precommit"]
TimeoutKind = Literal["propose", "prevote", "precommit"]


# Validators and the proposer


class _ProposerSchedule:
    """The proposer-priority runs of a fixed validator set, with checkpoints (no I/O)."""

    __slots__ = (
        "_addresses",
        "_checkpoints",
        "_cursor",
        "_cursor_run",
        "_keys",
        "_memo",
        "_powers",
        "_total",
    )

    def __init__(self, validators: tuple[tuple[str, int], ...]) -> None:
        self._addresses = [address for address, _power in validators]
        self._keys = [address.lower() for address in self._addresses]
        self._powers = [power for _address, power in validators]
        self._total = sum(self._powers)
        zeros = [0] * len(validators)
        self._checkpoints: dict[int, tuple[int, ...]] = {0: tuple(zeros)}
        self._cursor_run = 0
        self._cursor = zeros
        self._memo: dict[int, int] = {}

    def proposer_of_run(self, run: int) -> str:
        """The validator chosen by selection run number `run` (1-based) from zero priorities."""
        if run in self._memo:
            return self._addresses[self._memo[run]]
        done = run - 1
        if self._cursor_run <= done:
            at, priorities = self._cursor_run, self._cursor
        else:
            at = done - done % PROPOSER_CHECKPOINT_RUNS
            priorities = list(self._checkpoints[at])
        chosen = -1
        while at < run:
            chosen = self._select(priorities)
            at += 1
            if at % PROPOSER_CHECKPOINT_RUNS == 0:
                self._checkpoints[at] = tuple(priorities)
        self._cursor_run, self._cursor = at, priorities
        if len(self._memo) >= PROPOSER_MEMO_SIZE:
            self._memo.clear()
        self._memo[run] = chosen
        return self._addresses[chosen]

    def _select(self, priorities: list[int]) -> int:
        """One run of CometBFT's IncrementProposerPriority(1); returns the chosen index."""
        total = self._total
        spread = max(priorities) - min(priorities)
        limit = 2 * total
        if spread > limit:
            ratio = -(-spread // limit)
            priorities[:] = [_div_toward_zero(p, ratio) for p in priorities]
        average = sum(priorities) // len(priorities)
        best = -1
        for i, power in enumerate(self._powers):
            priorities[i] += power - average
            if (
                best < 0
                or priorities[i] > priorities[best]
                or (priorities[i] == priorities[best] and self._keys[i] < self._keys[best])
            ):
                best = i
        priorities[best] -= total
        return best


def _div_toward_zero(numerator: int, denominator: int) -> int:
    quotient = abs(numerator) // denominator
    return quotient if numerator >= 0 else -quotient


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """The validators of a height as (address, voting power), power taken from stake.

    Kept sorted by power (highest first), then address. `quorum` is the smallest power strictly
    above 2/3 of the total (the paper's 2f+1), `f_plus_one` the smallest strictly above 1/3.

    `proposer(height, round)` is Tendermint's proposer priority (stake-weighted round robin),
    exactly as CometBFT's `IncrementProposerPriority(1)` repeated, starting from priority 0
    for every validator:

    1. if max(priority) - min(priority) > 2 * total, divide every priority by
       ceil(spread / (2 * total)), rounding toward zero;
    2. subtract floor(sum(priority) / count) from every priority (centering);
    3. add each validator's power to its priority;
    4. the validator with the highest priority is chosen (ties: the lowest address, compared
       as lower-case hex); its priority drops by the total power.

    The proposer of (height, round) is the one chosen by run number height + round: as in
    CometBFT, the set advances one run per height and one more per round of the height, so
    rounds move to the next validator and proposer(h, r) == proposer(h + r, 0). Over any
    `total` consecutive runs each validator is chosen about `power` times. Everything is an
    integer function of the set, so every validator computes the same proposer.
    """

    validators: tuple[tuple[str, int], ...]
    _power: dict[str, int] = field(init=False, repr=False, compare=False)
    _schedule: _ProposerSchedule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.validators:
            raise ValueError("a validator set needs at least one validator")
        power: dict[str, int] = {}
        for address, amount in self.validators:
            if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
                raise ValueError(f"validator {address}: voting power must be a positive int")
            if address in power:
                raise ValueError(f"validator {address} is listed twice")
            power[address] = amount
        ordered = tuple(sorted(self.validators, key=lambda item: (-item[1], item[0].lower())))
        object.__setattr__(self, "validators", ordered)
        object.__setattr__(self, "_power", power)
        object.__setattr__(self, "_schedule", _ProposerSchedule(ordered))

    @classmethod
    def from_stakes(cls, stakes: Mapping[str, int] | Iterable[tuple[str, int]]) -> ValidatorSet:
        """A set whose voting power is the stake; validators without stake are left out."""
        pairs = stakes.items() if isinstance(stakes, Mapping) else stakes
        return cls(tuple((address, stake) for address, stake in pairs if stake > 0))

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> ValidatorSet:
        return cls.from_stakes((v.address, v.stake) for v in genesis.validators)

    @property
    def total_power(self) -> int:
        return sum(self._power.values())

    @property
    def quorum(self) -> int:
        """Smallest power strictly more than 2/3 of the total (2f+1)."""
        return 2 * self.total_power // 3 + 1

    @property
    def f_plus_one(self) -> int:
        """Smallest power strictly more than 1/3 of the total (f+1): one honest at least."""
        return self.total_power // 3 + 1

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(address for address, _power in self.validators)

    def power(self, address: str) -> int:
        """Voting power of `address`; 0 for a non-validator."""
        return self._power.get(address, 0)

    def __contains__(self, address: object) -> bool:
        return address in self._power

    def __len__(self) -> int:
        return len(self.validators)

    def proposer(self, height: int, round_: int) -> str:
        if height < 1 or round_ < 0:
            raise ValueError(f"no proposer for height {height}, round {round_}")
        return self._schedule.proposer_of_run(height + round_)


# Messages (signatures stay with the node)


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_LENGTH:
        raise ValueError(f"{what} must be a {HASH_LENGTH}-byte block hash")


def _check_position(height: int, round_: int) -> None:
    if height < 1:
        raise ValueError(f"height must be at least 1, got {height}")
    if round_ < 0:
        raise ValueError(f"round must not be negative, got {round_}")


@dataclass(frozen=True, slots=True)
class Proposal:
    """PROPOSAL(height, round, value, validRound) from `proposer`; valid_round -1 if none."""

    height: int
    round: int
    value: bytes
    valid_round: int
    proposer: str

    def __post_init__(self) -> None:
        _check_position(self.height, self.round)
        _check_hash(self.value, "a proposal value")
        if self.valid_round < -1:
            raise ValueError(f"validRound must be -1 or a round, got {self.valid_round}")


@dataclass(frozen=True, slots=True)
class VoteMsg:
    """PREVOTE or PRECOMMIT from `validator`; value None is nil."""

    height: int
    round: int
    type: VoteType
    value: bytes | None
    validator: str

    def __post_init__(self) -> None:
        _check_position(self.height, self.round)
        if self.type not in VOTE_TYPES:
            raise ValueError(f"vote type must be prevote or precommit, got {self.type!r}")
        if self.value is not None:
            _check_hash(self.value, "a vote value")

    @classmethod
    def from_vote(cls, vote: Vote) -> VoteMsg:
        """The unsigned content of a signed `types.Vote` (empty block hash is nil)."""
        if vote.type not in VOTE_TYPES:
            raise ValueError(f"vote type must be prevote or precommit, got {vote.type!r}")
        vote_type: VoteType = PREVOTE if vote.type == PREVOTE else PRECOMMIT
        value = vote.block_hash or None
        return cls(vote.height, vote.round, vote_type, value, vote.validator)

    @property
    def block_hash(self) -> bytes:
        """The value as `chain.protocol.types.Vote` spells it: empty bytes for nil."""
        return self.value if self.value is not None else b""


Message = Proposal | VoteMsg


@dataclass(frozen=True, slots=True)
class Equivocation:
    """Two different messages from one validator for the same (height, round, kind)."""

    first: Message
    second: Message

    @property
    def validator(self) -> str:
        return _sender(self.first)


def _sender(message: Message) -> str:
    return message.proposer if isinstance(message, Proposal) else message.validator


# Actions


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Sign `message` (persist a vote first) and send it to every validator."""

    message: Message


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    """Call `on_timeout(kind, height, round)` after `duration_ms`."""

    kind: TimeoutKind
    height: int
    round: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class RequestValue:
    """This validator proposes at (height, round): answer with `on_value` and a block hash."""

    height: int
    round: int


@dataclass(frozen=True, slots=True)
class Decide:
    """`value` is decided at `height`, committed by `precommits` (more than 2/3 of power)."""

    height: int
    round: int
    value: bytes
    precommits: tuple[VoteMsg, ...]


Action = Broadcast | ScheduleTimeout | RequestValue | Decide


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Timeout durations in milliseconds: base + round * delta, per kind, at most `max_ms`."""

    propose_ms: int = 3000
    propose_delta_ms: int = 500
    prevote_ms: int = 1000
    prevote_delta_ms: int = 500
    precommit_ms: int = 1000
    precommit_delta_ms: int = 500

    max_ms: int | None = None

    def duration_ms(self, kind: TimeoutKind, round_: int) -> int:
        if kind == "propose":
            duration = self.propose_ms + round_ * self.propose_delta_ms
        elif kind == "prevote":
            duration = self.prevote_ms + round_ * self.prevote_delta_ms
        elif kind == "precommit":
            duration = self.precommit_ms + round_ * self.precommit_delta_ms
        else:
            raise ValueError(f"unknown timeout kind {kind!r}")
        return duration if self.max_ms is None else min(duration, self.max_ms)


class Step(enum.IntEnum):
    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2


# The message log of one round


class _Tally:
    """Votes of one (round, type): each validator's votes by value, power by value."""

    __slots__ = ("by_value", "power", "votes")

    def __init__(self) -> None:
        self.votes: dict[str, dict[bytes | None, VoteMsg]] = {}
        self.by_value: dict[bytes | None, int] = {}
        self.power = 0  # distinct voters, whatever they voted


class _RoundLog:
    __slots__ = ("precommits", "prevotes", "proposals", "sender_power", "senders")

    def __init__(self) -> None:
        self.proposals: list[Proposal] = []
        self.prevotes = _Tally()
        self.precommits = _Tally()
        self.senders: set[str] = set()
        self.sender_power = 0


# The state machine


class Tendermint:
    """Algorithm 1 for the validator `address`; every event returns the actions to take."""

    def __init__(
        self,
        validators: ValidatorSet,
        address: str,
        valid: Callable[[bytes], bool],
        *,
        timeouts: Timeouts | None = None,
        max_buffered: int = 1024,
        max_round_ahead: int = 100,
    ) -> None:
        if address not in validators:
            raise ValueError(f"{address} is not in the validator set")
        self.validators = validators
        self.address = address
        self._valid = valid
        self.timeouts = timeouts or Timeouts()
        self.max_buffered = max_buffered
        self.max_round_ahead = max_round_ahead

        self._height = 0
        self._round = 0
        self._step = Step.PROPOSE
        self._running = False
        self._decision: Decide | None = None
        self._locked_value: bytes | None = None
        self._locked_round = -1
        self._valid_value: bytes | None = None
        self._valid_round = -1
        self._rounds: dict[int, _RoundLog] = {}
        self._sent: dict[tuple[int, str], bytes | None] = {}
        self._known_valid: set[bytes] = set()
        self._awaiting_value = False
        self._prevote_timeout_scheduled = False
        self._precommit_timeout_scheduled = False
        self._prevote_quorum_seen = False
        self._buffer: list[Message] = []
        self._evidence: list[Equivocation] = []

    # What the node may read

    @property
    def height(self) -> int:
        return self._height

    @property
    def round(self) -> int:
        return self._round

    @property
    def step(self) -> Step:
        return self._step

    @property
    def running(self) -> bool:
        """False before `start`, and after `Decide` until the next `start`."""
        return self._running

    @property
    def decision(self) -> Decide | None:
        """The `Decide` of the current height, once there is one."""
        return self._decision

    @property
    def locked_value(self) -> bytes | None:
        return self._locked_value

    @property
    def locked_round(self) -> int:
        return self._locked_round

    @property
    def valid_value(self) -> bytes | None:
        return self._valid_value

    @property
    def valid_round(self) -> int:
        return self._valid_round

    @property
    def evidence(self) -> tuple[Equivocation, ...]:
        return tuple(self._evidence)

    def take_evidence(self) -> list[Equivocation]:
        """The equivocations seen since the last call (the node reports or slashes them)."""
        taken, self._evidence = self._evidence, []
        return taken

    # Events

    def start(self, height: int, round_: int = 0, signed: Iterable[VoteMsg] = ()) -> list[Action]:
        """Begin `height` at `round_` (after committing the previous height, or after syncing).

        `signed` are the votes this validator already signed at `height` in an earlier run
        (the node keeps them on disk): they are recorded as sent, so no conflicting vote is
        ever asked for, and the lock they imply is restored (a precommit for v in round r is
        only ever sent with lockedValue = v, lockedRound = r). A restarted validator starts
        at the last round it signed in: the others may be waiting there for its votes.
        """
        if height <= self._height:
            raise ValueError(f"cannot start height {height}: already at {self._height}")
        self._height = height
        self._running = True
        self._decision = None
        self._locked_value, self._locked_round = None, -1
        self._valid_value, self._valid_round = None, -1
        self._rounds = {}
        self._sent = {}
        self._known_valid = set()
        for vote in signed:
            if vote.height != height or vote.validator != self.address:
                raise ValueError(f"{vote} is not a vote of {self.address} at height {height}")
            self._sent[(vote.round, vote.type)] = vote.value
            self._record_vote(vote)
            if (
                vote.type == PRECOMMIT
                and vote.value is not None
                and vote.round > self._locked_round
            ):
                self._locked_value, self._locked_round = vote.value, vote.round
                self._valid_value, self._valid_round = vote.value, vote.round
        out: list[Action] = []
        self._start_round(round_, out)
        buffered, self._buffer = self._buffer, []
        for message in buffered:
            self._admit(message)
        self._run_rules(out)
        return out

    def on_proposal(self, proposal: Proposal) -> list[Action]:
        return self._on_message(proposal)

    def on_vote(self, vote: VoteMsg) -> list[Action]:
        return self._on_message(vote)

    def on_message(self, message: Message) -> list[Action]:
        return self._on_message(message)

    def on_timeout(self, kind: TimeoutKind, height: int, round_: int) -> list[Action]:
        if kind not in TIMEOUT_KINDS:
            raise ValueError(f"unknown timeout kind {kind!r}")
        out: list[Action] = []
        if not self._running or height != self._height or round_ != self._round:
            return out
        if kind == "propose":
            if self._step == Step.PROPOSE:  # line 57
                self._step = Step.PREVOTE
                self._vote(PREVOTE, None, out)
        elif kind == "prevote":
            if self._step == Step.PREVOTE:  # line 61
                self._step = Step.PRECOMMIT
                self._vote(PRECOMMIT, None, out)
        else:
            self._start_round(self._round + 1, out)  # line 65
        self._run_rules(out)
        return out

    def on_value(self, height: int, round_: int, value: bytes) -> list[Action]:
        """The node's answer to `RequestValue(height, round)`: a block hash to propose."""
        out: list[Action] = []
        if not (
            self._running
            and self._awaiting_value
            and height == self._height
            and round_ == self._round
            and self._step == Step.PROPOSE
        ):
            return out
        self._awaiting_value = False
        if self._valid_value is not None:
            self._propose(self._valid_value, self._valid_round, out)
        else:
            self._propose(value, -1, out)
        self._run_rules(out)
        return out

    def recheck(self) -> list[Action]:
        """Run the rules again: `valid` may say yes now (the node received a block)."""
        out: list[Action] = []
        self._run_rules(out)
        return out

    # Intake

    def _on_message(self, message: Message) -> list[Action]:
        out: list[Action] = []
        if self._admit(message):
            self._run_rules(out)
        return out

    def _admit(self, message: Message) -> bool:
        """Record a message of the running height, buffer one of the next; True if recorded."""
        sender = _sender(message)
        if sender not in self.validators:
            return False
        if message.height == self._height + 1:
            if len(self._buffer) < self.max_buffered:
                self._buffer.append(message)
            return False
        if not self._running or message.height != self._height:
            return False
        if message.round > self._round + self.max_round_ahead:
            return False
        if isinstance(message, Proposal):
            if sender != self.validators.proposer(message.height, message.round):
                return False
            return self._record_proposal(message)
        return self._record_vote(message)

    def _log(self, round_: int) -> _RoundLog:
        log = self._rounds.get(round_)
        if log is None:
            log = self._rounds[round_] = _RoundLog()
        return log

    def _add_sender(self, log: _RoundLog, sender: str) -> None:
        if sender not in log.senders:
            log.senders.add(sender)
            log.sender_power += self.validators.power(sender)

    def _record_proposal(self, proposal: Proposal) -> bool:
        log = self._log(proposal.round)
        if proposal in log.proposals or len(log.proposals) >= MAX_PROPOSALS_PER_ROUND:
            return False
        if log.proposals:
            self._evidence.append(Equivocation(log.proposals[0], proposal))
        log.proposals.append(proposal)
        self._add_sender(log, proposal.proposer)
        return True

    def _record_vote(self, vote: VoteMsg) -> bool:
        log = self._log(vote.round)
        tally = log.prevotes if vote.type == PREVOTE else log.precommits
        power = self.validators.power(vote.validator)
        earlier = tally.votes.get(vote.validator)
        if earlier is None:
            tally.votes[vote.validator] = {vote.value: vote}
            tally.power += power
            self._add_sender(log, vote.validator)
        elif vote.value in earlier or len(earlier) >= MAX_VALUES_PER_VOTER:
            return False
        else:
            self._evidence.append(Equivocation(next(iter(earlier.values())), vote))
            earlier[vote.value] = vote
        tally.by_value[vote.value] = tally.by_value.get(vote.value, 0) + power
        return True

    # Output

    def _timeout(self, kind: TimeoutKind) -> ScheduleTimeout:
        duration = self.timeouts.duration_ms(kind, self._round)
        return ScheduleTimeout(kind, self._height, self._round, duration)

    def _propose(self, value: bytes, valid_round: int, out: list[Action]) -> None:
        proposal = Proposal(self._height, self._round, value, valid_round, self.address)
        out.append(Broadcast(proposal))
        self._record_proposal(proposal)

    def _vote(self, vote_type: VoteType, value: bytes | None, out: list[Action]) -> None:
        key = (self._round, vote_type)
        if key in self._sent:
            # signed before (this run, or an earlier one given to `start`): never sign again
            return
        self._sent[key] = value
        vote = VoteMsg(self._height, self._round, vote_type, value, self.address)
        out.append(Broadcast(vote))
        self._record_vote(vote)

    def _is_valid(self, value: bytes) -> bool:
        if value in self._known_valid:
            return True
        if self._valid(value):
            self._known_valid.add(value)
            return True
        return False

    def _prevote_power(self, round_: int, value: bytes | None) -> int:
        log = self._rounds.get(round_)
        return 0 if log is None else log.prevotes.by_value.get(value, 0)

    # StartRound and the upon-rules

    def _start_round(self, round_: int, out: list[Action]) -> None:
        self._round = round_
        self._step = Step.PROPOSE
        self._awaiting_value = False
        self._prevote_timeout_scheduled = False
        self._precommit_timeout_scheduled = False
        self._prevote_quorum_seen = False
        if self.validators.proposer(self._height, round_) == self.address:
            if self._valid_value is not None:
                self._propose(self._valid_value, self._valid_round, out)
                return
            self._awaiting_value = True
            out.append(RequestValue(self._height, round_))
        out.append(self._timeout("propose"))

    def _run_rules(self, out: list[Action]) -> None:
        """Fire enabled upon-rules one at a time until none is (each fires a bounded number
        of times: it changes the step, the round or a first-time flag, or decides)."""
        while self._running and (
            self._rule_decide(out)
            or self._rule_proposal(out)
            or self._rule_prevote_quorum_for_value(out)
            or self._rule_prevote_quorum_for_nil(out)
            or self._rule_skip_round(out)
            or self._rule_any_prevote_quorum(out)
            or self._rule_any_precommit_quorum(out)
        ):
            pass

    def _rule_decide(self, out: list[Action]) -> bool:  # line 49
        quorum = self.validators.quorum
        for round_, log in sorted(self._rounds.items()):
            for value, power in log.precommits.by_value.items():
                if value is None or power < quorum:
                    continue
                if not any(p.value == value for p in log.proposals):
                    continue
                if not self._is_valid(value):
                    continue
                precommits = tuple(
                    sorted(
                        (votes[value] for votes in log.precommits.votes.values() if value in votes),
                        key=lambda vote: vote.validator,
                    )
                )
                self._decision = Decide(self._height, round_, value, precommits)
                self._running = False
                self._awaiting_value = False
                out.append(self._decision)
                return True
        return False

    def _rule_proposal(self, out: list[Action]) -> bool:  # lines 22 and 28
        if self._step != Step.PROPOSE:
            return False
        log = self._rounds.get(self._round)
        if log is None:
            return False
        for proposal in log.proposals:
            value, valid_round = proposal.value, proposal.valid_round
            if valid_round == -1:
                accept = self._locked_round == -1 or self._locked_value == value
            elif (
                valid_round < self._round
                and self._prevote_power(valid_round, value) >= self.validators.quorum
            ):
                accept = self._locked_round <= valid_round or self._locked_value == value
            else:
                continue
            self._step = Step.PREVOTE
            self._vote(PREVOTE, value if accept and self._is_valid(value) else None, out)
            return True
        return False

    def _rule_prevote_quorum_for_value(self, out: list[Action]) -> bool:  # line 36
        if self._prevote_quorum_seen or self._step < Step.PREVOTE:
            return False
        log = self._rounds.get(self._round)
        if log is None:
            return False
        for proposal in log.proposals:
            value = proposal.value
            if log.prevotes.by_value.get(value, 0) < self.validators.quorum:
                continue
            if not self._is_valid(value):
                continue
            self._prevote_quorum_seen = True
            if self._step == Step.PREVOTE:
                self._locked_value, self._locked_round = value, self._round
                self._step = Step.PRECOMMIT
                self._vote(PRECOMMIT, value, out)
            self._valid_value, self._valid_round = value, self._round
            return True
        return False

    def _rule_prevote_quorum_for_nil(self, out: list[Action]) -> bool:  # line 44
        if self._step != Step.PREVOTE:
            return False
        if self._prevote_power(self._round, None) < self.validators.quorum:
            return False
        self._step = Step.PRECOMMIT
        self._vote(PRECOMMIT, None, out)
        return True

    def _rule_skip_round(self, out: list[Action]) -> bool:  # line 55
        threshold = self.validators.f_plus_one
        later = [
            round_
            for round_, log in self._rounds.items()
            if round_ > self._round and log.sender_power >= threshold
        ]
        if not later:
            return False
        self._start_round(max(later), out)
        return True

    def _rule_any_prevote_quorum(self, out: list[Action]) -> bool:  # line 34
        if self._prevote_timeout_scheduled or self._step != Step.PREVOTE:
            return False
        log = self._rounds.get(self._round)
        if log is None or log.prevotes.power < self.validators.quorum:
            return False
        self._prevote_timeout_scheduled = True
        out.append(self._timeout("prevote"))
        return True

    def _rule_any_precommit_quorum(self, out: list[Action]) -> bool:  # line 47
        if self._precommit_timeout_scheduled:
            return False
        log = self._rounds.get(self._round)
        if log is None or log.precommits.power < self.validators.quorum:
            return False
        self._precommit_timeout_scheduled = True
        out.append(self._timeout("precommit"))
        return True
