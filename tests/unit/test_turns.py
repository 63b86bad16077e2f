"""resource_node.turns: the order in which resource nodes take a task, and how long each one
leaves it to the nodes before it."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.protocol import crypto, wire
from resource_node.turns import ACTIVE_S, Turns, order, periods

NODES = [crypto.address_of_private_key(bytes([k]) * 32).lower() for k in range(1, 9)]
TASKS = [wire.hex0x(crypto.keccak(i.to_bytes(4, "big"))) for i in range(300)]

hashes = st.binary(min_size=32, max_size=32).map(wire.hex0x)
crowds = st.lists(st.sampled_from(NODES), min_size=1, max_size=len(NODES), unique=True)


@given(task=hashes, crowd=crowds, free=st.integers(1, 4))
def test_every_node_of_a_crowd_sees_the_same_order_and_free_of_them_start_at_once(
    task: str, crowd: list[str], free: int
) -> None:
    """Each node works out its place from the others it has seen: when they have all seen
    each other, the places are 0, 0, .. (one per free slot), then 1, 2, .. periods."""
    waits = [periods(task, node, [n for n in crowd if n != node], free) for node in crowd]
    at_once = min(free, len(crowd))
    assert sorted(waits) == [0] * at_once + list(range(1, len(crowd) - at_once + 1))
    first = order(task, crowd)[:at_once]
    assert {node for node, wait in zip(crowd, waits, strict=True) if wait == 0} == set(first)


def test_each_node_is_first_for_its_share_of_the_tasks() -> None:
    crowd = NODES[:3]
    firsts = Counter(order(task, crowd)[0] for task in TASKS)
    assert set(firsts) == set(crowd)
    assert min(firsts.values()) > len(TASKS) / 3 / 2  # about a third each, not one for all


def test_a_node_that_has_seen_no_one_computes_at_once() -> None:
    turns = Turns(NODES[0], standby_s=1.0)
    assert all(turns.wait(task, "m", (), 1, now=0.0) == 0 for task in TASKS[:20])


def test_a_later_node_waits_its_periods_from_when_it_first_saw_the_task() -> None:
    me, other = NODES[0], NODES[1]
    turns = Turns(me, standby_s=2.0)
    turns.saw(other, "m", now=0.0)
    task = next(t for t in TASKS if order(t, [me, other]) == [other, me])
    mine = next(t for t in TASKS if order(t, [me, other]) == [me, other])
    assert turns.wait(task, "m", (), 1, now=10.0) == pytest.approx(2.0)
    assert turns.wait(task, "m", (), 1, now=11.5) == pytest.approx(0.5)  # first seen at 10
    assert turns.wait(task, "m", (), 1, now=12.0) == 0
    assert turns.wait(mine, "m", (), 1, now=10.0) == 0
    assert turns.wait(task, "m", (), 2, now=10.0) == 0  # two open slots: both at once


def test_a_node_with_a_result_in_the_task_or_of_another_model_takes_no_turn() -> None:
    me, other = NODES[0], NODES[1]
    turns = Turns(me, standby_s=2.0)
    turns.saw(other, "m", now=0.0)
    task = next(t for t in TASKS if order(t, [me, other]) == [other, me])
    assert turns.wait(task, "m", (other,), 1, now=1.0) == 0  # it has computed it already
    assert turns.wait(task, "another", (), 1, now=1.0) == 0  # it computes another model


def test_a_node_not_seen_for_a_while_drops_out_of_the_order() -> None:
    me, other = NODES[0], NODES[1]
    turns = Turns(me, standby_s=2.0)
    turns.saw(other, "m", now=0.0)
    task = next(t for t in TASKS if order(t, [me, other]) == [other, me])
    assert turns.active("m", now=ACTIVE_S - 1) == {other}
    assert turns.active("m", now=ACTIVE_S + 1) == set()
    assert turns.wait(task, "m", (), 1, now=ACTIVE_S + 1) == 0
    turns.saw(other, "m", now=ACTIVE_S + 2)  # back: it takes turns again
    assert turns.wait(task, "m", (), 1, now=ACTIVE_S + 2) == pytest.approx(1.0)


def test_a_standby_of_zero_is_every_node_at_once_and_a_negative_one_is_refused() -> None:
    turns = Turns(NODES[0], standby_s=0.0)
    for node in NODES[1:]:
        turns.saw(node, "m", now=0.0)
    assert all(turns.wait(task, "m", (), 1, now=1.0) == 0 for task in TASKS[:50])
    with pytest.raises(ValueError, match="negative"):
        Turns(NODES[0], standby_s=-1.0)
