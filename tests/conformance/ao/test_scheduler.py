"""`POST /scheduler` with ANS-104 data items of both signature types (PROTOCOL 8.3, 8.7),
`GET /scheduler/{pid}?from&to&limit` in slot order, and `GET /scheduler/{mid}?process-id=`."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable

import pytest

from chain.protocol import ans104
from chain.protocol import ao as ao_rules
from rpc.client import InferchainClient, Wallet
from tests.conformance.ao.support import (
    AO_ID,
    PING,
    WAIT_S,
    AoUnit,
    error_text,
    snapshot,
    tag_value,
)
from tests.helpers import wait_until

ETHEREUM_SIGNER = ans104.EthereumSigner(Wallet.dev(7).private_key)


@functools.cache
def arweave_signer() -> ans104.ArweaveSigner:
    """One RSA-4096 key per worker (generating one takes a moment)."""
    return ans104.ArweaveSigner.generate()


def anchor() -> bytes:
    """A new anchor for each item: type-3 signatures are deterministic (RFC 6979), and an
    item handed in twice (a second run against the same target) is a duplicate."""
    return secrets.token_bytes(32)


def spawn_item(data: str = PING) -> ans104.DataItem:
    return ans104.create(
        signer=ETHEREUM_SIGNER,
        data=data.encode(),
        anchor=anchor(),
        tags=[ans104.Tag("Type", "Process")],
    )


def message_item(signer: ans104.Signer, pid: str, action: str) -> ans104.DataItem:
    tags = [ans104.Tag("Type", "Message"), ans104.Tag("Action", action)]
    target = ao_rules.id_bytes(pid)
    return ans104.create(signer=signer, data=b"", target=target, anchor=anchor(), tags=tags)


async def post_item(unit: AoUnit, item: ans104.DataItem) -> str:
    answer = await unit.post("/scheduler", data=ans104.serialize(item))
    assert answer.status == 200, answer
    assert set(answer.body) == {"id", "timestamp"}, answer.body
    assert answer.body["id"] == item.id and AO_ID.fullmatch(item.id)
    assert isinstance(answer.body["timestamp"], int)
    return item.id


async def scheduled(unit: AoUnit, mid: str, pid: str) -> dict[str, object]:
    async def found() -> dict[str, object] | None:
        answer = await unit.get(f"/scheduler/{mid}?process-id={pid}")
        return dict(answer.body) if answer.status == 200 else None

    entry: dict[str, object] = await wait_until(found, f"message {mid} scheduled", WAIT_S)
    return entry


async def test_data_items_of_both_signature_types_are_scheduled(unit: AoUnit) -> None:
    item = spawn_item()
    pid = await post_item(unit, item)
    spawn = await scheduled(unit, pid, pid)
    assert spawn["slot"] == 0 and str(spawn["owner"]).lower() == ETHEREUM_SIGNER.address.lower()
    arweave = arweave_signer()
    ping = message_item(arweave, pid, "Ping")
    mid = await post_item(unit, ping)
    entry = await scheduled(unit, mid, pid)
    assert entry["id"] == mid and entry["slot"] == 1 and entry["process"] == pid
    assert entry["owner"] == arweave.address
    result = await unit.processed(mid)
    assert result["Error"] is None, result
    (reply,) = result["Messages"]
    assert reply["Data"] == "pong 1" and reply["Target"] == arweave.address


def tampered_signature(raw: bytes) -> bytes:
    """The item with one byte of its signature (after the 2-byte type) changed."""
    return raw[:10] + bytes([raw[10] ^ 0x01]) + raw[11:]


@pytest.mark.parametrize(
    "make, text",
    [
        (lambda raw: b"", "data item"),
        (lambda raw: b"not a data item", "data item"),
        (tampered_signature, "signature"),
        (lambda raw: raw + b"!", "signature"),  # appended bytes are data: the signature fails
        (lambda raw: raw[:-1], "truncated"),  # its data is empty: the tags lack a byte
    ],
    ids=["empty", "garbage", "bad-signature", "appended-bytes", "truncated-data"],
)
async def test_a_bad_data_item_is_400_and_schedules_nothing(
    unit: AoUnit, chain: InferchainClient | None, make: Callable[[bytes], bytes], text: str
) -> None:
    pid = await unit.spawn(PING)
    good = message_item(ETHEREUM_SIGNER, pid, "Ping")
    raw = make(ans104.serialize(good))
    before = await snapshot(unit, pid, chain)
    answer = await unit.post("/scheduler", data=raw)
    assert answer.status == 400, answer
    assert text in error_text(answer), answer.body
    assert await snapshot(unit, pid, chain) == before


async def test_an_item_of_an_unknown_type_is_refused(
    unit: AoUnit, chain: InferchainClient | None
) -> None:
    pid = await unit.spawn(PING)
    tags = [ans104.Tag("Type", "Other")]
    item = ans104.create(signer=ETHEREUM_SIGNER, data=b"x", anchor=anchor(), tags=tags)
    before = await snapshot(unit, pid, chain)
    answer = await unit.post("/scheduler", data=ans104.serialize(item))
    assert answer.status == 400 and "Type" in error_text(answer), answer
    assert await snapshot(unit, pid, chain) == before
    # the refusal used none of the unit's nonces: its next item is taken
    mid = await post_item(unit, message_item(ETHEREUM_SIGNER, pid, "Ping"))
    assert (await scheduled(unit, mid, pid))["slot"] == 1


async def test_the_schedule_in_slot_order_by_time_and_page(unit: AoUnit) -> None:
    pid = await unit.spawn(PING)
    mids = [await unit.send(pid, "Ping") for _ in range(3)]
    await unit.processed(mids[-1])
    schedule = await unit.schedule(pid)
    assert [e["slot"] for e in schedule] == [0, 1, 2, 3]
    assert [e["id"] for e in schedule] == [pid, *mids]
    times = [e["timestamp"] for e in schedule]
    assert times == sorted(times)
    for low in sorted(set(times)):
        for high in sorted(set(times)):
            window = await unit.schedule(pid, f"?from={low}&to={high}")
            assert window == [e for e in schedule if low <= e["timestamp"] <= high]
    assert await unit.schedule(pid, f"?from={times[-1] + 1}") == []
    assert await unit.schedule(pid, "?limit=2") == schedule[:2]
    assert await unit.schedule(pid, f"?from=0&to={times[-1]}&limit=1000") == schedule
    for entry in schedule:
        answer = await unit.get(f"/scheduler/{entry['id']}?process-id={pid}")
        assert answer.status == 200 and answer.body == entry, answer
    assert tag_value(schedule[1], "Action") == "Ping"
