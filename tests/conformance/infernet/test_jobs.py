"""The Infernet node API's rows that succeed, over HTTP: `GET /info`, a job created and read
(`POST /api/jobs`, `GET /api/jobs?id=`), chained containers and `intermediate=true`, a batch
with errors in place, the caller's ids with `pending`, streaming, a failing container, and
ownership (another client address sees none of the jobs)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conformance.infernet.support import (
    CONTAINER_KEYS,
    OTHER_CLIENT,
    Caller,
    CallerFactory,
    Target,
    check_created,
    check_error,
    check_info,
    check_plain_error,
    check_stage_output,
    is_uuid,
    prompt,
    stream_served,
)


async def test_info_lists_the_containers_and_the_pending_counts(
    infernet: Target, caller: Caller
) -> None:
    info = await caller.info()
    check_info(info, exact=infernet.owned)
    assert infernet.external, info
    if infernet.owned:
        external = {c["id"]: c["external"] for c in info["containers"]}
        assert external == {
            "first": True,
            "second": True,
            "inner": False,
            "local": True,
            "broken": True,
            "slow": True,
        }
        first = info["containers"][0]
        assert set(first) == CONTAINER_KEYS
        assert first["description"] == "the built-in model, as model first"


async def test_a_job_is_created_and_ends_with_a_container_output(
    infernet: Target, caller: Caller
) -> None:
    before = await caller.ids()
    job_id = await caller.create([infernet.first], prompt("single"))
    assert job_id not in before
    assert job_id in await caller.ids()
    result = await caller.finished(job_id)
    assert result["status"] == "success", result
    assert result["result"]["container"] == infernet.first
    assert result["intermediate_results"] == []
    if infernet.owned:
        check_stage_output(result["result"]["output"])
        assert result["result"]["output"]["output"]
        assert result["result"]["output"]["model"] == "first"
    # a finished job reads the same every time
    assert await caller.result(job_id) == result


async def test_each_created_job_has_its_own_id(infernet: Target, caller: Caller) -> None:
    data = prompt("twice")
    ids = [await caller.create([infernet.first], data) for _ in range(2)]
    assert ids[0] != ids[1]


async def test_a_chain_feeds_each_output_to_the_next_container(
    infernet: Target, caller: Caller
) -> None:
    chain = [infernet.first, infernet.second]
    job_id = await caller.create(chain, prompt("chain"))
    result = await caller.finished(job_id, intermediate=True)
    assert result["status"] == "success", result
    steps = result["intermediate_results"]
    assert [step["container"] for step in steps] == chain[:-1]
    assert all("output" in step for step in steps), steps
    assert result["result"]["container"] == chain[-1]
    plain = await caller.result(job_id)
    assert plain["intermediate_results"] == [] and plain["result"] == result["result"]
    explicit = await caller.results(job_id, intermediate=False)
    assert explicit == [plain]


async def test_a_chain_through_an_inner_container_computes_each_stage_from_the_last(
    owned: Target, caller: Caller
) -> None:
    """first -> inner -> second: each stage reads {"prompt": the last one's output}, with the
    seed it reports; re-running the ends alone with those inputs gives the same outputs."""
    data = prompt("inner chain")
    job_id = await caller.create(["first", "inner", "second"], data)
    result = await caller.finished(job_id, intermediate=True)
    assert result["status"] == "success", result
    first, inner = result["intermediate_results"]
    assert first["container"] == "first" and inner["container"] == "inner"
    last = result["result"]
    assert last["container"] == "second"
    for step in (first, inner, last):
        check_stage_output(step["output"])
    assert [first["output"]["model"], inner["output"]["model"], last["output"]["model"]] == [
        "first",
        "inner",
        "second",
    ]
    again = await caller.create(["first"], {**data, "seed": first["output"]["seed"]})
    assert (await caller.finished(again))["result"] == first
    tail = {"prompt": inner["output"]["output"], "seed": last["output"]["seed"]}
    again = await caller.create(["second"], tail)
    assert (await caller.finished(again))["result"] == last


async def test_results_of_several_ids_come_in_the_order_asked(
    infernet: Target, caller: Caller
) -> None:
    a = await caller.create([infernet.first], prompt("order a"))
    b = await caller.create([infernet.second], prompt("order b"))
    await caller.finished(a)
    await caller.finished(b)
    assert [r["id"] for r in await caller.results(b, a)] == [b, a]
    assert [r["id"] for r in await caller.results(a, b, intermediate=True)] == [a, b]


async def test_a_batch_answers_each_request_in_order_with_errors_in_place(
    infernet: Target, caller: Caller
) -> None:
    unknown = f"no-such-container-{uuid.uuid4().hex[:8]}"
    requests: list[Any] = [
        {"containers": [infernet.first], "data": prompt("batch a")},
        {"containers": [unknown], "data": {}},
        42,
        {"containers": [], "data": {}},
        {"containers": [infernet.second], "data": prompt("batch b")},
    ]
    if infernet.internal is not None:
        requests.append({"containers": [infernet.internal], "data": {}})
    before = await caller.ids()
    status, answers = await caller.post("/api/jobs/batch", requests)
    assert status == 200, answers
    assert isinstance(answers, list) and len(answers) == len(requests), answers
    created = [check_created(answers[0]), check_created(answers[4])]
    assert check_error(answers[1]) == {
        "error": "Container not supported",
        "params": {"container": unknown},
    }
    check_error(answers[2])
    assert check_error(answers[3]) == {"error": "No containers specified"}
    if infernet.internal is not None:
        assert check_error(answers[5]) == {
            "error": "First container must be external",
            "params": {"first_container": infernet.internal},
        }
    after = await caller.ids()
    assert len(after) == len(before) + 2 and set(after) - set(before) == set(created)
    for job_id, container in zip(created, (infernet.first, infernet.second), strict=True):
        result = await caller.finished(job_id)
        assert result["status"] == "success" and result["result"]["container"] == container


async def test_pending_splits_the_callers_ids_into_running_and_finished(
    infernet: Target, caller: Caller
) -> None:
    done = await caller.create([infernet.first], prompt("pending done"))
    await caller.finished(done)
    running = None
    if infernet.owned:  # `slow` runs for seconds: still running while the lists are read
        running = await caller.create(["slow"], prompt("pending running"))
        await caller.running(running)
    every = await caller.ids()
    pending = await caller.ids(pending=True)
    finished = await caller.ids(pending=False)
    assert done in every and done in finished and done not in pending
    if running is not None:
        assert running in every and running in pending and running not in finished
    assert not set(pending) & set(finished)
    assert set(pending) | set(finished) == set(every)
    assert len(every) == len(set(every))


async def test_a_running_job_reads_as_running_without_a_result(
    owned: Target, caller: Caller
) -> None:
    job_id = await caller.create(["first", "slow"], prompt("running"))
    result = await caller.running(job_id)
    assert result == {
        "id": job_id,
        "status": "running",
        "result": None,
        "intermediate_results": [],
    }
    info = await caller.info()
    assert info["pending"]["offchain"] >= 1


async def test_streaming_writes_the_id_then_the_output_that_the_job_keeps(
    infernet: Target, caller: Caller
) -> None:
    if not await stream_served(infernet, caller):
        pytest.skip(f"{infernet.url} does not serve POST /api/jobs/stream")
    body = {"containers": [infernet.first, infernet.second], "data": prompt("stream")}
    async with caller.session.post(caller.url + "/api/jobs/stream", json=body) as resp:
        assert resp.status == 200, await resp.text()
        first_line = (await resp.content.readline()).decode()
        rest = (await resp.content.read()).decode()
    assert first_line.endswith("\n"), first_line
    job_id = first_line.strip()
    assert is_uuid(job_id), first_line
    assert rest, "the stream holds no output after the id"
    assert job_id in await caller.ids()
    result = await caller.finished(job_id, intermediate=True)
    assert result["status"] == "success", result
    assert [s["container"] for s in result["intermediate_results"]] == [infernet.first]
    assert result["result"]["container"] == infernet.second
    assert result["result"]["output"]["output"] == rest


async def test_a_failing_container_fails_the_job_with_a_container_error(
    owned: Target, caller: Caller
) -> None:
    job_id = await caller.create(["first", "broken", "second"], prompt("broken"))
    result = await caller.finished(job_id, intermediate=True)
    assert result["status"] == "failed", result
    assert set(result["result"]) == {"container", "error"}
    assert result["result"]["container"] == "broken"
    assert "HTTP 500" in result["result"]["error"], result  # what the stub answered
    assert [s["container"] for s in result["intermediate_results"]] == ["first"]
    assert "output" in result["intermediate_results"][0]
    assert job_id in await caller.ids(pending=False)


async def test_another_client_address_sees_none_of_the_jobs(
    infernet: Target, caller: Caller, callers: CallerFactory
) -> None:
    other = await callers(OTHER_CLIENT)
    mine = await caller.create([infernet.first], prompt("mine"))
    theirs = await other.create([infernet.first], prompt("theirs"))
    await caller.finished(mine)
    await other.finished(theirs)
    assert mine in await caller.ids() and theirs not in await caller.ids()
    assert theirs in await other.ids() and mine not in await other.ids()
    assert mine not in await other.ids(pending=False)
    status, answer = await other.get(f"/api/jobs?id={mine}")
    assert status == 404, answer
    assert mine in check_plain_error(answer)
    status, answer = await caller.get(f"/api/jobs?id={theirs}&intermediate=true")
    assert status == 404, answer
    assert theirs in check_plain_error(answer)
    # the job is still its owner's, unchanged
    assert (await caller.result(mine))["status"] == "success"
