"""`GET /{pid}~process@1.0/now/...` (PROTOCOL 8.7, 8.8): a process's state read by path, as
JSON, without a message: the value after the last committed slot, and nothing scheduled by
reading it. Its bad-input rows are in test_errors.py."""

from __future__ import annotations

from tests.conformance.ao.support import COUNTER, AoUnit


async def test_the_state_after_the_last_slot_is_read_and_nothing_is_scheduled(
    unit: AoUnit,
) -> None:
    pid = await unit.spawn(COUNTER)
    answer = await unit.get(f"/{pid}~process@1.0/now/Count")
    assert answer.status == 200 and answer.body == 0
    await unit.processed(await unit.send(pid, "Increment", "4"))
    schedule = await unit.get(f"/scheduler/{pid}")
    answer = await unit.get(f"/{pid}~process@1.0/now/Count")
    assert answer.status == 200 and answer.body == 4
    again = await unit.get(f"/{pid}~process@1.0/now/Count/")  # a trailing slash: the same
    assert again.status == 200 and again.body == 4
    assert (await unit.get(f"/scheduler/{pid}")).body == schedule.body
