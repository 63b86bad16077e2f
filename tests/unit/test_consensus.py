"""consensus: proposer priority, quorums and Algorithm 1's rules, scenario by scenario.

Most tests drive one `Tendermint` machine by hand, playing the other validators' messages as
the paper's scenarios need them; the happy path runs four machines over a lossless network.
With four equal validators A < B < C < D the proposer of (height 1, round r) is A, B, C, D for
r = 0, 1, 2, 3 (checked in `test_round_robin_order_for_equal_powers`).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable

import pytest

from chain.protocol.consensus import (
    Action,
    Broadcast,
    Decide,
    Equivocation,
    Message,
    Proposal,
    RequestValue,
    ScheduleTimeout,
    Step,
    Tendermint,
    Timeouts,
    ValidatorSet,
    VoteMsg,
)
from chain.protocol.genesis import dev_genesis, parse_genesis
from chain.protocol.types import Vote

A, B, C, D = (f"0x{c * 40}" for c in "abcd")
X = "0x" + "e" * 40  # not a validator
FOUR = ValidatorSet.from_stakes({A: 1, B: 1, C: 1, D: 1})


def val(n: int) -> bytes:
    return bytes([n]) * 32


V, W, U = val(1), val(2), val(3)
BAD = val(99)


def prevote(round_: int, value: bytes | None, who: str, height: int = 1) -> VoteMsg:
    return VoteMsg(height, round_, "prevote", value, who)


def precommit(round_: int, value: bytes | None, who: str, height: int = 1) -> VoteMsg:
    return VoteMsg(height, round_, "precommit", value, who)


def machine(
    me: str = D,
    vs: ValidatorSet = FOUR,
    valid: Iterable[bytes] = (V, W, U),
    *,
    timeouts: Timeouts | None = None,
    max_buffered: int = 1024,
    max_round_ahead: int = 100,
) -> Tendermint:
    known = set(valid)
    return Tendermint(
        vs,
        me,
        known.__contains__,
        timeouts=timeouts,
        max_buffered=max_buffered,
        max_round_ahead=max_round_ahead,
    )


def sent(actions: list[Action]) -> list[Message]:
    return [a.message for a in actions if isinstance(a, Broadcast)]


def votes(actions: list[Action]) -> list[VoteMsg]:
    return [m for m in sent(actions) if isinstance(m, VoteMsg)]


def timeouts(actions: list[Action]) -> list[ScheduleTimeout]:
    return [a for a in actions if isinstance(a, ScheduleTimeout)]


def feed(m: Tendermint, *messages: Message) -> list[Action]:
    out: list[Action] = []
    for message in messages:
        out += m.on_message(message)
    return out


# Validator set: quorums and the proposer


@pytest.mark.parametrize(
    ("powers", "total", "quorum", "f_plus_one"),
    [
        ((1, 1, 1, 1), 4, 3, 2),
        ((10, 10, 10, 1), 31, 21, 11),
        ((1,), 1, 1, 1),
        ((1, 1, 1), 3, 3, 2),
        ((2, 1), 3, 3, 2),
        ((3, 3, 3, 3), 12, 9, 5),
        ((1,) * 7, 7, 5, 3),
        ((100, 1, 1), 102, 69, 35),
    ],
)
def test_quorum_arithmetic(
    powers: tuple[int, ...], total: int, quorum: int, f_plus_one: int
) -> None:
    vs = ValidatorSet(tuple((f"0x{i:040x}", p) for i, p in enumerate(powers)))
    assert (vs.total_power, vs.quorum, vs.f_plus_one) == (total, quorum, f_plus_one)
    assert 3 * vs.quorum > 2 * total >= 3 * (vs.quorum - 1)
    assert 3 * vs.f_plus_one > total >= 3 * (vs.f_plus_one - 1)


def test_validator_set_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ValidatorSet(())
    with pytest.raises(ValueError, match="positive"):
        ValidatorSet(((A, 0),))
    with pytest.raises(ValueError, match="twice"):
        ValidatorSet(((A, 1), (A, 2)))
    assert ValidatorSet.from_stakes({A: 5, B: 0}).validators == ((A, 5),)


def test_validator_set_from_genesis_uses_stakes() -> None:
    genesis = parse_genesis(dev_genesis(validators=4, resource_nodes=0, dev_accounts=1))
    vs = ValidatorSet.from_genesis(genesis)
    assert sorted(vs.validators) == sorted((v.address, v.stake) for v in genesis.validators)
    assert vs.quorum == 2 * sum(v.stake for v in genesis.validators) // 3 + 1


def test_round_robin_order_for_equal_powers() -> None:
    assert [FOUR.proposer(1, r) for r in range(8)] == [A, B, C, D] * 2
    assert [FOUR.proposer(h, 0) for h in range(1, 9)] == [A, B, C, D] * 2


@pytest.mark.parametrize("scale", [1, 10**18])
def test_proposer_frequency_is_proportional_to_power(scale: int) -> None:
    powers = {A: 1, B: 2, C: 3, D: 4}
    vs = ValidatorSet.from_stakes({a: p * scale for a, p in powers.items()})
    runs = [vs.proposer(h, 0) for h in range(1, 1001)]
    assert Counter(runs) == {a: 100 * p for a, p in powers.items()}
    for start in range(0, len(runs) - 10):  # any window of 10 runs: power +- 1 times
        window = Counter(runs[start : start + 10])
        assert all(abs(window[a] - p) <= 1 for a, p in powers.items())


def test_proposer_matches_the_cometbft_spec_example() -> None:
    # spec/consensus/proposer-selection.md: p1 power 1, p2 power 3 -> p2, p1, p2, p2, ...
    vs = ValidatorSet.from_stakes({A: 1, B: 3})
    assert [vs.proposer(h, 0) for h in range(1, 9)] == [B, A, B, B] * 2


def test_proposer_is_the_same_on_every_instance() -> None:
    stakes = [(A, 7), (B, 5), (C, 3), (D, 1)]
    one = ValidatorSet.from_stakes(stakes)
    other = ValidatorSet.from_stakes(list(reversed(stakes)))
    assert one == other
    positions = [(h, r) for h in range(1, 60) for r in range(4)]
    # `other` answers out of order, through its checkpoints, and must agree
    assert [one.proposer(h, r) for h, r in positions] == [
        other.proposer(h, r) for h, r in reversed(positions)
    ][::-1]
    for height in (1, 2, 3, 17):
        machines = {a: machine(a, one) for a, _ in stakes}
        requested = [a for a, m in machines.items() if RequestValue(height, 0) in m.start(height)]
        assert requested == [one.proposer(height, 0)]


def test_round_advances_the_proposer() -> None:
    vs = ValidatorSet.from_stakes({A: 5, B: 4, C: 3, D: 2})
    for height in range(1, 40):
        assert {vs.proposer(height, r) for r in range(4)} != {vs.proposer(height, 0)}
        for r in range(6):
            assert vs.proposer(height, r) == vs.proposer(height + r, 0)
    for height in range(1, 20):
        assert FOUR.proposer(height, 1) != FOUR.proposer(height, 0)


def test_far_heights_are_computed_from_checkpoints() -> None:
    vs = ValidatorSet.from_stakes({A: 3, B: 2, C: 2})
    late = vs.proposer(5000, 3)
    early = [vs.proposer(h, 0) for h in range(1, 30)]
    fresh = ValidatorSet.from_stakes({A: 3, B: 2, C: 2})
    assert [fresh.proposer(h, 0) for h in range(1, 30)] == early
    assert fresh.proposer(5000, 3) == late


# Messages


def test_messages_are_checked_and_convert_from_signed_votes() -> None:
    with pytest.raises(ValueError, match="32-byte"):
        Proposal(1, 0, b"short", -1, A)
    with pytest.raises(ValueError, match="validRound"):
        Proposal(1, 0, V, -2, A)
    with pytest.raises(ValueError, match="prevote or precommit"):
        VoteMsg(1, 0, "commit", V, A)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="round"):
        VoteMsg(1, -1, "prevote", None, A)
    signed_nil = Vote(7, 3, 1, "prevote", b"", A, b"sig")
    assert VoteMsg.from_vote(signed_nil) == VoteMsg(3, 1, "prevote", None, A)
    assert VoteMsg.from_vote(signed_nil).block_hash == b""
    signed = Vote(7, 3, 1, "precommit", V, B, b"sig")
    assert VoteMsg.from_vote(signed).block_hash == V


# Happy path


def run_network(machines: dict[str, Tendermint], height: int) -> dict[str, Decide]:
    """Deliver every message to every other machine (FIFO), answering value requests."""
    queue: deque[tuple[str, Message]] = deque()
    decided: dict[str, Decide] = {}

    def handle(who: str, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Broadcast):
                assert not (isinstance(action.message, VoteMsg) and action.message.value is None)
                queue.extend((other, action.message) for other in machines if other != who)
            elif isinstance(action, RequestValue):
                handle(who, machines[who].on_value(action.height, action.round, val(height)))
            elif isinstance(action, Decide):
                decided[who] = action

    for who, m in machines.items():
        handle(who, m.start(height))
    while queue:
        who, message = queue.popleft()
        handle(who, machines[who].on_message(message))
    return decided


def test_happy_path_commits_in_round_zero() -> None:
    machines = {a: machine(a, valid=[val(1), val(2)]) for a in (A, B, C, D)}
    for height in (1, 2):
        decided = run_network(machines, height)
        assert set(decided) == {A, B, C, D}
        for decision in decided.values():
            assert (decision.height, decision.round, decision.value) == (height, 0, val(height))
            assert len({v.validator for v in decision.precommits}) == len(decision.precommits)
            assert sum(FOUR.power(v.validator) for v in decision.precommits) >= FOUR.quorum
            assert all(
                v.type == "precommit" and v.value == val(height) for v in decision.precommits
            )
        assert all(not m.running and m.decision is not None for m in machines.values())


def test_a_single_validator_commits_alone() -> None:
    m = machine(A, ValidatorSet.from_stakes({A: 10}))
    for height in (1, 2, 3):
        assert m.start(height)[0] == RequestValue(height, 0)
        out = m.on_value(height, 0, V)
        assert out[-1] == Decide(height, 0, V, (precommit(0, V, A, height=height),))
        assert sent(out) == [
            Proposal(height, 0, V, -1, A),
            prevote(0, V, A, height=height),
            precommit(0, V, A, height=height),
        ]


# Rounds and timeouts


def test_nil_prevote_quorum_precommits_nil_and_moves_to_the_next_round() -> None:
    m = machine(B)
    assert m.start(1) == [ScheduleTimeout("propose", 1, 0, 3000)]
    assert votes(m.on_timeout("propose", 1, 0)) == [prevote(0, None, B)]
    assert feed(m, prevote(0, None, C)) == []
    out = feed(m, prevote(0, None, D))
    assert votes(out) == [precommit(0, None, B)]
    assert m.step == Step.PRECOMMIT and m.locked_round == -1
    assert feed(m, precommit(0, None, C)) == []
    assert feed(m, precommit(0, None, D)) == [ScheduleTimeout("precommit", 1, 0, 1000)]
    out = m.on_timeout("precommit", 1, 0)
    assert (m.round, m.step) == (1, Step.PROPOSE)
    assert out == [RequestValue(1, 1), ScheduleTimeout("propose", 1, 1, 3500)]  # B proposes r1


def test_timeouts_grow_with_the_round() -> None:
    config = Timeouts(100, 10, 50, 7, 60, 9)
    m = machine(D, timeouts=config)
    seen = timeouts(m.start(1))
    for r in range(3):  # D is not proposer in rounds 0..2
        seen += timeouts(m.on_timeout("propose", 1, r))
        seen += timeouts(feed(m, prevote(r, U, A), prevote(r, None, B)))
        seen += timeouts(m.on_timeout("prevote", 1, r))
        seen += timeouts(feed(m, precommit(r, None, A), precommit(r, None, B)))
        seen += timeouts(m.on_timeout("precommit", 1, r))
    expected = []
    for r in range(3):
        expected += [
            ScheduleTimeout("propose", 1, r, 100 + 10 * r),
            ScheduleTimeout("prevote", 1, r, 50 + 7 * r),
            ScheduleTimeout("precommit", 1, r, 60 + 9 * r),
        ]
    expected.append(ScheduleTimeout("propose", 1, 3, 130))
    assert seen == expected


def test_stale_and_unknown_timeouts_are_ignored() -> None:
    m = machine(C)
    m.start(1)
    assert votes(feed(m, Proposal(1, 0, V, -1, A))) == [prevote(0, V, C)]
    assert m.on_timeout("propose", 1, 0) == []  # already prevoted
    m = machine(D)
    m.start(1)
    assert m.on_timeout("propose", 1, 1) == []
    assert m.on_timeout("prevote", 1, 0) == []  # wrong step
    assert m.on_timeout("propose", 2, 0) == []
    with pytest.raises(ValueError, match="unknown timeout"):
        m.on_timeout("commit", 1, 0)  # type: ignore[arg-type]
    assert votes(m.on_timeout("propose", 1, 0)) == [prevote(0, None, D)]


def test_f_plus_one_messages_of_a_higher_round_skip_to_it() -> None:
    m = machine(D)
    m.start(1)
    assert feed(m, prevote(5, None, A), precommit(5, None, A)) == []  # A counts once
    assert m.round == 0
    out = feed(m, Proposal(1, 5, V, -1, FOUR.proposer(1, 5)))  # B, by proposer(h, r)
    assert m.round == 5 and m.step == Step.PREVOTE
    assert timeouts(out) == [ScheduleTimeout("propose", 1, 5, 5500)]
    assert votes(out) == [prevote(5, V, D)]  # the proposal is already in the log


def test_one_validator_above_a_third_skips_alone() -> None:
    vs = ValidatorSet.from_stakes({A: 4, B: 3, C: 2, D: 1})  # f+1 = 4
    m = machine(D, vs)
    m.start(1)
    assert feed(m, prevote(2, None, B)) == []  # power 3 < 4
    assert m.round == 0
    feed(m, precommit(3, None, A))  # power 4
    assert m.round == 3


def test_messages_too_far_ahead_are_ignored() -> None:
    m = machine(D, max_round_ahead=10)
    m.start(1)
    feed(m, prevote(11, None, A), prevote(11, None, B))
    assert m.round == 0
    feed(m, prevote(10, None, A), prevote(10, None, B))
    assert m.round == 10


# Proposals, validity, locking


def test_invalid_value_gets_a_nil_prevote_and_is_never_decided() -> None:
    m = machine(D)
    m.start(1)
    assert votes(feed(m, Proposal(1, 0, BAD, -1, A))) == [prevote(0, None, D)]
    out = feed(m, *(precommit(0, BAD, who) for who in (A, B, C)))
    assert not [a for a in out if isinstance(a, Decide)] and m.running


def test_proposal_from_a_non_proposer_or_outsider_is_ignored() -> None:
    m = machine(D)
    m.start(1)
    assert feed(m, Proposal(1, 0, V, -1, B)) == []
    assert feed(m, Proposal(1, 0, V, -1, X)) == []
    assert m.step == Step.PROPOSE
    assert votes(feed(m, Proposal(1, 0, V, -1, A))) == [prevote(0, V, D)]


def test_votes_from_non_validators_are_ignored() -> None:
    m = machine(D)
    m.start(1)
    feed(m, Proposal(1, 0, V, -1, A))
    assert feed(m, prevote(0, V, A), prevote(0, V, X)) == []
    assert m.step == Step.PREVOTE
    assert votes(feed(m, prevote(0, V, B))) == [precommit(0, V, D)]


def lock_on_v_in_round_0(m: Tendermint) -> None:
    """D prevotes V on A's proposal, sees A and B prevote V too: lock and precommit V."""
    m.start(1)
    assert votes(feed(m, Proposal(1, 0, V, -1, A))) == [prevote(0, V, D)]
    assert votes(feed(m, prevote(0, V, A), prevote(0, V, B))) == [precommit(0, V, D)]
    assert (m.locked_value, m.locked_round, m.valid_value, m.valid_round) == (V, 0, V, 0)
    feed(m, precommit(0, None, A), precommit(0, None, B))
    m.on_timeout("precommit", 1, 0)
    assert m.round == 1


def test_locked_validator_prevotes_nil_for_another_value() -> None:
    m = machine(D)
    lock_on_v_in_round_0(m)
    assert votes(feed(m, Proposal(1, 1, W, -1, B))) == [prevote(1, None, D)]
    assert m.locked_value == V


def test_locked_validator_prevotes_its_locked_value() -> None:
    m = machine(D)
    lock_on_v_in_round_0(m)
    assert votes(feed(m, Proposal(1, 1, V, -1, B))) == [prevote(1, V, D)]


def test_unlock_needs_valid_round_at_least_locked_round_and_its_prevote_quorum() -> None:
    m = machine(D)
    lock_on_v_in_round_0(m)
    # C proposes W for round 2 claiming validRound 1; A's prevote makes f+1 senders: skip
    feed(m, Proposal(1, 2, W, 1, C), prevote(2, W, A))
    assert m.round == 2 and m.step == Step.PROPOSE
    # no 2f+1 prevotes for W in round 1 yet: the proposal is not justified, D waits
    assert feed(m, prevote(1, W, A), prevote(1, W, B)) == []
    assert m.step == Step.PROPOSE
    # the quorum of round 1 arrives: validRound 1 >= lockedRound 0, so D prevotes W
    assert votes(feed(m, prevote(1, W, C))) == [prevote(2, W, D)]
    assert m.locked_value == V  # prevoting does not move the lock


def test_proposal_justified_only_below_the_lock_gets_nil() -> None:
    m = machine(D)
    m.start(1)
    # round 0: D never sees A's proposal; A, B, C prevote W, nobody precommits it at D
    m.on_timeout("propose", 1, 0)
    feed(m, prevote(0, W, A), prevote(0, W, B), prevote(0, W, C))
    m.on_timeout("prevote", 1, 0)
    feed(m, precommit(0, None, A), precommit(0, None, B))
    m.on_timeout("precommit", 1, 0)
    # round 1: lock V
    feed(m, Proposal(1, 1, V, -1, B), prevote(1, V, A), prevote(1, V, B))
    assert (m.locked_value, m.locked_round) == (V, 1)
    feed(m, precommit(1, None, A), precommit(1, None, B))
    m.on_timeout("precommit", 1, 1)
    # round 2: C proposes W with validRound 0, which has its quorum, but 0 < lockedRound 1
    assert votes(feed(m, Proposal(1, 2, W, 0, C))) == [prevote(2, None, D)]


def test_a_later_prevote_quorum_moves_the_lock() -> None:
    m = machine(D)
    lock_on_v_in_round_0(m)
    feed(m, Proposal(1, 1, W, -1, B))  # D prevotes nil, locked on V
    assert votes(feed(m, prevote(1, W, A), prevote(1, W, B), prevote(1, W, C))) == [
        precommit(1, W, D)
    ]
    assert (m.locked_value, m.locked_round) == (W, 1)


def test_valid_value_without_lock_is_what_the_validator_proposes_later() -> None:
    m = machine(D)
    m.start(1)
    m.on_timeout("propose", 1, 0)  # D prevotes nil before A's proposal arrives
    feed(m, Proposal(1, 0, V, -1, A), prevote(0, V, A), prevote(0, V, B))
    assert votes(m.on_timeout("prevote", 1, 0)) == [precommit(0, None, D)]
    assert votes(feed(m, prevote(0, V, C))) == []  # 2f+1 for V, but D already precommitted
    assert (m.locked_round, m.valid_value, m.valid_round) == (-1, V, 0)
    out = feed(m, prevote(3, None, A), prevote(3, None, B))  # skip to round 3: D proposes
    assert m.round == 3
    assert not [a for a in out if isinstance(a, RequestValue)]
    assert sent(out) == [Proposal(1, 3, V, 0, D), prevote(3, V, D)]


def test_decide_needs_the_proposal_and_a_valid_value() -> None:
    known: set[bytes] = set()
    m = Tendermint(FOUR, D, known.__contains__)
    m.start(1)
    m.on_timeout("propose", 1, 0)
    feed(m, *(precommit(0, V, who) for who in (A, B, C)))
    assert m.running  # no proposal for V yet
    assert feed(m, Proposal(1, 0, V, -1, A)) == []
    assert m.running  # V is not valid (the node lacks the block)
    known.add(V)
    out = m.recheck()
    assert out == [Decide(1, 0, V, (precommit(0, V, A), precommit(0, V, B), precommit(0, V, C)))]
    assert not m.running and m.decision == out[0]


def test_decide_in_an_earlier_round() -> None:
    m = machine(D)
    m.start(1)
    m.on_timeout("propose", 1, 0)
    feed(m, prevote(0, None, A), prevote(0, None, B))
    feed(m, precommit(0, None, A), precommit(0, None, B))
    m.on_timeout("precommit", 1, 0)
    assert m.round == 1
    out = feed(m, Proposal(1, 0, V, -1, A), *(precommit(0, V, w) for w in (A, B, C)))
    assert next(a for a in out if isinstance(a, Decide)).round == 0


# Proposer side


def test_proposer_requests_a_value_and_proposes_it() -> None:
    m = machine(A)
    assert m.start(1) == [RequestValue(1, 0), ScheduleTimeout("propose", 1, 0, 3000)]
    assert m.on_value(1, 1, V) == []  # not the round asked for
    assert sent(m.on_value(1, 0, V)) == [Proposal(1, 0, V, -1, A), prevote(0, V, A)]
    assert m.on_value(1, 0, W) == []  # answered already


def test_late_value_after_the_propose_timeout_is_ignored() -> None:
    m = machine(A)
    m.start(1)
    assert votes(m.on_timeout("propose", 1, 0)) == [prevote(0, None, A)]
    assert m.on_value(1, 0, V) == []


# Duplicates, equivocation, evidence


def test_duplicate_votes_count_once() -> None:
    m = machine(D)
    m.start(1)
    feed(m, Proposal(1, 0, V, -1, A))
    assert feed(m, prevote(0, V, A), prevote(0, V, A), prevote(0, V, A)) == []
    assert m.step == Step.PREVOTE and m.evidence == ()
    assert votes(feed(m, prevote(0, V, B))) == [precommit(0, V, D)]


def test_equivocating_votes_count_once_in_the_total_and_are_reported() -> None:
    m = machine(D)
    m.start(1)
    feed(m, Proposal(1, 0, V, -1, A))  # D prevotes V
    assert feed(m, prevote(0, W, A), prevote(0, None, A)) == []  # any-power: D + A = 2
    assert m.evidence == (Equivocation(prevote(0, W, A), prevote(0, None, A)),)
    assert m.evidence[0].validator == A
    assert feed(m, prevote(0, U, A)) == []
    # B makes 3 distinct prevoters: the prevote timeout, not a nil quorum (A, B only)
    assert feed(m, prevote(0, None, B)) == [ScheduleTimeout("prevote", 1, 0, 1000)]
    assert [e.second for e in m.take_evidence()] == [prevote(0, None, A), prevote(0, U, A)]
    assert m.take_evidence() == []


def test_an_equivocators_later_vote_still_counts_for_its_value() -> None:
    # C counted A's W prevote first; A's V prevote (gossiped from another validator)
    # completes A, B, D for V: C must see the quorum the others see, or views split
    m = machine(D)
    m.start(1)
    feed(m, Proposal(1, 0, V, -1, A), prevote(0, W, A), prevote(0, V, B))
    assert m.step == Step.PREVOTE
    assert votes(feed(m, prevote(0, V, A))) == [precommit(0, V, D)]
    assert len(m.evidence) == 1


def test_equivocating_proposals_are_reported() -> None:
    m = machine(D)
    m.start(1)
    assert votes(feed(m, Proposal(1, 0, V, -1, A))) == [prevote(0, V, D)]
    assert feed(m, Proposal(1, 0, W, -1, A)) == []
    assert m.evidence == (Equivocation(Proposal(1, 0, V, -1, A), Proposal(1, 0, W, -1, A)),)


def test_the_machine_never_signs_two_votes_for_one_slot() -> None:
    m = machine(D)
    m.start(1)
    first = votes(feed(m, Proposal(1, 0, V, -1, A)))
    assert first == [prevote(0, V, D)]
    m._step = Step.PROPOSE  # corrupt the state: a propose timeout would now prevote nil
    assert votes(m.on_timeout("propose", 1, 0)) == []


# Restarts: the votes signed in an earlier run


def test_start_with_signed_votes_never_asks_for_a_conflicting_vote() -> None:
    m = machine(D)
    # before a crash, D prevoted W in round 0; now the proposal of V arrives
    m.start(1, 0, [prevote(0, W, D)])
    assert votes(feed(m, Proposal(1, 0, V, -1, A))) == []
    assert m.step == Step.PREVOTE


def test_start_with_signed_votes_counts_them() -> None:
    m = machine(D)
    m.start(1, 0, [prevote(0, V, D)])
    out = feed(m, Proposal(1, 0, V, -1, A), prevote(0, V, A), prevote(0, V, B))
    # D's own earlier prevote completes the quorum: it locks on V and precommits it
    assert votes(out) == [precommit(0, V, D)]
    assert m.locked_value == V and m.locked_round == 0


def test_start_with_a_signed_precommit_restores_the_lock() -> None:
    m = machine(D)
    m.start(1, 2, [prevote(1, V, D), precommit(1, V, D), precommit(0, W, D)])
    assert (m.locked_value, m.locked_round) == (V, 1)
    assert (m.valid_value, m.valid_round) == (V, 1)
    assert m.round == 2
    # locked on V: C's fresh proposal of W in round 2 gets a nil prevote
    assert votes(feed(m, Proposal(1, 2, W, -1, C))) == [prevote(2, None, D)]


def test_a_restarted_proposer_reproposes_its_locked_value() -> None:
    proposer = FOUR.proposer(1, 3)
    m = machine(proposer)
    out = m.start(1, 3, [precommit(2, V, proposer)])
    assert Proposal(1, 3, V, 2, proposer) in sent(out)


def test_start_refuses_votes_of_another_height_or_validator() -> None:
    m = machine(D)
    with pytest.raises(ValueError):
        m.start(1, 0, [prevote(0, V, A)])
    m = machine(D)
    with pytest.raises(ValueError):
        m.start(1, 0, [prevote(0, V, D, height=2)])


def test_timeouts_have_a_ceiling() -> None:
    timeouts = Timeouts(propose_ms=1000, propose_delta_ms=500, max_ms=2500)
    assert [timeouts.duration_ms("propose", r) for r in (0, 1, 3, 50)] == [1000, 1500, 2500, 2500]


# Heights


def decide_height_1(m: Tendermint) -> Decide:
    m.start(1)
    out = feed(m, Proposal(1, 0, V, -1, A), *(precommit(0, V, w) for w in (A, B, C)))
    decision = [a for a in out if isinstance(a, Decide)]
    assert len(decision) == 1
    return decision[0]


def test_after_decide_the_machine_waits_for_the_next_start() -> None:
    m = machine(D)
    decide_height_1(m)
    assert not m.running
    assert m.on_timeout("precommit", 1, 0) == []
    assert feed(m, prevote(1, V, A), Proposal(1, 1, V, -1, B)) == []
    with pytest.raises(ValueError, match="cannot start"):
        m.start(1)
    assert m.start(2) == [ScheduleTimeout("propose", 2, 0, 3000)]  # B proposes height 2
    assert (m.height, m.round, m.locked_round, m.valid_value) == (2, 0, -1, None)


def test_messages_of_the_next_height_are_buffered_and_replayed() -> None:
    m = machine(D, max_buffered=2)
    m.start(1)
    assert feed(m, Proposal(2, 0, W, -1, B), prevote(0, W, A, height=2)) == []
    assert feed(m, prevote(0, W, C, height=2)) == []  # over the bound: dropped
    assert feed(m, Proposal(3, 0, U, -1, C)) == []  # two heights ahead: ignored
    feed(m, Proposal(1, 0, V, -1, A), *(precommit(0, V, w) for w in (A, B, C)))
    assert not m.running
    out = m.start(2)
    assert votes(out) == [prevote(0, W, D, height=2)]  # from the buffered proposal
    # A's buffered prevote counts; C's was dropped, so B's makes the quorum
    assert votes(feed(m, prevote(0, W, B, height=2))) == [precommit(0, W, D, height=2)]
    out = m.start(3)
    assert not votes(out)  # the height-3 proposal was not kept


def test_start_can_jump_ahead_after_a_sync() -> None:
    m = machine(D)
    m.start(1)
    out = m.start(5)
    assert m.height == 5 and m.running
    assert out == [ScheduleTimeout("propose", 5, 0, 3000)] or RequestValue(5, 0) in out
    with pytest.raises(ValueError):
        m.start(4)


def test_the_machine_must_be_a_validator() -> None:
    with pytest.raises(ValueError, match="not in the validator set"):
        machine(X)
