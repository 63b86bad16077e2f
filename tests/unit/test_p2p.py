"""rpc.p2p: how the outbox to a peer becomes request bodies."""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson

from rpc.p2p import MAX_BATCH_BYTES, MAX_BATCH_ITEMS, next_batch


def outbox(items: list[tuple[str, dict[str, Any]]]) -> deque[tuple[str, dict[str, Any]]]:
    return deque(items)


def test_a_batch_keeps_order_within_each_kind_and_parses() -> None:
    box = outbox([("messages", {"n": 0}), ("txs", {"n": 1}), ("messages", {"n": 2})])
    body = orjson.loads(next_batch(box))
    assert body == {"messages": [{"n": 0}, {"n": 2}], "txs": [{"n": 1}]}
    assert not box


def test_a_batch_stops_at_the_item_limit() -> None:
    box = outbox([("messages", {"n": i}) for i in range(MAX_BATCH_ITEMS + 5)])
    first = orjson.loads(next_batch(box))
    assert [m["n"] for m in first["messages"]] == list(range(MAX_BATCH_ITEMS))
    second = orjson.loads(next_batch(box))
    assert [m["n"] for m in second["messages"]] == list(range(MAX_BATCH_ITEMS, MAX_BATCH_ITEMS + 5))


def test_a_batch_stops_at_the_byte_limit_but_always_carries_one_item() -> None:
    big = "x" * (MAX_BATCH_BYTES // 3)
    box = outbox([("txs", {"n": i, "pad": big}) for i in range(5)])
    sizes = []
    while box:
        body = next_batch(box)
        sizes.append(len(orjson.loads(body)["txs"]))
        assert len(body) <= MAX_BATCH_BYTES + 100
    assert sum(sizes) == 5 and max(sizes) < 5
    huge = outbox([("messages", {"pad": "y" * (2 * MAX_BATCH_BYTES)}), ("messages", {"n": 1})])
    assert len(orjson.loads(next_batch(huge))["messages"]) == 1
    assert len(huge) == 1


def test_an_item_that_is_not_json_is_dropped_not_sent() -> None:
    box = outbox([("txs", {"n": 2**70}), ("txs", {"n": 1})])
    assert orjson.loads(next_batch(box)) == {"messages": [], "txs": [{"n": 1}]}
    assert not box
