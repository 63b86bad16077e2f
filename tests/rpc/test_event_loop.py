"""The servers' event loop (`rpc.serving.run`): uvloop's by default, the standard library's
when `INFERCHAIN_EVENT_LOOP=asyncio` asks for it, and a clear refusal of any other name. The
validator, resource node and AO unit processes of tests/e2e run on it, the attacks of
tests/e2e/test_http_attacks.py included."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from rpc import serving
from tests.helpers import REPO


async def loop_module() -> str:
    """The module of the running loop's class, after a real round trip on loopback."""
    got: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping\n")
    got.append(await reader.readline())
    writer.close()
    server.close()
    await server.wait_closed()
    assert got == [b"ping\n"]
    return type(asyncio.get_running_loop()).__module__


def test_servers_run_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop", reason="uvloop has no build for this platform")
    monkeypatch.delenv(serving.EVENT_LOOP_ENV, raising=False)
    assert serving.event_loop_name() == "uvloop"
    assert serving.run(loop_module()).startswith("uvloop")


def test_the_standard_loop_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(serving.EVENT_LOOP_ENV, "asyncio")
    assert serving.event_loop_name() == "asyncio"
    assert serving.run(loop_module()) == "asyncio.unix_events"


@pytest.mark.parametrize("value", ["trio", "uv loop", "1"])
def test_another_loop_name_is_refused_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    monkeypatch.setenv(serving.EVENT_LOOP_ENV, value)
    ran: list[bool] = []

    async def main() -> None:
        ran.append(True)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a coroutine left unawaited would warn
        with caplog.at_level(logging.ERROR, "rpc.serving"), pytest.raises(SystemExit) as exc:
            serving.run(main())
    assert exc.value.code == 2
    assert ran == []
    assert f"INFERCHAIN_EVENT_LOOP={value.lower()!r}" in caplog.text
    assert "expected one of uvloop, asyncio" in caplog.text


def test_a_validator_with_a_bad_loop_name_exits_with_a_line_saying_why(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rpc", "--port", "0", "--data-dir", str(tmp_path / "ledger")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, serving.EVENT_LOOP_ENV: "trio"},
    )
    assert out.returncode == 2, out.stderr
    assert not (tmp_path / "ledger").exists()
    assert "INFERCHAIN_EVENT_LOOP='trio': expected one of uvloop, asyncio" in out.stderr
    assert "Traceback" not in out.stderr
