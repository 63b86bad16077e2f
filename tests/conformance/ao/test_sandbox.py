"""The sandbox and the limits (PROTOCOL 8.8): what a process must not do ends its message with
`Error`, its memory stays as it was before the message, and the unit keeps serving."""

from __future__ import annotations

import pytest

from tests.conformance.ao.support import COUNTER, AoUnit

SANDBOX_MEMORY = 4 << 20
SANDBOX_COMPUTE = 5_000_000


async def check_refused(unit: AoUnit, pid: str, code: str, error: str) -> None:
    """`code` run by Eval (from the owner) ends with an Error holding `error`; the memory is
    the one before; a message after it is served."""
    before = await unit.memory(pid)
    result = await unit.run(pid, "Eval", "Touched = true; Count = 1000; " + code)
    assert result["Error"] is not None and error in result["Error"], result
    assert result["Messages"] == [] and result["Spawns"] == []
    assert await unit.memory(pid) == before
    after = await unit.run(pid, "Eval", "return 6 * 7")
    assert after["Error"] is None and after["Output"]["data"] == "42", after


@pytest.mark.parametrize(
    "code, error",
    [
        ("os.execute('true')", "execute"),
        ("io.open('/etc/passwd')", "io"),
        ("assert(load(string.char(27) .. 'LuaT'))", "binary chunks are not allowed"),
        ("assert(load(string.char(27) .. 'Lua', 'x', 'b'))", "only text chunks"),
    ],
    ids=["os.execute", "io.open", "load-binary", "load-mode-b"],
)
async def test_sandbox_refusals_end_as_error(unit: AoUnit, code: str, error: str) -> None:
    pid = await unit.spawn(COUNTER)
    await check_refused(unit, pid, code, error)


async def test_a_memory_bomb_ends_as_error_and_the_memory_stays(unit: AoUnit) -> None:
    pid = await unit.spawn(COUNTER, memory_limit=SANDBOX_MEMORY)
    await check_refused(unit, pid, "Bomb = string.rep('x', 1 << 30)", "memory limit exceeded")


async def test_an_endless_loop_ends_as_error_and_the_memory_stays(unit: AoUnit) -> None:
    pid = await unit.spawn(COUNTER, compute_limit=SANDBOX_COMPUTE)
    await check_refused(unit, pid, "while true do end", "compute limit exceeded")


async def test_a_handler_that_errors_rolls_back(unit: AoUnit) -> None:
    pid = await unit.spawn(COUNTER)
    await unit.run(pid, "Increment", "4")
    before = await unit.memory(pid)
    failed = await unit.run(pid, "Fail")
    assert failed["Error"] is not None and "failed on purpose" in failed["Error"], failed
    assert failed["Messages"] == []
    assert await unit.memory(pid) == before
    assert b"Scratch" not in await unit.memory(pid)
    after = await unit.run(pid, "Increment", "1")
    assert after["Messages"][0]["Data"] == "5"
