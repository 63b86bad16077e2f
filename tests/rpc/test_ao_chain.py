"""The chain as AO's scheduler unit (PROTOCOL 8.1-8.4), on an in-process validator whose blocks
the test makes: spawns and messages given their slots, ids, relays by the scheduler only,
data items of both signature types, terminate, cron ticks exactly once per interval, and
every refusal changing nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.protocol import ans104
from chain.protocol import ao as rules
from rpc.client import RpcError, Wallet
from tests.helpers import LocalChain, local_chain

OWNER = Wallet.dev(1)
OTHER = Wallet.dev(2)
UNIT = Wallet.dev(9)
MODULE = "Handlers.add('ping', function (msg) return msg.Action == 'Ping' end, function () end)"


@pytest.fixture
async def manual(tmp_path: Path) -> AsyncIterator[LocalChain]:
    async with local_chain(tmp_path / "ledger", run=False) as running:
        yield running


def mine(chain: LocalChain, blocks: int = 1) -> int:
    for _ in range(blocks):
        chain.node.produce_block()
    return chain.node.head.height


async def spawned(chain: LocalChain, **kw: Any) -> str:
    receipt = await chain.client.ao_spawn(OWNER, module=MODULE, scheduler=UNIT.address, **kw)
    mine(chain)
    return receipt.id


async def test_a_spawn_and_messages_take_slots_in_block_order(manual: LocalChain) -> None:
    client = manual.client
    spawn = await client.ao_spawn(
        OWNER, module=MODULE, scheduler=UNIT.address, tags=[("Name", "pinger")], data="hi"
    )
    height = mine(manual)
    process = await client.ao_process(spawn.id)
    assert process["owner"] == OWNER.address and process["scheduler"] == UNIT.address
    assert process["slots"] == 1 and process["height"] == height
    assert process["tags"] == [["Name", "pinger"]] and process["module"] == MODULE
    first = await client.ao_message(OTHER, spawn.id, data="one", tags=[("Action", "Ping")])
    second = await client.ao_message(OWNER, spawn.id, data="two")
    mine(manual)
    page = await client.ao_schedule(spawn.id)
    assert [m["slot"] for m in page["messages"]] == [0, 1, 2]
    assert [m["id"] for m in page["messages"]] == [spawn.id, first.id, second.id]
    assert page["next"] is None
    one = page["messages"][1]
    assert one["from"] == OTHER.address and one["tags"] == [["Action", "Ping"]]
    block = await client.get_block(height + 1)
    assert one["timestamp"] == block["time"] * 1000 and one["height"] == height + 1
    assert await client.ao_message_by_id(second.id) == page["messages"][2]
    assert (await client.ao_schedule(spawn.id, 1, 1))["next"] == 2
    assert await client.ao_processes() == [spawn.id]
    # ids are AO's: 43 characters, the SHA-256 of the signature
    tx = await client.get_transaction(first.tx_hash)
    assert first.id == rules.ao_id(bytes.fromhex(tx["params"]["signature"][2:]))
    assert len(first.id) == 43


async def test_only_the_scheduler_relays_for_a_process(manual: LocalChain) -> None:
    pid = await spawned(manual)
    relayed = await manual.client.ao_message(UNIT, pid, data="pong", from_process=pid)
    mine(manual)
    entry = await manual.client.ao_message_by_id(relayed.id)
    assert entry["from"] == pid and entry["fromProcess"] == pid and entry["owner"] == UNIT.address
    with pytest.raises(RpcError) as info:
        await manual.client.ao_message(OTHER, pid, data="forged", from_process=pid)
    assert info.value.code == -32005
    assert "scheduler" in info.value.message or "scheduler" in str(info.value.data)


async def test_terminate_by_the_owner_ends_the_process(manual: LocalChain) -> None:
    pid = await spawned(manual)
    with pytest.raises(RpcError) as info:
        await manual.client.ao_terminate(OTHER, pid)
    assert info.value.code == -32005
    await manual.client.ao_terminate(OWNER, pid)
    mine(manual)
    assert (await manual.client.ao_process(pid))["terminated"] is True
    with pytest.raises(RpcError) as info:
        await manual.client.ao_message(OTHER, pid, data="late")
    assert info.value.code == -32602 and info.value.data["param"] == "target"


async def test_cron_ticks_once_per_interval(manual: LocalChain) -> None:
    pid = await spawned(manual, cron_interval="3-blocks")
    spawn_height = (await manual.client.ao_process(pid))["height"]
    mine(manual, 10)
    page = await manual.client.ao_schedule(pid)
    crons = [m for m in page["messages"] if m["cron"]]
    assert [m["height"] - spawn_height for m in crons] == [3, 6, 9]
    assert [dict(map(tuple, m["tags"]))["Cron-Tick"] for m in crons] == ["1", "2", "3"]
    assert crons[0]["id"] == rules.cron_id(pid, 1)
    assert all(m["from"] == pid for m in crons)


async def test_refusals_change_nothing(manual: LocalChain) -> None:
    pid = await spawned(manual)
    before = await manual.client.ao_process(pid)
    nonce = (await manual.client.get_account(OWNER.address))["nonce"]
    bad: list[tuple[dict[str, Any], str]] = [
        ({"cron_interval": "5-fortnights"}, "cronInterval"),
        ({"memory_limit": 10}, "memoryLimit"),
        ({"compute_limit": 10**13}, "computeLimit"),
        ({"module": "A" * 43}, "module"),  # an id no module has
    ]
    for change, param in bad:
        args = {"module": MODULE, **change}
        with pytest.raises(RpcError) as info:
            await manual.client.ao_spawn(OWNER, **args)
        assert info.value.code == -32602 and info.value.data["param"] == param, info.value
    for tags in ('{"name": "a"}', '[{"name": "", "value": "x"}]', "[" * 5):
        with pytest.raises(RpcError) as info:
            await manual.client.call(
                "aoMessage", {"sender": Wallet.dev(0).address, "target": pid, "tags": tags}
            )
        assert info.value.code == -32602 and "tags" in info.value.data["param"]
    with pytest.raises(RpcError) as info:
        await manual.client.ao_message(OWNER, "B" * 43, data="x")
    assert info.value.data["param"] == "target"
    mine(manual)
    assert await manual.client.ao_process(pid) == before
    assert (await manual.client.get_account(OWNER.address))["nonce"] == nonce
    for method, params in (
        ("aoProcess", {"processId": "short"}),
        ("aoSchedule", {"processId": "C" * 43}),
        ("aoMessageById", {"messageId": "D" * 43}),
    ):
        with pytest.raises(RpcError) as info:
            await manual.client.call(method, params)
        assert info.value.code == -32602


def item_of(signer: ans104.Signer, **kw: Any) -> bytes:
    return ans104.serialize(ans104.create(signer=signer, **kw))


@pytest.mark.parametrize("kind", ["ethereum", "arweave"])
async def test_data_items_spawn_and_message(manual: LocalChain, kind: str) -> None:
    signer: ans104.Signer
    if kind == "ethereum":
        signer = ans104.EthereumSigner(OWNER.private_key)
    else:
        signer = ans104.ArweaveSigner.generate()
    tags = [ans104.Tag("Type", "Process"), ans104.Tag("Scheduler", UNIT.address)]
    raw = item_of(signer, data=MODULE.encode(), tags=tags)
    receipt = await manual.client.ao_data_item(UNIT, raw)
    mine(manual)
    item = ans104.parse(raw)
    assert receipt.id == item.id
    process = await manual.client.ao_process(item.id)
    assert process["owner"] == item.owner_address and process["module"] == MODULE
    target = rules.id_bytes(item.id)
    message = item_of(signer, data=b"hello", target=target, tags=[ans104.Tag("Type", "Message")])
    sent = await manual.client.ao_data_item(UNIT, message)
    mine(manual)
    entry = await manual.client.ao_message_by_id(sent.id)
    assert entry["process"] == item.id and entry["slot"] == 1 and entry["data"] == "hello"
    # the same item again: its id is scheduled already
    with pytest.raises(RpcError) as info:
        await manual.client.ao_data_item(UNIT, message)
    assert info.value.code == -32006


async def test_a_published_module_spawns_by_id(manual: LocalChain) -> None:
    signer = ans104.EthereumSigner(OWNER.private_key)
    module = item_of(signer, data=MODULE.encode(), tags=[ans104.Tag("Type", "Module")])
    published = await manual.client.ao_data_item(UNIT, module)
    mine(manual)
    assert (await manual.client.ao_process(published.id)) == {
        "id": published.id,
        "module": MODULE,
        "type": "Module",
    }
    pid = (await manual.client.ao_spawn(OWNER, module=published.id)).id
    mine(manual)
    assert (await manual.client.ao_process(pid))["moduleId"] == published.id


async def test_a_bad_data_item_is_refused(manual: LocalChain) -> None:
    signer = ans104.EthereumSigner(OWNER.private_key)
    good = bytearray(item_of(signer, data=b"x", tags=[ans104.Tag("Type", "Process")]))
    good[-1] ^= 1  # the data changed: the signature no longer covers it
    for raw in (bytes(good), b"\x03\x00", b"garbage"):
        with pytest.raises(RpcError) as info:
            await manual.client.ao_data_item(UNIT, raw)
        assert info.value.code == -32602 and info.value.data["param"] == "item"
    wrong_type = item_of(signer, data=b"x", tags=[ans104.Tag("Type", "Checkpoint")])
    with pytest.raises(RpcError) as info:
        await manual.client.ao_data_item(UNIT, wrong_type)
    assert "Type" in info.value.data["reason"]


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=20))
def test_cron_interval_is_read_or_refused(text: str) -> None:
    try:
        interval = rules.parse_cron_interval(text)
    except Exception as exc:
        assert type(exc).__name__ == "InvalidParams"
        return
    if interval is not None:
        assert rules.parse_cron_interval(interval.text()) == interval


def test_tags_json_bounds() -> None:
    assert rules.parse_tags(json.dumps([{"name": "a", "value": ""}])) == [("a", "")]
    too_many = json.dumps([{"name": "a", "value": "b"}] * 129)
    for text in (too_many, json.dumps([{"name": "a" * 1025, "value": "b"}])):
        with pytest.raises(Exception, match="tags"):
            rules.parse_tags(text)
