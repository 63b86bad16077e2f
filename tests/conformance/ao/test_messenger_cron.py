"""The messenger unit and cron (PROTOCOL 8.4, 8.6, 8.7): a process's message to another is
relayed and the reply comes back; `POST /messenger` relays once; monitoring; a cron of
`2-blocks` gets one tick every two blocks; `POST /cron/{pid}` runs one."""

from __future__ import annotations

from typing import Any

from tests.conformance.ao.support import (
    CALLER,
    COUNTER,
    PING,
    RESULT_KEYS,
    WAIT_S,
    AoUnit,
    tag_value,
)
from tests.helpers import wait_until

CRON_BLOCKS = 2
OVER_BLOCKS = 6


async def test_a_process_messages_another_and_the_reply_comes_back(unit: AoUnit) -> None:
    pinger = await unit.spawn(PING)
    caller = await unit.spawn(CALLER)
    call = await unit.send(caller, "Call", pinger)
    sent = await unit.processed(call)
    (outgoing,) = sent["Messages"]
    assert outgoing["Target"] == pinger

    async def answered() -> bool:
        return b"pong 1" in await unit.memory(caller)

    await wait_until(answered, "the caller got the pinger's reply", WAIT_S)
    *_, ping = await unit.schedule(pinger)
    assert ping["fromProcess"] == caller and ping["from"] == caller
    *_, reply = await unit.schedule(caller)
    assert reply["fromProcess"] == pinger and reply["from"] == pinger
    assert tag_value(ping, "Action") == "Ping"

    # POST /messenger relays that message's outbox to the target once: relayed already
    answer = await unit.post("/messenger", {"message_id": call, "target_process": pinger})
    assert answer.status == 200 and answer.body == {"status": "relayed", "count": 1}, answer
    # a message sent after it is processed after anything the relay could have scheduled
    marker = await unit.send(pinger, "Other")
    await unit.processed(marker)
    from_caller = [e for e in await unit.schedule(pinger) if e["fromProcess"] == caller]
    assert [e["id"] for e in from_caller] == [ping["id"]]


async def test_monitor_and_unmonitor(unit: AoUnit) -> None:
    pinger = await unit.spawn(PING)
    caller = await unit.spawn(CALLER)
    for method in ("DELETE", "POST", "DELETE"):
        answer = await unit.request(method, f"/messenger/monitor/{caller}")
        assert answer.status == 200, answer
        assert set(answer.body) == {"status"} and isinstance(answer.body["status"], str)
    call = await unit.send(caller, "Call", pinger)

    async def committed() -> bool:
        # read from the scheduler only: nothing here has the caller evaluated
        answer = await unit.get(f"/scheduler/{call}?process-id={caller}")
        return answer.status == 200

    await wait_until(committed, "the call scheduled", WAIT_S)
    answer = await unit.post(f"/messenger/monitor/{caller}")
    assert answer.status == 200, answer

    async def relayed() -> bool:
        return any(e["fromProcess"] == caller for e in await unit.schedule(pinger))

    # monitored again, the crank evaluates the caller and its Ping is relayed unasked
    await wait_until(relayed, "the monitored caller's message relayed", WAIT_S)


async def test_a_cron_of_two_blocks_ticks_once_every_two_blocks(unit: AoUnit) -> None:
    pid = await unit.spawn(COUNTER, cron_interval=f"{CRON_BLOCKS}-blocks")
    (spawn,) = [e for e in await unit.schedule(pid) if e["slot"] == 0]
    start = int(spawn["height"])

    async def ticks() -> list[dict[str, Any]] | None:
        answer = await unit.get(f"/cron/{pid}")
        assert answer.status == 200, answer
        listed: list[dict[str, Any]] = answer.body
        reached = any(item["message"]["height"] >= start + OVER_BLOCKS for item in listed)
        return listed if reached else None

    listed = await wait_until(ticks, f"cron ticks past {OVER_BLOCKS} blocks", WAIT_S)
    within = [item for item in listed if item["message"]["height"] <= start + OVER_BLOCKS]
    assert len(within) == OVER_BLOCKS // CRON_BLOCKS
    for k, item in enumerate(listed, start=1):
        assert set(item) == {"message", "result"}
        message, result = item["message"], item["result"]
        assert message["cron"] is True and message["height"] == start + CRON_BLOCKS * k
        assert tag_value(message, "Action") == "Cron"
        assert tag_value(message, "Cron-Tick") == str(k)
        assert message["from"] == pid
        assert set(result) == RESULT_KEYS and result["Error"] is None, result
        assert f"tick {k}" in result["Output"]["data"]
    # from / to (ms, both included) select by timestamp
    first = listed[0]["message"]["timestamp"]
    answer = await unit.get(f"/cron/{pid}?from={first}&to={first}")
    assert answer.status == 200
    assert [i["message"]["id"] for i in answer.body] == [
        i["message"]["id"] for i in listed if i["message"]["timestamp"] == first
    ]


async def test_post_cron_runs_one_now(unit: AoUnit) -> None:
    pid = await unit.spawn(COUNTER)
    answer = await unit.post(f"/cron/{pid}")
    assert answer.status == 200, answer
    assert set(answer.body) == RESULT_KEYS and answer.body["Error"] is None, answer.body
    assert "tick 1" in answer.body["Output"]["data"]
    *_, entry = await unit.schedule(pid)
    assert tag_value(entry, "Action") == "Cron" and entry["slot"] == 1
    again = await unit.post(f"/cron/{pid}")
    assert again.status == 200 and "tick 2" in again.body["Output"]["data"]
