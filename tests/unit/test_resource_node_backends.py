"""Resource node backends: the deterministic model, the OpenAI-compatible client (against a
stub server on loopback that stands in for the outside server), and the fault wrappers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from chain.protocol.schema import postprocess
from resource_node.backends import (
    BackendError,
    InferenceRequest,
    TaskError,
    make_backend,
    parse_backend_options,
    prompt_text,
    request_from_task,
)
from resource_node.backends.deterministic import DEFAULT_MAX_TOKENS, DeterministicBackend
from resource_node.backends.faults import (
    WRONG_MARKER,
    Faults,
    SlowBackend,
    WrongBackend,
)
from resource_node.backends.openai_compat import (
    MAX_ANSWER_BYTES,
    MIN_SHARED_TEMPERATURE,
    OpenAIBackend,
)
from resource_node.untrusted import MAX_FIELD_LENGTH, Unreadable

REPO = Path(__file__).resolve().parents[2]
TEST_TIMEOUT = 10.0  # a bound so a broken timeout fails the test instead of hanging it

REQUEST = InferenceRequest(
    model="demo",
    prompts='{"prompt":"Hello"}',
    model_options={"model": "demo", "temperature": 0.5},
    seed=12345678901234567890,
    max_tokens=8,
)


def word_count(output: str) -> int:
    return len(output.rstrip(".").split())


@dataclass
class RecordingSleep:
    """An injected clock: records how long the code asked to wait, and does not wait."""

    calls: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


# Deterministic backend


async def test_deterministic_same_inputs_same_output() -> None:
    first = await DeterministicBackend().infer(REQUEST)
    second = await DeterministicBackend().infer(replace(REQUEST))
    assert first == second
    assert first.strip()


async def test_deterministic_pinned_vector() -> None:
    """Every node must compute the same text: a change of the algorithm shows here."""
    assert await DeterministicBackend().infer(REQUEST) == "Quiet noise bright and token over."


async def test_deterministic_bytes_fields_count_by_their_bytes() -> None:
    as_hex = "0x" + REQUEST.prompts.encode().hex()
    backend = DeterministicBackend()
    assert await backend.infer(replace(REQUEST, prompts=as_hex)) == await backend.infer(REQUEST)


@pytest.mark.parametrize(
    "change",
    [
        {"seed": REQUEST.seed + 1},
        {"prompts": '{"prompt":"Hello!"}'},
        {"model": "other"},
        {"model_options": {"model": "demo", "temperature": 0.6}},
    ],
    ids=["seed", "prompts", "model", "modelOptions"],
)
async def test_deterministic_each_input_changes_output(change: dict[str, Any]) -> None:
    backend = DeterministicBackend()
    assert await backend.infer(replace(REQUEST, **change)) != await backend.infer(REQUEST)


def test_deterministic_identical_across_processes() -> None:
    code = (
        "import asyncio, json, sys\n"
        "from resource_node.backends import InferenceRequest\n"
        "from resource_node.backends.deterministic import DeterministicBackend\n"
        "req = InferenceRequest(**json.loads(sys.argv[1]))\n"
        "print(asyncio.run(DeterministicBackend().infer(req)), end='')\n"
    )
    fields = {
        "model": REQUEST.model,
        "prompts": REQUEST.prompts,
        "model_options": REQUEST.model_options,
        "seed": 987654321,
        "max_tokens": 20,
        "schema": "json",
    }
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(fields)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out == DeterministicBackend().compute(InferenceRequest(**fields))[0]  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [1, 2, 3, 8, 100])
def test_deterministic_honours_max_tokens(limit: int) -> None:
    backend = DeterministicBackend()
    counts = set()
    for seed in range(40):
        output, tokens = backend.compute(replace(REQUEST, seed=seed, max_tokens=limit))
        assert 1 <= word_count(output) <= limit
        assert word_count(output) == tokens
        counts.add(tokens)
    if limit >= 3:
        assert len(counts) > 1, "the length should depend on the inputs too"


def test_deterministic_default_token_limit() -> None:
    for seed in range(40):
        output, _ = DeterministicBackend().compute(replace(REQUEST, seed=seed, max_tokens=None))
        assert 1 <= word_count(output) <= DEFAULT_MAX_TOKENS
    small = DeterministicBackend(default_max_tokens=2)
    assert word_count(small.compute(replace(REQUEST, max_tokens=None))[0]) <= 2


@pytest.mark.parametrize("schema", ["json", "JSON", "json-v1", '{"type":"json"}', "0x6a736f6e"])
async def test_deterministic_json_schema_output_parses(schema: str) -> None:
    backend = DeterministicBackend()
    output = await backend.infer(replace(REQUEST, schema=schema))
    processed = postprocess(schema, output)
    assert processed.error is None
    assert processed.value == {"answer": await backend.infer(REQUEST)}


@pytest.mark.parametrize("schema", ["text", "text-generation-v1", "anything"])
async def test_deterministic_text_schema_output_is_plain_text(schema: str) -> None:
    output = await DeterministicBackend().infer(replace(REQUEST, schema=schema))
    assert postprocess(schema, output).value == output
    with pytest.raises(ValueError):
        json.loads(output)


async def test_simulated_speed_awaits_on_the_injected_clock() -> None:
    sleep = RecordingSleep()
    backend = DeterministicBackend(tokens_per_second=4.0, sleep=sleep)
    output = await backend.infer(REQUEST)
    assert sleep.calls == [word_count(output) / 4.0]
    assert output == await DeterministicBackend().infer(REQUEST)


async def test_instant_by_default() -> None:
    sleep = RecordingSleep()
    await DeterministicBackend(sleep=sleep).infer(REQUEST)
    assert sleep.calls == []


def test_deterministic_options() -> None:
    backend = make_backend(
        "deterministic", {"tokens_per_second": "12.5", "default_max_tokens": "7"}
    )
    assert isinstance(backend, DeterministicBackend)
    assert (backend.tokens_per_second, backend.default_max_tokens) == (12.5, 7)
    for bad in ({"speed": "1"}, {"tokens_per_second": "fast"}, {"tokens_per_second": "-1"}):
        with pytest.raises(ValueError, match=r"speed|tokens_per_second"):
            make_backend("deterministic", bad)
    with pytest.raises(ValueError, match="default_max_tokens"):
        make_backend("deterministic", {"default_max_tokens": "0"})
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("gpt", {})


def test_parse_backend_options() -> None:
    assert parse_backend_options(["a=1", "base_url=http://x:1/v1?q=a=b"]) == {
        "a": "1",
        "base_url": "http://x:1/v1?q=a=b",
    }
    for bad in ("novalue", "=x"):
        with pytest.raises(ValueError, match="key=value"):
            parse_backend_options([bad])


# Requests from task objects


def test_request_from_task() -> None:
    task = {
        "taskHash": "0x" + "11" * 32,
        "prompts": '{"prompt":"Hi"}',
        "modelOptions": '{"model":"llama","max_tokens":5,"temperature":0.2}',
        "schema": "json",
        "model": "llama",
    }
    request = request_from_task(task, 42)
    assert request == InferenceRequest(
        model="llama",
        prompts='{"prompt":"Hi"}',
        model_options={"model": "llama", "max_tokens": 5, "temperature": 0.2},
        seed=42,
        max_tokens=5,
        schema="json",
    )


@pytest.mark.parametrize(
    ("options", "expected", "max_tokens"),
    [
        ("", {}, None),
        ("not json", {}, None),
        ("[1, 2]", {}, None),
        ("0x" + b'{"max_tokens":3}'.hex(), {"max_tokens": 3}, 3),
        ("[" * 256 + "]" * 256, {}, None),  # opaque bytes within the nesting bound
    ],
)
def test_request_model_options(
    options: str, expected: dict[str, Any], max_tokens: int | None
) -> None:
    request = request_from_task({"prompts": "p", "modelOptions": options, "schema": "text"}, 1)
    assert request.model_options == expected
    assert request.max_tokens == max_tokens
    assert request.model is None


@pytest.mark.parametrize(
    ("task", "field"),
    [
        ({"prompts": 3}, "prompts"),
        ({}, "prompts"),
        ({"prompts": "[" * 257}, "prompts"),
        ({"prompts": "p", "modelOptions": "[" * 100_000}, "modelOptions"),
        ({"prompts": "p", "modelOptions": "0x" + (b"{" * 300).hex()}, "modelOptions"),
        ({"prompts": "p", "modelOptions": {"model": "m"}}, "modelOptions"),
        ({"prompts": "p", "modelOptions": '{"max_tokens":true}'}, "modelOptions.max_tokens"),
        ({"prompts": "p", "modelOptions": '{"max_tokens":9999999}'}, "modelOptions.max_tokens"),
        ({"prompts": "p", "modelOptions": '{"model":7}'}, "modelOptions.model"),
        ({"prompts": "p", "schema": ["json"]}, "schema"),
        ({"prompts": "x" * (MAX_FIELD_LENGTH + 1)}, "prompts"),
    ],
)
def test_request_from_a_task_it_cannot_read(task: dict[str, Any], field: str) -> None:
    """A field of the wrong type, beyond the bounds, or a modelOptions object no validator
    admits (PROTOCOL 4.2): Unreadable naming the field, before any parser sees it."""
    with pytest.raises(Unreadable) as info:
        request_from_task(task, 1)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("prompts", "text"),
    [
        ('{"prompt":"Tell me"}', "Tell me"),
        ('{"question":"Tell me"}', '{"question":"Tell me"}'),
        ('{"prompt":3}', '{"prompt":3}'),
        ("plain words", "plain words"),
        ("0x" + "héllo".encode().hex(), "héllo"),
    ],
)
def test_prompt_text(prompts: str, text: str) -> None:
    assert prompt_text(prompts) == text


# OpenAI-compatible backend against a stub server


@dataclass
class StubServer:
    """A stand-in for an outside OpenAI-compatible server, on 127.0.0.1."""

    url: str = ""
    mode: str = "ok"
    models: list[str] = field(default_factory=lambda: ["demo"])
    requests: list[dict[str, Any]] = field(default_factory=list)
    never: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        if self.mode == "hang":
            await self.never.wait()  # never set: the client's timeout must end it
        if self.mode == "error":
            return web.json_response({"error": {"message": "model exploded"}}, status=500)
        if self.mode == "refuse":
            return web.json_response({"error": {"message": "unknown field top_k"}}, status=422)
        if self.mode == "not_json":
            return web.Response(text="<html>gateway</html>")
        if self.mode == "no_choices":
            return web.json_response({"choices": []})
        if self.mode == "deep":
            return web.Response(body=b'{"choices": ' + b"[" * 100_000)
        if self.mode == "huge":
            return web.Response(body=b" " * (MAX_ANSWER_BYTES + 1))
        chat = request.path.endswith("/chat/completions")
        if self.mode == "long_content":
            content = "x" * (MAX_FIELD_LENGTH + 1)
        else:
            content = f"echo: {body['messages'][0]['content'] if chat else body['prompt']}"
        if body.get("stream"):
            return await self.stream(request, content, chat)
        if chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": content},
            }
        else:
            choice = {"index": 0, "text": content, "finish_reason": "stop"}
        usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        return web.json_response({"choices": [choice], "usage": usage})

    async def stream(self, request: web.Request, content: str, chat: bool) -> web.StreamResponse:
        """Server-sent events as OpenAI's servers send them: a chunk per word, then [DONE]."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in re.findall(r"\s*\S+\s*", content):
            delta = {"delta": {"content": word}} if chat else {"text": word}
            event = {"choices": [{"index": 0, **delta}]}
            await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        if self.mode == "bad_stream":
            await response.write(b'data: {"choices": []}\n\n')
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": [{"id": m} for m in self.models]})


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    server = StubServer()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.handle)
    app.router.add_post("/v1/completions", server.handle)
    app.router.add_get("/v1/models", server.list_models)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        server.never.set()
        await runner.cleanup()


async def infer(backend: OpenAIBackend, request: InferenceRequest) -> str:
    try:
        return await asyncio.wait_for(backend.infer(request), TEST_TIMEOUT)
    finally:
        await backend.aclose()


CHATML = "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("api", ["completions", "chat"])
async def test_openai_streams_chunks_that_join_to_the_answer(stub: StubServer, api: str) -> None:
    backend = OpenAIBackend(stub.url, api=api, template="raw")
    try:
        chunks = [chunk async for chunk in backend.stream(REQUEST)]
        whole = await backend.infer(REQUEST)
    finally:
        await backend.aclose()
    assert stub.requests[0]["body"]["stream"] is True
    assert "stream" not in stub.requests[1]["body"]
    assert len(chunks) > 1 and "".join(chunks) == whole


async def test_openai_a_broken_stream_is_a_backend_error(stub: StubServer) -> None:
    stub.mode = "bad_stream"
    backend = OpenAIBackend(stub.url)
    try:
        with pytest.raises(BackendError, match="stream event without its text"):
            _ = [chunk async for chunk in backend.stream(REQUEST)]
        stub.mode = "refuse"
        with pytest.raises(TaskError, match="refused"):
            _ = [chunk async for chunk in backend.stream(REQUEST)]
    finally:
        await backend.aclose()


async def test_openai_complete_reads_the_servers_usage(stub: StubServer) -> None:
    backend = OpenAIBackend(stub.url)
    try:
        done = await backend.complete(REQUEST)
    finally:
        await backend.aclose()
    assert done.usage() == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    assert done.text.startswith("echo: ")


async def test_openai_completions_request_shape_and_answer(stub: StubServer) -> None:
    backend = make_backend("openai", {"base_url": stub.url, "api_key": "sk-test"})
    assert isinstance(backend, OpenAIBackend)
    request = replace(REQUEST, model_options={"temperature": 0.3, "top_p": 0.8}, seed=77)
    assert await infer(backend, request) == f"echo: {CHATML}"
    [seen] = stub.requests
    assert seen["path"] == "/v1/completions"
    assert seen["headers"]["Authorization"] == "Bearer sk-test"
    assert seen["body"] == {
        "prompt": CHATML,
        "temperature": 0.3,
        "top_p": 0.8,
        "repeat_penalty": 1.0,  # scored judges by the model's own distribution: no penalty
        "top_k": 40,  # and by its support, bounded alike by every node
        "min_p": 0.05,
        "max_tokens": 8,
        "seed": 77,
    }


async def test_openai_sampling_defaults_and_every_option_passed(stub: StubServer) -> None:
    backend = OpenAIBackend(stub.url, template="raw", model="demo")
    request = InferenceRequest(model=None, prompts="plain prompt", model_options={}, seed=5)
    assert await infer(backend, request) == "echo: plain prompt"
    assert stub.requests[-1]["body"] == {
        "model": "demo",
        "prompt": "plain prompt",
        "temperature": 0.7,
        "top_p": 0.9,
        "repeat_penalty": 1.0,
        "top_k": 40,
        "min_p": 0.05,
        "max_tokens": 256,  # the default when the task sets none
        "seed": 5,
    }
    options = {
        "temperature": 1.2, "top_p": 0.5, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1,
        "presence_penalty": -0.5, "frequency_penalty": 0.25, "stop": ["\n\n", "END"],
    }  # fmt: skip
    backend = OpenAIBackend(stub.url, template="Q: {prompt}\nA:")
    await infer(backend, replace(request, model_options=options, max_tokens=64))
    body = stub.requests[-1]["body"]
    assert body["prompt"] == "Q: plain prompt\nA:"
    assert {k: body[k] for k in options} == options
    assert body["max_tokens"] == 64


@pytest.mark.parametrize(
    ("options", "max_tokens", "match"),
    [
        ({"temperature": 2.5}, None, r"modelOptions\.temperature: must be from 0 to 2"),
        ({"top_p": -0.1}, None, r"modelOptions\.top_p"),
        ({"top_k": 1.5}, None, r"modelOptions\.top_k: expected an integer"),
        ({"min_p": "0.1"}, None, r"modelOptions\.min_p: expected a number"),
        ({"stop": 7}, None, r"modelOptions\.stop"),
        ({"stop": ["a", "b", "c", "d", "e"]}, None, r"modelOptions\.stop: at most 4"),
        ({"mirostat": 2}, None, r"mirostat not known"),
        ({"verify": "fuzzy"}, None, r"modelOptions\.verify"),
        ({}, 4096, r"modelOptions\.max_tokens: must be from 1 to this node's cap 2048"),
        ({}, 0, r"modelOptions\.max_tokens"),
    ],
)
async def test_openai_an_option_it_cannot_pass_is_an_error_of_the_task(
    stub: StubServer, options: dict[str, Any], max_tokens: int | None, match: str
) -> None:
    request = replace(REQUEST, model_options=options, max_tokens=max_tokens, target_count=2)
    with pytest.raises(TaskError, match=match):
        await infer(OpenAIBackend(stub.url), request)
    assert stub.requests == []  # nothing was sent


async def test_openai_a_request_the_server_refuses_is_an_error_of_the_task(
    stub: StubServer,
) -> None:
    stub.mode = "refuse"
    with pytest.raises(TaskError, match="refused the task's request"):
        await infer(OpenAIBackend(stub.url), REQUEST)


async def test_openai_max_tokens_capped_by_the_node(stub: StubServer) -> None:
    backend = make_backend(
        "openai", {"base_url": stub.url, "max_tokens": "32", "max_tokens_cap": "100"}
    )
    assert isinstance(backend, OpenAIBackend)
    await infer(backend, replace(REQUEST, max_tokens=None))
    assert stub.requests[-1]["body"]["max_tokens"] == 32
    with pytest.raises(TaskError, match="cap 100"):
        await infer(backend, replace(REQUEST, max_tokens=101))


async def test_openai_shared_tasks_are_sampled_warm_enough_to_tell_a_copy(
    stub: StubServer,
) -> None:
    cold = replace(REQUEST, model_options={"temperature": 0.0})
    await infer(OpenAIBackend(stub.url), replace(cold, target_count=3))
    assert stub.requests[-1]["body"]["temperature"] == MIN_SHARED_TEMPERATURE
    await infer(OpenAIBackend(stub.url), cold)  # one slot: as asked
    assert stub.requests[-1]["body"]["temperature"] == 0.0
    await infer(OpenAIBackend(stub.url, verify="exact"), replace(cold, target_count=3))
    assert stub.requests[-1]["body"]["temperature"] == 0.0


async def test_openai_setup_checks_the_served_model(stub: StubServer) -> None:
    backend = OpenAIBackend(stub.url, model="demo", verify="exact")
    await backend.setup()
    assert backend.serves("demo") and backend.serves(None) and not backend.serves("other")
    await backend.aclose()
    unknown = OpenAIBackend(stub.url, model="other", verify="exact")
    with pytest.raises(BackendError, match="does not serve model 'other'; it serves 'demo'"):
        await unknown.setup()
    await unknown.aclose()
    adopted = OpenAIBackend(stub.url, verify="exact")  # no model named: the server's only one
    await adopted.setup()
    assert adopted.model == "demo" and not adopted.serves("other")
    await adopted.aclose()
    stub.models = ["a", "b"]
    several = OpenAIBackend(stub.url, verify="exact")
    with pytest.raises(BackendError, match="serves a, b: choose one"):
        await several.setup()
    await several.aclose()


async def test_openai_chat_request_shape(stub: StubServer) -> None:
    backend = OpenAIBackend(stub.url + "/v1/", model="served-model", api="chat")
    assert await infer(backend, REQUEST) == "echo: Hello"
    [seen] = stub.requests
    assert seen["path"] == "/v1/chat/completions"
    assert seen["body"]["model"] == "served-model"
    assert seen["body"]["messages"] == [{"role": "user", "content": "Hello"}]
    assert backend.verify == "exact"  # a chat server cannot score


async def test_openai_seed_fits_a_signed_64_bit_integer(stub: StubServer) -> None:
    await infer(OpenAIBackend(stub.url), replace(REQUEST, seed=2**64 - 1))
    assert stub.requests[0]["body"]["seed"] == 2**63 - 1


@pytest.mark.parametrize("api", ["completions", "chat"])
@pytest.mark.parametrize(
    ("mode", "match"),
    [
        ("error", "HTTP 500"),
        ("not_json", "not JSON"),
        ("no_choices", "choices"),
        ("deep", "not JSON"),  # nested 100,000 deep: refused before any parser sees it
        ("huge", f"over {MAX_ANSWER_BYTES} bytes"),
        ("long_content", f"more than {MAX_FIELD_LENGTH}"),
    ],
)
async def test_openai_bad_answers_raise_backend_error(
    stub: StubServer, mode: str, match: str, api: str
) -> None:
    stub.mode = mode
    with pytest.raises(BackendError, match=match):
        await infer(OpenAIBackend(stub.url, api=api), REQUEST)


async def test_openai_timeout_raises_backend_error(stub: StubServer) -> None:
    stub.mode = "hang"
    with pytest.raises(BackendError, match=r"no answer within 0\.2 s"):
        await infer(OpenAIBackend(stub.url, timeout=0.2), REQUEST)
    assert len(stub.requests) == 1


async def test_openai_connection_refused_raises_backend_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(BackendError, match="failed"):
        await infer(OpenAIBackend(f"http://127.0.0.1:{port}", timeout=5), REQUEST)


def test_openai_options() -> None:
    with pytest.raises(ValueError, match="base_url"):
        make_backend("openai", {})
    with pytest.raises(ValueError, match="base_url"):
        make_backend("openai", {"base_url": "localhost:8000"})
    with pytest.raises(ValueError, match="temperature"):
        make_backend("openai", {"base_url": "http://h", "temperature": "1"})
    with pytest.raises(ValueError, match="timeout"):
        make_backend("openai", {"base_url": "http://h", "timeout": "0"})
    with pytest.raises(ValueError, match="api"):
        make_backend("openai", {"base_url": "http://h", "api": "grpc"})
    with pytest.raises(ValueError, match="template"):
        make_backend("openai", {"base_url": "http://h", "template": "no placeholder"})
    with pytest.raises(ValueError, match="verify=scored needs api=completions"):
        make_backend("openai", {"base_url": "http://h", "api": "chat", "verify": "scored"})
    with pytest.raises(ValueError, match="max_tokens"):
        make_backend(
            "openai", {"base_url": "http://h", "max_tokens": "300", "max_tokens_cap": "200"}
        )
    with pytest.raises(ValueError, match="fast_path"):
        make_backend("openai", {"base_url": "http://h", "fast_path": "maybe"})
    backend = make_backend("openai", {"base_url": "http://h:1", "timeout": "3", "model": "m"})
    assert isinstance(backend, OpenAIBackend)
    assert (backend.url, backend.timeout, backend.model, backend.verify) == (
        "http://h:1/v1/completions",
        3.0,
        "m",
        "scored",
    )


# Faults


@pytest.mark.parametrize(
    ("specs", "faults"),
    [
        ([], Faults()),
        (["wrong:0.5"], Faults(wrong=0.5)),
        (["wrong"], Faults(wrong=1.0)),
        (["lazy", "silent"], Faults(lazy=True, silent=True)),
        (["slow:2.0,crash:5"], Faults(slow=2.0, crash_after=5)),
        (["wrong:0.25, lazy", "slow:0.5"], Faults(wrong=0.25, lazy=True, slow=0.5)),
        (["noreveal", "copy"], Faults(noreveal=True, copy=True)),
        (["copy,wrong:0.5"], Faults(wrong=0.5, copy=True)),
    ],
)
def test_fault_specs(specs: list[str], faults: Faults) -> None:
    parsed = Faults.parse(specs)
    assert parsed == faults
    assert Faults.parse(parsed.describe()) == parsed


@pytest.mark.parametrize(
    "spec",
    [
        "byzantine",
        "wrong:2",
        "wrong:-0.1",
        "wrong:x",
        "wrong:nan",
        "lazy:1",
        "slow",
        "slow:-1",
        "crash",
        "crash:0",
        "crash:1.5",
        "lazy,lazy",
        "noreveal:1",
        "copy:x",
        "copy,copy",
    ],
)
def test_bad_fault_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        Faults.parse([spec])


async def test_wrong_with_probability_one_always_differs() -> None:
    honest = DeterministicBackend()
    wrong = WrongBackend(honest, 1.0)
    for seed in range(50):
        request = replace(REQUEST, seed=seed)
        expected = await honest.infer(request)
        got = await wrong.infer(request)
        assert got != expected
        assert got == expected + WRONG_MARKER


async def test_wrong_with_probability_zero_never_differs() -> None:
    honest = DeterministicBackend()
    wrong = WrongBackend(honest, 0.0)
    for seed in range(50):
        request = replace(REQUEST, seed=seed)
        assert await wrong.infer(request) == await honest.infer(request)


async def test_wrong_is_reproducible_per_seed() -> None:
    honest = DeterministicBackend()
    first, second = WrongBackend(honest, 0.5), WrongBackend(DeterministicBackend(), 0.5)
    wrong_seeds = set()
    for seed in range(200):
        request = replace(REQUEST, seed=seed)
        out = await first.infer(request)
        assert out == await second.infer(request)
        if out != await honest.infer(request):
            wrong_seeds.add(seed)
    assert 0 < len(wrong_seeds) < 200


async def test_wrong_applies_to_results_not_to_verification() -> None:
    faults = Faults.parse(["wrong:1"])
    honest = DeterministicBackend()
    assert await faults.compute_backend(honest).infer(REQUEST) != await honest.infer(REQUEST)
    assert await faults.verify_backend(honest).infer(REQUEST) == await honest.infer(REQUEST)


async def test_otherprompt_answers_another_prompt_and_truncate_half_of_the_output() -> None:
    honest = DeterministicBackend()
    own = await honest.infer(REQUEST)
    other = await Faults.parse(["otherprompt"]).compute_backend(honest).infer(REQUEST)
    assert other != own
    moved = replace(REQUEST, seed=REQUEST.seed + 1)  # another seed asks another prompt
    assert await Faults.parse(["otherprompt"]).compute_backend(honest).infer(moved) != other
    cut = await Faults.parse(["truncate"]).compute_backend(honest).infer(REQUEST)
    assert own.startswith(cut) and len(cut) == len(own) // 2
    both = Faults.parse(["otherprompt,truncate"])
    assert both.describe() == ["otherprompt", "truncate"]
    assert await both.verify_backend(honest).infer(REQUEST) == own  # verdicts stay honest


async def test_slow_adds_latency_on_the_injected_clock() -> None:
    sleep = RecordingSleep()
    honest = DeterministicBackend()
    slowed = Faults.parse(["slow:2.0"]).compute_backend(honest, sleep)
    assert isinstance(slowed, SlowBackend)
    assert await slowed.infer(REQUEST) == await honest.infer(REQUEST)
    assert sleep.calls == [2.0]
    verify_sleep = RecordingSleep()
    await Faults.parse(["slow:2.0"]).verify_backend(honest, verify_sleep).infer(REQUEST)
    assert verify_sleep.calls == [2.0]


def test_no_faults_leave_the_backend_alone() -> None:
    honest = DeterministicBackend()
    assert Faults().compute_backend(honest) is honest
    assert Faults().verify_backend(honest) is honest
    assert Faults().describe() == []


async def test_a_kept_alive_connection_the_server_closed_is_replaced_once() -> None:
    # A raw HTTP/1.1 server: the first connection answers one request and keeps the
    # connection open, then closes it unanswered when the next request comes on it (a
    # server's keep-alive ending just as the client reuses the connection); later
    # connections answer every request.
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(0)
        first = len(connections) == 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                connections[-1] += 1
                if first and connections[-1] == 2:
                    return  # closed, unanswered
                body = json.dumps({"choices": [{"text": f"answer {len(connections)}"}]}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backend = OpenAIBackend(f"http://127.0.0.1:{port}", template="raw")
    try:
        first = await asyncio.wait_for(backend.infer(REQUEST), TEST_TIMEOUT)
        second = await asyncio.wait_for(backend.infer(REQUEST), TEST_TIMEOUT)
    finally:
        await backend.aclose()
        server.close()
        await server.wait_closed()
    assert first == "answer 1"
    assert second == "answer 2"  # sent again on a second connection
    assert connections == [2, 1]
