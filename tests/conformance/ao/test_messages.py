"""`POST /message` and `GET /message/{id}`, dry runs (`read_only`), and `POST` / `GET
/compute/{pid}/message/{mid}` (PROTOCOL 8.5, 8.7): AO's result `{Output, Messages, Spawns,
Error}`."""

from __future__ import annotations

from rpc.client import InferchainClient
from tests.conformance.ao.support import COUNTER, RESULT_KEYS, AoUnit, snapshot

INCREMENT = [{"name": "Action", "value": "Increment"}]


async def test_a_message_is_pending_then_processed_with_its_result(unit: AoUnit) -> None:
    pid = await unit.spawn(COUNTER)
    mid = await unit.send(pid, "Increment", "5")
    first = await unit.get(f"/message/{mid}")
    assert first.status == 200 and set(first.body) == {"status", "result"}, first
    assert first.body["status"] in ("pending", "processed"), first.body
    result = await unit.processed(mid)
    assert result["Error"] is None, result
    (reply,) = result["Messages"]
    assert set(reply) == {"Target", "Data", "Anchor", "Tags"}, reply
    assert reply["Data"] == "5"
    assert {"name": "Action", "value": "Count"} in reply["Tags"]
    (scheduled,) = [e for e in await unit.schedule(pid) if e["id"] == mid]
    assert scheduled["slot"] == 1 and scheduled["process"] == pid


async def test_compute_answers_the_result_by_post_and_get(unit: AoUnit) -> None:
    pid = await unit.spawn(COUNTER)
    mid = await unit.send(pid, "Increment", "3")
    # POST evaluates it when needed: no waiting on GET /message first
    computed = await unit.processed(mid)
    for method in ("POST", "GET"):
        answer = await unit.request(method, f"/compute/{pid}/message/{mid}")
        assert answer.status == 200, answer
        assert set(answer.body) == RESULT_KEYS, answer.body
        assert answer.body == computed
    assert isinstance(computed["Spawns"], list) and computed["Error"] is None


async def test_a_dry_run_answers_and_changes_nothing(
    unit: AoUnit, chain: InferchainClient | None
) -> None:
    pid = await unit.spawn(COUNTER)
    await unit.run(pid, "Increment", "2")
    memory = await unit.memory(pid)
    before = await snapshot(unit, pid, chain)
    body = {"to": pid, "data": "40", "tags": INCREMENT, "read_only": True}
    answer = await unit.post("/message", body)
    assert answer.status == 200, answer
    assert set(answer.body) == {"result"}, answer.body
    result = answer.body["result"]
    assert set(result) == RESULT_KEYS and result["Error"] is None, result
    (reply,) = result["Messages"]
    assert reply["Data"] == "42"  # what the message would answer
    failing = await unit.post(
        "/message", {"to": pid, "tags": [{"name": "Action", "value": "Fail"}], "read_only": True}
    )
    assert failing.status == 200 and "failed on purpose" in failing.body["result"]["Error"]
    assert await unit.memory(pid) == memory
    assert await snapshot(unit, pid, chain) == before
    # and the next real message sees the memory as it was
    after = await unit.run(pid, "Increment", "1")
    assert after["Messages"][0]["Data"] == "3"


async def test_the_spawn_is_processed_and_its_result_is_the_load(unit: AoUnit) -> None:
    pid = await unit.spawn('print("loaded")\n' + COUNTER)
    computed = await unit.request("GET", f"/compute/{pid}/message/{pid}")
    assert computed.status == 200 and set(computed.body) == RESULT_KEYS, computed
    assert computed.body["Error"] is None and "loaded" in str(computed.body["Output"])
    status = await unit.get(f"/message/{pid}")
    assert status.status == 200 and status.body["status"] == "processed", status
    assert status.body["result"] == computed.body
