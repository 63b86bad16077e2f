"""Every bad-input row of PROTOCOL 8.7: 400 (or 404 for an unknown process or message) with
`{error}` naming what is wrong, and nothing scheduled: the reference process's schedule and
the chain's list of processes (and its record of the process) are the same after it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from rpc.client import InferchainClient, Wallet
from tests.conformance.ao.support import COUNTER, AoUnit, Reference, error_text, snapshot

OTHER_OWNER = Wallet.dev(1).address
BAD_SIGNATURE = "0x" + "11" * 65


@dataclass(frozen=True, slots=True)
class Row:
    """One bad request: `{pid}`, `{mid}`, `{other}`, `{unknown}` in its path and body are the
    reference's ids (`unknown` an id nothing has); the status and a text its error holds."""

    method: str
    path: str
    body: Any = None
    raw: bytes | None = None
    status: int = 400
    text: str = ""
    bug: str = ""  # a known bug of the unit: the row is xfail(strict) with this reason


def fill(value: Any, ref: Reference) -> Any:
    if isinstance(value, str):
        return ref.fill(value)
    if isinstance(value, list):
        return [fill(v, ref) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, ref) for k, v in value.items()}
    return value


ACTION = [{"name": "Action", "value": "Increment"}]
ROWS: dict[str, Row] = {
    # POST /process
    "process-not-json": Row("POST", "/process", raw=b"{not json", text="JSON"),
    "process-not-object": Row("POST", "/process", body=[1, 2], text="JSON object"),
    "process-module-type": Row("POST", "/process", body={"module": 5}, text="module"),
    "process-module-syntax": Row(
        "POST", "/process", body={"module": "x = = 1"}, text="does not load"
    ),
    "process-module-raises": Row(
        "POST", "/process", body={"module": "\n\nerror('no')"}, text=":3:"
    ),
    "process-module-unknown-id": Row(
        "POST", "/process", body={"module": "{unknown}"}, text="no published module"
    ),
    "process-module-a-process": Row(
        "POST", "/process", body={"module": "{pid}"}, text="not a module"
    ),
    "process-memory-text": Row(
        "POST", "/process", body={"module": COUNTER, "memory_limit": "lots"}, text="memory_limit"
    ),
    "process-memory-low": Row(
        "POST",
        "/process",
        body={"module": COUNTER, "memory_limit": 1024},
        text="emory",
    ),
    "process-memory-high": Row(
        "POST",
        "/process",
        body={"module": COUNTER, "memory_limit": "2-gb"},
        text="emory",
    ),
    "process-compute-low": Row(
        "POST",
        "/process",
        body={"module": COUNTER, "compute_limit": 10},
        text="ompute",
    ),
    "process-compute-high": Row(
        "POST",
        "/process",
        body={"module": COUNTER, "compute_limit": 10**13},
        text="ompute",
    ),
    "process-cron-text": Row(
        "POST",
        "/process",
        body={"module": COUNTER, "cron_interval": "5-fortnights"},
        text="cronInterval",
    ),
    "process-cron-zero": Row(
        "POST", "/process", body={"module": COUNTER, "cron_interval": "0-blocks"}, text="cron"
    ),
    "process-cron-type": Row(
        "POST", "/process", body={"module": COUNTER, "cron_interval": 5}, text="cron_interval"
    ),
    "process-bad-scheduler": Row(
        "POST", "/process", body={"module": "", "scheduler": "nope"}, text="scheduler"
    ),
    "process-data-type": Row("POST", "/process", body={"module": "", "data": 5}, text="data"),
    "process-tags-type": Row("POST", "/process", body={"module": "", "tags": "x"}, text="tags"),
    "process-tag-empty-name": Row(
        "POST", "/process", body={"module": "", "tags": [{"name": "", "value": "v"}]}, text="tag"
    ),
    "process-too-many-tags": Row(
        "POST",
        "/process",
        body={"module": "", "tags": [{"name": f"n{i}", "value": "v"} for i in range(129)]},
        text="tag",
    ),
    "process-signature-without-nonce": Row(
        "POST",
        "/process",
        body={"module": "", "owner": OTHER_OWNER, "signature": BAD_SIGNATURE},
        text="nonce",
    ),
    "process-bad-signature": Row(
        "POST",
        "/process",
        body={"module": "", "owner": OTHER_OWNER, "signature": BAD_SIGNATURE, "nonce": 0},
        text="the chain refused it",
    ),
    # GET /process/{id}, DELETE /process/{id}
    "memory-malformed-id": Row("GET", "/process/short", text="process id"),
    "memory-non-canonical-id": Row("GET", "/process/" + "Z" * 43, text="process id"),
    "memory-unknown": Row("GET", "/process/{unknown}", status=404, text="{unknown}"),
    "memory-bad-to": Row("GET", "/process/{pid}?to=soon", text="to"),
    "terminate-malformed-id": Row("DELETE", "/process/short", text="process id"),
    "terminate-unknown": Row("DELETE", "/process/{unknown}", status=404, text="{unknown}"),
    "terminate-not-owner": Row(
        "DELETE", "/process/{pid}", body={"owner": OTHER_OWNER}, text="the chain refused it"
    ),
    # GET /{pid}~process@1.0/now/... (the state, read without a message)
    "now-malformed-id": Row("GET", "/short~process@1.0/now/Count", text="AO id"),
    "now-unknown": Row("GET", "/{unknown}~process@1.0/now/Count", status=404, text="{unknown}"),
    "now-no-path": Row("GET", "/{pid}~process@1.0/now/", text="path"),
    "now-missing-key": Row("GET", "/{pid}~process@1.0/now/Nothing", status=404, text="Nothing"),
    "now-not-a-table": Row("GET", "/{pid}~process@1.0/now/Count/x", text="not a table"),
    "now-a-function": Row("GET", "/{pid}~process@1.0/now/Handlers/add", text="function"),
    # POST /message
    "message-not-json": Row("POST", "/message", raw=b"[", text="JSON"),
    "message-no-to": Row("POST", "/message", body={"data": "x"}, text="to"),
    "message-malformed-to": Row("POST", "/message", body={"to": "short"}, text="to"),
    "message-non-canonical-to": Row("POST", "/message", body={"to": "Z" * 43}, text="to"),
    "message-unknown-to": Row(
        "POST", "/message", body={"to": "{unknown}", "data": "x"}, status=404, text="{unknown}"
    ),
    "message-data-type": Row("POST", "/message", body={"to": "{pid}", "data": 5}, text="data"),
    "message-tags-type": Row(
        "POST", "/message", body={"to": "{pid}", "tags": [{"name": "A"}]}, text="tags"
    ),
    "message-malformed-from-process": Row(
        "POST", "/message", body={"to": "{pid}", "from_process": "x"}, text="from_process"
    ),
    "message-unknown-from-process": Row(
        "POST", "/message", body={"to": "{pid}", "from_process": "{unknown}"}, text="{unknown}"
    ),
    "message-from-process-not-its-scheduler": Row(
        "POST",
        "/message",
        body={"to": "{pid}", "from_process": "{other}", "tags": ACTION},
        text="the chain refused it",
    ),
    "message-signature-without-owner": Row(
        "POST", "/message", body={"to": "{pid}", "signature": BAD_SIGNATURE}, text="owner"
    ),
    "message-bad-signature": Row(
        "POST",
        "/message",
        body={"to": "{pid}", "owner": OTHER_OWNER, "signature": BAD_SIGNATURE, "nonce": 0},
        text="the chain refused it",
    ),
    "dry-run-unknown-to": Row(
        "POST",
        "/message",
        body={"to": "{unknown}", "read_only": True},
        status=404,
        text="{unknown}",
    ),
    # GET /message/{id}
    "status-malformed-id": Row("GET", "/message/short", text="message id"),
    "status-unknown": Row("GET", "/message/{unknown}", status=404, text="{unknown}"),
    # GET /scheduler
    "schedule-malformed-id": Row("GET", "/scheduler/short", text="id"),
    "schedule-unknown": Row("GET", "/scheduler/{unknown}", status=404, text="{unknown}"),
    "schedule-bad-from": Row("GET", "/scheduler/{pid}?from=yesterday", text="from"),
    "schedule-bad-to": Row("GET", "/scheduler/{pid}?to=-1", text="to"),
    "schedule-limit-zero": Row("GET", "/scheduler/{pid}?limit=0", text="limit"),
    "schedule-limit-high": Row("GET", "/scheduler/{pid}?limit=1001", text="limit"),
    "scheduled-unknown-message": Row(
        "GET", "/scheduler/{unknown}?process-id={pid}", status=404, text="{unknown}"
    ),
    "scheduled-other-process": Row(
        "GET", "/scheduler/{mid}?process-id={other}", status=404, text="{mid}"
    ),
    # /compute
    "compute-malformed-pid": Row("POST", "/compute/short/message/{mid}", text="process id"),
    "compute-malformed-mid": Row("GET", "/compute/{pid}/message/short", text="message id"),
    "compute-unknown-process": Row(
        "POST", "/compute/{unknown}/message/{mid}", status=404, text="{unknown}"
    ),
    "compute-unknown-message": Row(
        "GET", "/compute/{pid}/message/{unknown}", status=404, text="{unknown}"
    ),
    "compute-other-process": Row("GET", "/compute/{other}/message/{mid}", status=404, text="{mid}"),
    # /messenger
    "messenger-not-json": Row("POST", "/messenger", raw=b"nope", text="JSON"),
    "messenger-no-message": Row(
        "POST", "/messenger", body={"target_process": "{other}"}, text="message_id"
    ),
    "messenger-malformed-target": Row(
        "POST", "/messenger", body={"message_id": "{mid}", "target_process": 7}, text="target"
    ),
    "messenger-unknown-message": Row(
        "POST",
        "/messenger",
        body={"message_id": "{unknown}", "target_process": "{other}"},
        status=404,
        text="{unknown}",
    ),
    "messenger-sent-nothing-there": Row(
        "POST",
        "/messenger",
        body={"message_id": "{mid}", "target_process": "{other}"},
        text="sent nothing",
    ),
    "monitor-malformed": Row("POST", "/messenger/monitor/short", text="process id"),
    "monitor-unknown": Row("POST", "/messenger/monitor/{unknown}", status=404, text="{unknown}"),
    "unmonitor-unknown": Row(
        "DELETE", "/messenger/monitor/{unknown}", status=404, text="{unknown}"
    ),
    # /cron
    "cron-list-malformed": Row("GET", "/cron/short", text="process id"),
    "cron-list-unknown": Row("GET", "/cron/{unknown}", status=404, text="{unknown}"),
    "cron-list-bad-from": Row("GET", "/cron/{pid}?from=x", text="from"),
    "cron-run-malformed": Row("POST", "/cron/short", text="process id"),
    "cron-run-unknown": Row("POST", "/cron/{unknown}", status=404, text="{unknown}"),
}


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(row, id=name, marks=[pytest.mark.xfail(strict=True, reason=row.bug)])
        if row.bug
        else pytest.param(row, id=name)
        for name, row in ROWS.items()
    ],
)
async def test_bad_input_is_refused_and_schedules_nothing(
    unit: AoUnit, reference: Reference, chain: InferchainClient | None, row: Row
) -> None:
    before = await snapshot(unit, reference.pid, chain)
    if row.raw is not None:
        answer = await unit.request(row.method, reference.fill(row.path), data=row.raw)
    else:
        answer = await unit.request(
            row.method, reference.fill(row.path), json=fill(row.body, reference)
        )
    assert answer.status == row.status, answer
    assert reference.fill(row.text) in error_text(answer), answer.body
    assert await snapshot(unit, reference.pid, chain) == before
