"""`POST /process`, `GET /process/{id}` (and `?to=`), `DELETE /process/{id}` (PROTOCOL 8.7),
and a spawn signed with EIP-712 by its owner (8.7's signing, 3)."""

from __future__ import annotations

from chain.protocol import ao as ao_rules
from chain.protocol.types import AoMessage, AoSpawn, AoTerminate
from rpc.client import (
    AO_DEFAULT_COMPUTE_LIMIT,
    InferchainClient,
    Wallet,
    ao_tags_json,
    presign,
)
from tests.conformance.ao.support import (
    COUNTER,
    WAIT_S,
    AoUnit,
    all_processes,
    error_text,
    snapshot,
)
from tests.helpers import wait_until


async def test_spawn_answers_the_process_id_and_slot_zero_is_scheduled(unit: AoUnit) -> None:
    pid = await unit.spawn(COUNTER, tags=[{"name": "Name", "value": "counter"}])
    (spawn,) = await unit.schedule(pid)
    assert spawn["id"] == pid and spawn["slot"] == 0 and spawn["process"] == pid
    memory = await unit.memory(pid)
    assert b"Count" in memory


async def test_memory_at_an_earlier_time_is_the_earlier_memory(unit: AoUnit) -> None:
    pid = await unit.spawn(COUNTER)
    memories = [await unit.memory(pid)]  # memories[k]: after slot k

    async def later_block() -> bool:
        """One more Increment; true once a slot's block time is later than the spawn's
        (block times are whole seconds, PROTOCOL 1, so a few blocks may share one)."""
        result = await unit.run(pid, "Increment", "1")
        assert result["Error"] is None, result
        memories.append(await unit.memory(pid))
        schedule = await unit.schedule(pid)
        return bool(schedule[-1]["timestamp"] > schedule[0]["timestamp"])

    await wait_until(later_block, "a message in a block later than the spawn's second", WAIT_S)
    schedule = await unit.schedule(pid)
    times = [entry["timestamp"] for entry in schedule]
    assert [entry["slot"] for entry in schedule] == list(range(len(memories)))
    assert times == sorted(times)
    assert len(set(memories)) == len(memories)  # each Increment changed the memory
    for time in sorted(set(times)):
        last = max(k for k, t in enumerate(times) if t <= time)
        assert await unit.memory(pid, f"?to={time}") == memories[last], (time, last)
    assert await unit.memory(pid, f"?to={times[0]}") != memories[-1]
    # the replays of earlier memories left the live state as it was
    assert await unit.memory(pid) == memories[-1]


async def test_terminate_then_messages_are_refused(
    unit: AoUnit, chain: InferchainClient | None
) -> None:
    pid = await unit.spawn(COUNTER)
    answer = await unit.delete(f"/process/{pid}")
    assert answer.status == 200, answer
    assert answer.body == {"status": "terminated", "process_id": pid}
    before = await snapshot(unit, pid, chain)
    tags = [{"name": "Action", "value": "Increment"}]
    refused = await unit.post("/message", {"to": pid, "data": "1", "tags": tags})
    # a terminated target is refused by the chain (PROTOCOL 8.2: -32602 data.param target)
    assert refused.status in (400, 404), refused
    assert "terminated" in error_text(refused) or pid in error_text(refused), refused
    again = await unit.delete(f"/process/{pid}")
    assert again.status == 400 and "terminated" in error_text(again), again
    assert await snapshot(unit, pid, chain) == before


async def test_a_signed_spawn_is_the_transaction_it_signs(
    unit: AoUnit, ledger: InferchainClient
) -> None:
    wallet = Wallet.dev(3)
    nonce = await ledger.next_nonce(wallet.address)
    spawn = AoSpawn(
        sender=wallet.address,
        nonce=nonce,
        module=COUNTER,
        scheduler=wallet.address,
        memory_limit=1 << 20,
        compute_limit=AO_DEFAULT_COMPUTE_LIMIT,
    )
    tx = presign(spawn, await ledger.chain_id(), wallet.private_key)
    body = {
        "module": COUNTER,
        "scheduler": wallet.address,
        "memory_limit": 1 << 20,
        "compute_limit": AO_DEFAULT_COMPUTE_LIMIT,
        "owner": wallet.address,
        "nonce": nonce,
    }
    before = await all_processes(ledger)
    # signed for other fields (another memory limit): refused, nothing spawned
    bad = await unit.post("/process", {**body, "memory_limit": 2 << 20, **_sig(tx.params)})
    assert bad.status == 400 and error_text(bad), bad
    assert await all_processes(ledger) == before
    answer = await unit.post("/process", {**body, **_sig(tx.params)})
    assert answer.status == 200, answer
    pid = answer.body["process_id"]
    assert pid == ao_rules.ao_id(bytes.fromhex(tx.params["signature"][2:]))
    (slot0,) = await unit.schedule(pid)
    assert slot0["owner"].lower() == wallet.address.lower()
    assert await all_processes(ledger) == [*before, pid]

    # a signed message, then a signed terminate, each the transaction it signs
    chain_id = await ledger.chain_id()
    tags = [{"name": "Action", "value": "Increment"}]
    message = AoMessage(
        sender=wallet.address,
        nonce=nonce + 1,
        target=pid,
        data="2",
        tags=ao_tags_json([("Action", "Increment")]),
    )
    signed = presign(message, chain_id, wallet.private_key).params
    body = {"to": pid, "data": "2", "tags": tags, "owner": wallet.address, "nonce": nonce + 1}
    answer = await unit.post("/message", {**body, **_sig(signed)})
    assert answer.status == 200, answer
    mid = answer.body["message_id"]
    assert mid == ao_rules.ao_id(bytes.fromhex(signed["signature"][2:]))
    result = await unit.processed(mid)
    assert result["Messages"][0]["Target"] == wallet.address
    assert result["Messages"][0]["Data"] == "2"
    end = AoTerminate(sender=wallet.address, nonce=nonce + 2, process=pid)
    signed = presign(end, chain_id, wallet.private_key).params
    terminate = {"owner": wallet.address, "nonce": nonce + 2, **_sig(signed)}
    answer = await unit.delete(f"/process/{pid}", terminate)
    assert answer.status == 200 and answer.body == {"status": "terminated", "process_id": pid}
    await ledger.wait_for_tx(presign(end, chain_id, wallet.private_key).tx_hash, timeout=WAIT_S)
    assert (await ledger.ao_process(pid))["terminated"] is True


def _sig(params: dict[str, object]) -> dict[str, object]:
    return {"signature": params["signature"]}
