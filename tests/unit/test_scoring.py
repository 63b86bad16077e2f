"""The `scored` verification method: `judge` on synthetic distributions, and `score` /
`detect_method` against a small stub of an OpenAI-compatible /v1/completions server."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resource_node.backends import BackendError
from resource_node.scoring import (
    Position,
    Post,
    Sampling,
    Scored,
    Thresholds,
    detect_method,
    judge,
    score,
)

# --- judge on synthetic distributions ---------------------------------------------------------


def _top(rng: random.Random, size: int, listed_mass: float) -> tuple[tuple[str, float], ...]:
    logits = sorted((rng.gauss(0.0, 2.0) for _ in range(size)), reverse=True)
    z = math.log(sum(math.exp(v) for v in logits))
    shift = math.log(listed_mass)
    return tuple((f"t{i}", v - z + shift) for i, v in enumerate(logits))


def _support(top: tuple[tuple[str, float], ...], s: Sampling) -> list[int]:
    """The indices llama.cpp's order keeps (top_k, top_p, min_p on the raw distribution)."""
    if s.temperature <= 0:
        return [0]
    kept = list(range(len(top) if s.top_k == 0 else min(s.top_k, len(top))))
    cum = 0.0
    nucleus = []
    for i in kept:
        nucleus.append(i)
        cum += math.exp(top[i][1])
        if cum >= s.top_p:
            break
    best = math.exp(top[0][1])
    return [i for i in nucleus if math.exp(top[i][1]) >= s.min_p * best] or [0]


def _sample(rng: random.Random, top: tuple[tuple[str, float], ...], s: Sampling) -> int:
    keep = _support(top, s)
    if s.temperature <= 0:
        return 0
    weights = [math.exp(top[i][1] / s.temperature) for i in keep]
    return rng.choices(keep, weights)[0]


samplings = st.builds(
    Sampling,
    temperature=st.sampled_from([0.0, 0.3, 0.7, 1.0, 1.3]),
    top_p=st.sampled_from([0.5, 0.8, 0.9, 0.95, 1.0]),
    top_k=st.sampled_from([0, 3, 10, 40]),
    min_p=st.sampled_from([0.0, 0.02, 0.05, 0.1]),
    max_tokens=st.integers(16, 96),
)

EOS_END = (("", -0.05), ("t0", -3.5))


def _honest(seed: int, s: Sampling, n: int) -> Scored:
    rng = random.Random(seed)
    positions = []
    for _ in range(n):
        top = _top(rng, rng.randint(5, 20), rng.uniform(0.7, 1.0))
        text, value = top[_sample(rng, top, s)]
        positions.append(Position(text, value, top))
    return Scored(tuple(positions), EOS_END, "echo")


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), s=samplings, n=st.integers(16, 80))
def test_honest_samples_are_valid(seed: int, s: Sampling, n: int) -> None:
    n = min(n, s.max_tokens)
    j = judge(_honest(seed, s, n), s)
    assert j.valid, j.reason
    assert j.reason == "ok" and j.ending == "stop" and j.tokens == n
    assert j.log_chance <= 1e-9


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), s=samplings, n=st.integers(16, 80))
def test_an_honest_sample_cut_at_max_tokens_ends_by_length(seed: int, s: Sampling, n: int) -> None:
    s = Sampling(s.temperature, s.top_p, s.top_k, s.min_p, max_tokens=n)
    scored = _honest(seed, s, n)
    no_eos = (("t0", -0.0001), ("t1", -9.5))
    j = judge(Scored(scored.positions, no_eos, "echo"), s)
    assert j.valid and j.ending == "length", j.reason


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), s=samplings, n=st.integers(16, 80), count=st.integers(1, 5))
def test_a_token_far_outside_the_support_is_invalid(
    seed: int, s: Sampling, n: int, count: int
) -> None:
    # a min_p bounds the support of any token by its own log-prob, listed or not
    s = replace(s, min_p=max(s.min_p, 0.02), temperature=max(s.temperature, 0.3))
    n = min(n, s.max_tokens)
    scored = _honest(seed, s, n)
    positions = list(scored.positions)
    for i in random.Random(seed).sample(range(n), min(n, count)):
        top = positions[i].top
        positions[i] = Position(" far", top[0][1] - 12.0, top)
    j = judge(Scored(tuple(positions), scored.end, "echo"), s)
    assert not j.valid
    assert j.outside >= min(n, count)
    assert "far outside" in j.reason and "' far'" in j.reason


def test_tokens_just_outside_are_counted_against_the_slack() -> None:
    top = (("a", math.log(0.6)), ("b", math.log(0.3)), ("c", math.log(0.09)), ("d", -6.0))
    s = Sampling(temperature=1.0, top_p=0.75, max_tokens=64)
    good = Position("a", top[0][1], top)
    just = Position("c", top[2][1], top)  # the nucleus ends at b: c is just past it
    assert not judge(
        Scored((good, just, good), EOS_END, "echo"), s, Thresholds(support_slack=0)
    ).valid
    j = judge(Scored((good, just, good), EOS_END, "echo"), s, Thresholds(support_slack=1))
    assert j.valid and j.outside == 1, j.reason
    j = judge(Scored((good, just, good, just), EOS_END, "echo"), s, Thresholds(support_slack=1))
    assert not j.valid and "2 tokens outside" in j.reason


def test_the_same_text_in_other_tokens_is_inside() -> None:
    # " chessm" read back as " c" + "hessm": " chess", a prefix of the rest, is inside
    top = ((" chess", -0.3), (" and", -1.6), (" c", -9.0))
    after = (("hessm", -0.2), ("x", -2.0))
    s = Sampling(temperature=0.7, top_p=0.9, min_p=0.05, max_tokens=64)
    positions = (Position(" c", -9.0, top), Position("hessm", -0.2, after))
    j = judge(Scored(positions, EOS_END, "echo"), s, Thresholds(support_slack=0))
    assert j.valid and j.outside == 0, j.reason
    # a word no listed token begins is far outside
    other = (Position(" moon", -9.0, top), Position("hessm", -0.2, after))
    j = judge(Scored(other, EOS_END, "echo"), s)
    assert not j.valid and "far outside" in j.reason


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), s=samplings, n=st.integers(16, 80))
def test_a_truncated_end_is_invalid(seed: int, s: Sampling, n: int) -> None:
    # with top_p 1 and no top_k the support is every token: only a truncation bounds it; above
    # temperature 1 a server that tempers first may spread the unlisted tail over the whole
    # vocabulary, which the top-k cannot bound
    s = Sampling(
        min(s.temperature, 1.0), min(s.top_p, 0.95), s.top_k, s.min_p, max_tokens=n * 2 + 10
    )
    scored = _honest(seed, s, n)
    mid_word = (("t0", -0.01), ("t1", -5.0))
    j = judge(Scored(scored.positions, mid_word, "echo"), s)
    assert not j.valid and j.ending == "none"
    assert f"after token {n - 1}" in j.reason


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), s=samplings, n=st.integers(8, 80))
def test_a_junk_sequence_is_invalid(seed: int, s: Sampling, n: int) -> None:
    rng = random.Random(seed)
    positions = []
    for _ in range(n):
        top = _top(rng, rng.randint(5, 20), rng.uniform(0.7, 1.0))
        positions.append(Position(f"junk{rng.randint(0, 9)}", top[-1][1] - rng.uniform(1, 9), top))
    j = judge(Scored(tuple(positions), EOS_END, "echo"), s)
    assert not j.valid
    assert j.mean_logprob < j.expected_logprob


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    s=samplings,
    n=st.integers(16, 80),
    rest=st.text(min_size=0, max_size=12),
)
def test_a_completion_that_stops_where_the_same_seed_goes_on_is_cut_short(
    seed: int, s: Sampling, n: int, rest: str
) -> None:
    n = min(n, s.max_tokens)
    scored = _honest(seed, s, n)
    completion = "".join(p.token for p in scored.positions)
    # without its own output, or when its own is the same, or differs earlier, it is valid
    assert judge(scored, s, completion=completion).valid
    assert judge(scored, s, completion=completion, own=completion).valid
    assert judge(scored, s, completion=completion, own="x" + completion + "more").valid
    own = completion + rest
    j = judge(scored, s, completion=completion, own=own)
    if rest.strip():
        assert not j.valid and "goes on" in j.reason, j.reason
    else:  # only space after it: the same ending, as a server may strip or keep it
        assert j.valid, j.reason
    # a completion that ends by length is never cut short: max_tokens ended it
    s_len = Sampling(s.temperature, s.top_p, s.top_k, s.min_p, max_tokens=n)
    by_length = Scored(scored.positions, (("t0", -0.0001), ("t1", -9.5)), "echo")
    j = judge(by_length, s_len, completion=completion, own=completion + " and more")
    assert j.valid and j.ending == "length", j.reason


def test_an_empty_completion_needs_the_end_of_sequence_in_support() -> None:
    greedy = Sampling(temperature=0.0)
    assert judge(Scored((), None, "echo"), greedy).valid
    assert judge(Scored((), (("", -0.1), ("a", -2.5)), "echo"), greedy).valid
    j = judge(Scored((), (("a", -0.1), ("", -2.5)), "echo"), greedy)
    assert not j.valid and "empty" in j.reason


def test_a_stop_string_in_support_ends_the_completion() -> None:
    top = (("a", -0.1), ("b", -2.5))
    positions = (Position("a", -0.1, top),) * 3
    end = (("\n\n", -0.2), ("x", -1.9))
    s = Sampling(temperature=0.7, max_tokens=64)
    assert not judge(Scored(positions, end, "echo"), s).valid
    stopped = Sampling(temperature=0.7, max_tokens=64, stop=("\n\nQ:",))
    j = judge(Scored(positions, end, "echo"), stopped)
    assert j.valid and j.ending == "stop"


def test_greedy_is_the_argmax_with_near_ties() -> None:
    top = (("a", -0.5), ("b", -0.6), ("c", -4.0))
    s = Sampling(temperature=0.0, max_tokens=3)
    tie = judge(Scored((Position("b", -0.6, top),) * 3, None, "echo"), s)
    assert tie.valid and tie.outside == 0 and tie.log_chance == 0.0
    far = judge(Scored((Position("c", -4.0, top),) * 3, None, "echo"), s)
    assert not far.valid and far.outside == 3 and "token 0 'c'" in far.reason


def test_a_temperature_first_server_keeps_more_at_high_temperature() -> None:
    # raw nucleus at top_p 0.5 is {a}; at T = 2 tempered first, b is inside the nucleus too
    top = (("a", math.log(0.6)), ("b", math.log(0.2)), ("c", math.log(0.2)))
    s = Sampling(temperature=2.0, top_p=0.5, max_tokens=2)
    j = judge(Scored((Position("b", math.log(0.2), top),) * 2, None, "echo"), s)
    assert j.outside == 0
    cold = Sampling(temperature=0.5, top_p=0.5, max_tokens=2)
    assert judge(Scored((Position("b", math.log(0.2), top),) * 2, None, "echo"), cold).outside == 2


floats = st.floats(min_value=-1e6, max_value=0.0, allow_nan=False)
tops = st.lists(st.tuples(st.text(max_size=4), floats), max_size=6).map(
    lambda entries: tuple(sorted(entries, key=lambda e: -e[1]))
)
any_sampling = st.builds(
    Sampling,
    temperature=st.floats(0.0, 5.0),
    top_p=st.floats(0.0, 1.0),
    top_k=st.integers(0, 50),
    min_p=st.floats(0.0, 1.0),
    max_tokens=st.integers(0, 300),
    stop=st.lists(st.text(max_size=3), max_size=2).map(tuple),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    positions=st.lists(st.builds(Position, st.text(max_size=4), floats, tops), max_size=20),
    end=st.none() | tops,
    s=any_sampling,
)
def test_judge_never_raises(positions: list[Position], end: Any, s: Sampling) -> None:
    j = judge(Scored(tuple(positions), end, "echo"), s)
    assert j.tokens == len(positions)
    assert j.ending in ("stop", "length", "none")
    assert (j.reason == "ok") == j.valid
    assert 0 <= j.outside <= len(positions)


# --- score and detect_method against a stub server --------------------------------------------

VOCAB = ("", "\n", "Hi", " there", " you", "!", "?", " ok")
ANSWER = "Hi there! you ok?"
PROMPT = "Q? ok\n"


def _tokenize(text: str) -> list[str]:
    out = []
    i = 0
    while i < len(text):
        match = max((t for t in VOCAB if t and text.startswith(t, i)), key=len, default=None)
        token = match if match is not None else text[i]
        out.append(token)
        i += len(token)
    return out


def _dist(context: str) -> dict[str, float]:
    """The stub model: log-softmax of logits drawn from a hash of the preceding text."""
    digest = hashlib.sha256(context.encode()).digest()
    logits = {t: digest[i] / 40.0 for i, t in enumerate(VOCAB)}
    logits[""] -= 3.0  # the end of sequence is rarely the greedy next token
    z = math.log(sum(math.exp(v) for v in logits.values()))
    return {t: v - z for t, v in logits.items()}


def _top_of(dist: dict[str, float], k: int, token: str) -> dict[str, float]:
    best = sorted(dist.items(), key=lambda e: -e[1])[:k]
    entries = dict(best)
    entries[token] = dist[token]  # like llama.cpp, the chosen token is listed too
    return entries


def _greedy(dist: dict[str, float]) -> str:
    return max(dist.items(), key=lambda e: e[1])[0]


def _answer(body: dict[str, Any], mode: str) -> dict[str, Any]:
    prompt = body["prompt"]
    k = int(body.get("logprobs") or 0)
    tokens: list[str] = []
    values: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    if body.get("echo") and mode != "noecho":
        listed = _tokenize(prompt)[1:]  # the first prompt token is left out
        context = prompt[: len(prompt) - len("".join(listed))]
        for token in listed:
            dist = _dist(context)
            tokens.append(token)
            values.append(dist[token])
            tops.append(_top_of(dist, k, token))
            context += token
    text = prompt
    finish = "length"
    for _ in range(int(body["max_tokens"])):
        dist = _dist(text)
        token = _greedy(dist)
        if token == "":
            finish = "stop"
            break
        tokens.append(token)
        values.append(dist[token])
        tops.append(_top_of(dist, k, token))
        text += token
    if mode == "shifted" and body.get("echo"):
        values = [*values[1:], values[-1]]
        tops = [*tops[1:], tops[-1]]
        if finish == "stop":  # the last entry then holds the distribution after the text
            dist = _dist(text)
            values[-1], tops[-1] = dist[""], _top_of(dist, k, "")
    offsets = []
    at = 0
    for token in tokens:
        offsets.append(at)
        at += len(token)
    logprobs = {
        "tokens": tokens,
        "token_logprobs": values,
        "top_logprobs": tops,
        "text_offset": offsets,
    }
    return {"choices": [{"text": "".join(tokens), "finish_reason": finish, "logprobs": logprobs}]}


class Stub:
    def __init__(self) -> None:
        self.mode = "echo"
        self.calls = 0

    async def completions(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        body = await request.json()
        if self.mode == "http500":
            return web.Response(status=500, text="boom")
        answer = _answer(body, "echo" if self.mode.startswith("bad") else self.mode)
        if self.mode == "bad-json":
            return web.Response(text="not json {")
        if self.mode == "bad-lengths":
            answer["choices"][0]["logprobs"]["tokens"].append("x")
        if self.mode == "bad-number":
            answer["choices"][0]["logprobs"]["token_logprobs"][-1] = "high"
        if self.mode == "bad-long":
            answer["choices"][0]["logprobs"]["tokens"][-1] = "y" * 10_000
        if self.mode == "bad-shape":
            answer = {"choices": []}
        return web.json_response(answer)


@pytest.fixture
async def stub() -> AsyncIterator[tuple[Stub, Post]]:
    state = Stub()
    app = web.Application()
    app.router.add_post("/v1/completions", state.completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as session:

        async def post(path: str, body: dict[str, Any]) -> Any:
            async with session.post(f"http://127.0.0.1:{port}{path}", json=body) as resp:
                if resp.status != 200:
                    raise BackendError(f"HTTP {resp.status}")
                try:
                    return await resp.json(content_type=None)
                except ValueError as exc:
                    raise BackendError("not JSON") from exc

        yield state, post
    await runner.cleanup()


def _expected(
    completion: str, k: int
) -> tuple[tuple[Position, ...], tuple[tuple[str, float], ...]]:
    positions = []
    context = PROMPT
    for token in _tokenize(completion):
        dist = _dist(context)
        top = sorted(dist.items(), key=lambda e: -e[1])[:k]
        positions.append(Position(token, dist[token], tuple(top)))
        context += token
    end = tuple(sorted(_dist(context).items(), key=lambda e: -e[1])[:k])
    return tuple(positions), end


async def test_the_three_methods_read_the_same_positions(stub: tuple[Stub, Post]) -> None:
    state, post = stub
    k = len(VOCAB)
    want, want_end = _expected(ANSWER, k)
    results = {}
    for mode, method in (("echo", "echo"), ("shifted", "echo-shifted"), ("noecho", "stepwise")):
        state.mode = mode
        results[method] = await score(
            post, model=None, prompt=PROMPT, completion=ANSWER, method=method, logprobs=k
        )
    for method, scored in results.items():
        assert scored.method == method
        assert len(scored.positions) == len(want)
        for got, expected in zip(scored.positions, want, strict=True):
            assert got.token == expected.token
            assert got.logprob == pytest.approx(expected.logprob)
            assert [t for t, _ in got.top] == [t for t, _ in expected.top]
        greedy_eos = _greedy(_dist(PROMPT + ANSWER)) == ""
        if greedy_eos:
            assert scored.end is None
        else:
            assert scored.end is not None and [t for t, _ in scored.end] == [t for t, _ in want_end]


async def test_stepwise_walks_past_a_token_outside_the_top_k(stub: tuple[Stub, Post]) -> None:
    state, post = stub
    state.mode = "noecho"
    scored = await score(
        post, model=None, prompt=PROMPT, completion="Hi zzz!", method="stepwise", logprobs=3
    )
    tokens = [p.token for p in scored.positions]
    assert "".join(tokens) == "Hi zzz!"
    assert " zzz" in tokens  # one pre-token chunk for the unknown text
    far = scored.positions[tokens.index(" zzz")]
    assert far.logprob == far.top[-1][1]
    assert judge(scored, Sampling(temperature=0.0, max_tokens=8)).outside >= 1


async def test_detect_method_tells_the_servers_apart(stub: tuple[Stub, Post]) -> None:
    state, post = stub
    for mode, method in (("echo", "echo"), ("shifted", "echo-shifted"), ("noecho", "stepwise")):
        state.mode = mode
        assert await detect_method(post, model=None, prompt=PROMPT, logprobs=5) == method


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("bad-lengths", "different lengths"),
        ("bad-number", "not a finite number"),
        ("bad-long", "more than"),
        ("bad-shape", r"no choices\[0\]\.logprobs"),
    ],
)
async def test_malformed_answers_are_backend_errors(
    stub: tuple[Stub, Post], mode: str, message: str
) -> None:
    state, post = stub
    state.mode = mode
    for method in ("echo", "stepwise"):
        with pytest.raises(BackendError, match=message):
            await score(post, model=None, prompt=PROMPT, completion=ANSWER, method=method)


async def test_http_failures_and_non_json_are_backend_errors(stub: tuple[Stub, Post]) -> None:
    state, post = stub
    for mode in ("http500", "bad-json"):
        state.mode = mode
        with pytest.raises(BackendError):
            await score(post, model=None, prompt=PROMPT, completion=ANSWER, method="echo")
        with pytest.raises(BackendError):
            await detect_method(post, model=None, prompt=PROMPT)


async def test_echo_refuses_an_answer_that_does_not_hold_the_completion(
    stub: tuple[Stub, Post],
) -> None:
    state, post = stub
    state.mode = "noecho"  # a server that ignores echo
    with pytest.raises(BackendError, match="do not end with the completion"):
        await score(post, model=None, prompt=PROMPT, completion=ANSWER, method="echo")
