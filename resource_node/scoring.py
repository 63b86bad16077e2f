"""The `scored` verification method: a submitted completion judged by the model's own
distribution, without regenerating it.

The verifier teacher-forces the submitted completion through its own OpenAI-compatible server
(`score`) and reads, at every position, the submitted token's raw log-probability (log-softmax
at temperature 1) and the server's top-k. `judge` then applies the rules below, which hold for
outputs that are not bit-exact across servers, builds, thread counts and batch sizes.

Reading the distribution (`score`):

- "echo": one POST /v1/completions `{prompt: prompt + completion, echo: true, max_tokens: 1,
  temperature: 0, logprobs: k}`. The completion's tokens are the last echoed tokens whose
  texts make up the completion: the concatenated token texts must end with the completion
  text (special tokens count as ""), and a token straddling the boundary counts as the
  completion's. The appended generated token, when finish_reason is "length", gives `end`
  (the top-k after the completion); when it is "stop" nothing was appended (the greedy next
  token was the end of sequence) and `end` is None.
- "echo-shifted": the same, for servers whose echoed log-probs each belong to the next token:
  the distribution of token i is read at index i - 1.
- "stepwise": one call per position over prompt + prefix with max_tokens 1 and logprobs k. The
  next token is the longest top-k text that is a prefix of the rest of the completion. When
  none is, the position is outside the top-k: its token is the rest's next pre-token chunk
  (an optional space and a run of letters, of digits, or of other non-space characters, or a
  run of spaces: a byte-pair token never crosses one), its log-prob the lowest top-k log-prob
  (an upper bound of the true one), and the walk goes on after it.

Every answer is untrusted: at most MAX_TOKENS tokens, MAX_TOP entries per position and
MAX_TEXT characters per token text are read, and a malformed answer is BackendError naming
what was wrong.

The rules (`judge`), with p the raw probability of a token and T the temperature:

1. Support. A token is inside the sampling support when it is inside top_k (if set), inside
   the top_p nucleus and at least min_p times the top probability, under either order of the
   servers (truncation on the raw distribution then temperature, as llama.cpp; or temperature
   first, as vLLM): inside under either is inside. Probabilities are only known for the
   top-k, so the rest is bounded conservatively (an honest token is never rejected because the
   tail is unknown): the tokens better than a listed token are all listed, so its cumulative
   mass before it is known; the tail's tempered mass is bounded above. Every comparison has a
   margin of `logprob_margin` nats, the difference measured between two servers. At
   temperature 0 the support is the argmax, and a token within `greedy_margin` nats of it
   counts as inside (near-ties, and llama.cpp's default repeat penalty). A token not in the
   top-k list is judged by its own log-prob against the same bounds (every listed token
   better than it is before it; in a flat distribution an honest token is often unlisted).
   A token outside the support is inside after all when a token inside the support at its
   position is a prefix of the rest of the completion from there: the same text cut into
   other tokens (re-tokenizing a generated text does not always give the tokens generated).
2. Outside tokens. At most `support_slack` tokens may be just outside the support: inside
   it with a margin of `slack_margin` nats instead of `logprob_margin` (noise between
   builds). A token further out, "far outside", is invalid at once.
3. Mean log-prob. The expected log-prob of an honest sample at the same positions is computed
   from the sampling distribution over the listed top-k (the unlisted tail put at the lowest
   listed log-prob minus one); with n tokens, the mean submitted log-prob may be below the
   mean expected one by at most `mean_tolerance + z * sqrt(sum of the per-position
   variances) / n`.
4. Ending. "stop": `end` is None (the greedy next token is the end of sequence), or the
   end-of-sequence token ("") is inside the support right after the completion, or the start
   of a stop string is (a listed token that is a prefix of a stop string, or starts with
   one). "length": the token count is within `length_slack` of max_tokens (re-tokenizing a
   generated text can merge or split tokens). Otherwise "none", which is invalid; so is a
   count over max_tokens + `length_slack`. An empty completion is valid only with a "stop"
   ending.
5. Cut short. When the verifier has its own output for the same seed (the fast path computed
   it) and that output goes on, past a non-space text, from where the submitted completion
   ends by "stop", the completion stopped where the same model and seed did not: invalid. Two
   honest servers sample the same token from the same seed unless their probabilities differ
   across the seed's draw, so this rule only errs where they diverge at exactly the end.

`log_chance` is the natural log of the probability that an independent honest sample is this
exact completion (each token's probability under the tempered, truncated distribution over
the listed top-k, and the end of sequence's when it ends so); a greedy completion has 0, so a
copy of it is expected, and a sampled one has a very negative value, so a copy is evidence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from resource_node.backends import BackendError

Post = Callable[[str, dict[str, Any]], Awaitable[Any]]

METHODS = ("echo", "echo-shifted", "stepwise")
MAX_TOKENS = 8192  # tokens read from one answer
MAX_TOP = 64  # top-k entries read per position
MAX_TEXT = 256  # characters of one token text
MAX_COMPLETION = 65536  # characters of a completion to score
DETECT_TOKENS = 16
DETECT_TOLERANCE = 0.05  # nats between a generation's log-probs and the echo's
VOCABULARY_BOUND = 1 << 18  # an upper bound of any vocabulary, for the tail at T > 1
EOS = ""

PRETOKEN = re.compile(r" ?[^\W\d_]+| ?\d+| ?[^\s\w]+|_+|\s+", re.UNICODE)

Top = tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class Sampling:
    """The task's sampling options, as the server applied them."""

    temperature: float  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    min_p: float = 0.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Position:
    token: str  # the submitted token's text
    logprob: float  # its raw log-probability (log-softmax, T = 1)
    top: Top  # the server's top-k (text, logprob), best first


@dataclass(frozen=True, slots=True)
class Scored:
    positions: tuple[Position, ...]
    end: Top | None  # the top-k after the completion; None: the greedy next token was EOS
    method: str


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The limits of `judge`; the defaults are the measured values (bench.llm_rates)."""

    support_slack: int = 1
    logprob_margin: float = 0.1
    slack_margin: float = 1.0
    greedy_margin: float = 1.0
    mean_tolerance: float = 0.5
    z: float = 4.0
    length_slack: int = 4


@dataclass(frozen=True, slots=True)
class Judgement:
    valid: bool
    reason: str
    tokens: int
    outside: int
    mean_logprob: float
    expected_logprob: float
    ending: str
    log_chance: float
    allowed_deficit: float  # how far the mean log-prob may be below the expected (rule 3)


# --- the support ------------------------------------------------------------------------------


def _listed(top: Top, token: str, logprob: float, margin: float) -> int | None:
    """The rank of (token, logprob) in `top`, or None when it is not listed."""
    for rank, (text, value) in enumerate(top):
        if text == token and abs(value - logprob) <= max(margin, 1e-6):
            return rank
    return None


def _tail_tempered(top: Top, temperature: float) -> float:
    """An upper bound of the tempered mass (sum of p ** (1 / T)) of the unlisted tokens."""
    mass = sum(math.exp(v) for _, v in top)
    rest = max(0.0, 1.0 - mass)
    if not top or rest <= 0.0:
        return 0.0
    p_min = math.exp(top[-1][1])
    inv = 1.0 / temperature
    if inv >= 1.0:  # convex: largest when concentrated in tokens as probable as the last listed
        return float(rest * p_min ** (inv - 1.0))
    return float(VOCABULARY_BOUND ** (1.0 - inv) * rest**inv)  # concave: largest spread out


def inside(top: Top, logprob: float, rank: int | None, sampling: Sampling, th: Thresholds) -> bool:
    """Whether a token of raw `logprob` (rank in `top`, None if not listed) is inside the
    support (rule 1)."""
    if not top:
        return True  # nothing known: never reject on it
    best = top[0][1]
    if sampling.temperature <= 0.0:
        return logprob >= best - th.greedy_margin
    eps = th.logprob_margin
    # ties with better tokens (within the margin) may be ordered either way
    better = [v for _, v in top[:rank] if v > logprob + eps]
    if sampling.top_k > 0 and len(better) >= sampling.top_k:
        return False
    if sampling.min_p > 0.0:
        ratio = logprob - best + eps
        # log(min(min_p, min_p ** T)), without the power's underflow
        bound = math.log(sampling.min_p) * max(1.0, sampling.temperature)
        if ratio < bound:
            return False
    if sampling.top_p < 1.0:
        shrink = math.exp(-eps)
        raw_before = sum(math.exp(v) for v in better) * shrink
        if raw_before >= sampling.top_p:
            inv = 1.0 / sampling.temperature
            before = sum(math.exp(v * inv) for v in better) * shrink**inv
            after = sum(math.exp(v * inv) for v in [x for _, x in top] if v not in better)
            after += _tail_tempered(top, sampling.temperature)
            total = before + after
            # a tempered mass that underflows tells nothing: never reject on it
            if math.isfinite(total) and total > 0.0 and before / total >= sampling.top_p:
                return False
    return True


def _distribution(top: Top, sampling: Sampling, th: Thresholds) -> list[tuple[float, float]]:
    """(raw logprob, sampling probability) over the listed tokens inside the support, and the
    unlisted tail (at the lowest listed logprob minus one) when it may be sampled."""
    if not top:
        return []
    if sampling.temperature <= 0.0:
        return [(top[0][1], 1.0)]
    kept = [v for rank, (_, v) in enumerate(top) if inside(top, v, rank, sampling, th)]
    kept = kept or [top[0][1]]
    inv = 1.0 / sampling.temperature
    weights = [math.exp((v - kept[0]) * inv) for v in kept]
    pairs = list(zip(kept, weights, strict=True))
    tail_open = sampling.top_k == 0 or sampling.top_k > len(top)
    rest = max(0.0, 1.0 - sum(math.exp(v) for _, v in top))
    if tail_open and len(kept) == len(top) and rest > 0.0 and sampling.min_p <= 0.0:
        # the tail as tokens as probable as the last listed one, put one nat lower
        p_min = math.exp(top[-1][1])
        try:
            weight = rest * p_min ** (inv - 1.0) / math.exp(kept[0] * inv)
        except (OverflowError, ZeroDivisionError):
            weight = 0.0
        if math.isfinite(weight):
            pairs.append((top[-1][1] - 1.0, weight))
    total = sum(w for _, w in pairs)
    if not (math.isfinite(total) and total > 0.0):
        return [(kept[0], 1.0)]
    return [(v, w / total) for v, w in pairs]


def _chance(
    top: Top,
    logprob: float,
    sampling: Sampling,
    th: Thresholds,
    dist: list[tuple[float, float]] | None = None,
) -> float:
    """The log of the sampling probability of a token of raw `logprob` at this position."""
    if not top:
        return 0.0
    if sampling.temperature <= 0.0:
        return 0.0 if logprob >= top[0][1] - th.greedy_margin else -math.inf
    inv = 1.0 / sampling.temperature
    if dist is None:
        dist = _distribution(top, sampling, th)
    for value, q in dist:
        if value == logprob and q > 0.0:
            return math.log(q)
    # outside the support: its tempered share of the listed tokens
    z = sum(math.exp((v - top[0][1]) * inv) for _, v in top)
    return (logprob - top[0][1]) * inv - math.log(z)


# --- the judge --------------------------------------------------------------------------------


def _ending(scored: Scored, sampling: Sampling, th: Thresholds, tokens: int) -> str:
    end = scored.end
    if end is None:
        return "stop"
    # without the margin: the mass it grants would let a cut text end where the model would
    # not have stopped (the end of sequence of an honest text is inside on any server)
    exact = replace(th, logprob_margin=0.0)
    for rank, (text, value) in enumerate(end):
        if not inside(end, value, rank, sampling, exact):
            continue
        if text == EOS:
            return "stop"
        if any(s and (s.startswith(text) or text.startswith(s)) for s in sampling.stop):
            return "stop"
    if tokens >= sampling.max_tokens - th.length_slack:
        return "length"
    return "none"


def cut_short(completion: str, own: str | None) -> bool:
    """Whether the verifier's own output for the same seed goes on, past a non-space text,
    from where `completion` ends (rule 5)."""
    return own is not None and own.startswith(completion) and bool(own[len(completion) :].strip())


def _rests(positions: tuple[Position, ...]) -> list[str]:
    """The completion's text from each position on."""
    rests = [""] * (len(positions) + 1)
    for index in range(len(positions) - 1, -1, -1):
        rests[index] = positions[index].token + rests[index + 1]
    return rests[: len(positions)]


def _resegmented(top: Top, rest: str, sampling: Sampling, th: Thresholds) -> float | None:
    """The log-prob of the best listed token inside the support that is a non-empty prefix
    of `rest` (the same text in other tokens, rule 1), or None."""
    for rank, (text, value) in enumerate(top):
        if text and rest.startswith(text) and inside(top, value, rank, sampling, th):
            return value
    return None


def judge(
    scored: Scored,
    sampling: Sampling,
    thresholds: Thresholds = Thresholds(),
    *,
    completion: str | None = None,
    own: str | None = None,
) -> Judgement:
    """The verdict of the rules of this module's docstring on a scored completion; rule 5
    applies when both `completion` (the submitted text) and `own` (the verifier's output for
    the same seed) are given."""
    th = thresholds
    n = len(scored.positions)
    outside = 0
    first_out = ""
    total_lp = 0.0
    total_expected = 0.0
    variance = 0.0
    log_chance = 0.0
    slack = replace(th, logprob_margin=max(th.logprob_margin, th.slack_margin))
    rests = _rests(scored.positions)
    far = ""
    for index, pos in enumerate(scored.positions):
        rank = _listed(pos.top, pos.token, pos.logprob, th.logprob_margin)
        if not inside(pos.top, pos.logprob, rank, sampling, th):
            other = _resegmented(pos.top, rests[index], sampling, th)
            if other is not None:
                # the same text in other tokens: read as the token the model would have given
                pos = Position(pos.token, other, pos.top)
            else:
                what = f"token {index} {pos.token!r} ({pos.logprob:.2f}; the best"
                what += f" {pos.top[0][1]:.2f}{'' if rank is not None else ', unlisted'})"
                if not inside(pos.top, pos.logprob, rank, sampling, slack):
                    far = far or f"{what} is far outside the support"
                outside += 1
                first_out = first_out or f"{what} is outside the support"
        total_lp += pos.logprob
        dist = _distribution(pos.top, sampling, th)
        mean = sum(v * q for v, q in dist)
        total_expected += mean
        variance += sum(q * (v - mean) ** 2 for v, q in dist)
        log_chance += _chance(pos.top, pos.logprob, sampling, th, dist)
    ending = _ending(scored, sampling, th, n)
    if ending == "stop" and scored.end is not None:
        eos = [v for t, v in scored.end if t == EOS]
        if eos:
            log_chance += _chance(scored.end, eos[0], sampling, th)
    mean_lp = total_lp / n if n else 0.0
    expected = total_expected / n if n else 0.0
    allowed = th.mean_tolerance + (th.z * math.sqrt(variance) / n if n else 0.0)

    def verdict(valid: bool, reason: str) -> Judgement:
        return Judgement(valid, reason, n, outside, mean_lp, expected, ending, log_chance, allowed)

    if far:
        return verdict(False, far)
    if outside > th.support_slack:
        return verdict(
            False, f"{outside} tokens outside the support (at most {th.support_slack}): {first_out}"
        )
    if n and expected - mean_lp > allowed:
        return verdict(
            False,
            f"mean log-prob {mean_lp:.3f} is {expected - mean_lp:.3f} below the expected "
            f"{expected:.3f} (at most {allowed:.3f})",
        )
    if n > sampling.max_tokens + th.length_slack:
        return verdict(
            False,
            f"{n} tokens, more than max_tokens {sampling.max_tokens} (and {th.length_slack} "
            "more for re-tokenizing)",
        )
    if ending == "none":
        if n == 0:
            return verdict(False, "empty completion where the end of sequence is not in support")
        return verdict(
            False,
            f"ends after token {n - 1} {scored.positions[-1].token!r} with neither the end of "
            f"sequence nor a stop string in the support, {n} of {sampling.max_tokens} tokens",
        )
    if ending == "stop" and completion is not None and cut_short(completion, own):
        return verdict(
            False,
            f"ends after {n} tokens where this node's output for the same seed goes on "
            f"({len(own or '') - len(completion)} more characters)",
        )
    return verdict(True, "ok")


# --- reading the server -----------------------------------------------------------------------


def _fail(what: str) -> BackendError:
    return BackendError(f"POST /v1/completions: {what}")


def _number(value: Any, what: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise _fail(f"{what} is not a finite number: {str(value)[:40]!r}")
    return float(min(0.0, value))


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _fail(f"{what} is not a string")
    if len(value) > MAX_TEXT:
        raise _fail(f"{what} is {len(value)} characters, more than {MAX_TEXT}")
    return value


def _top(value: Any, what: str, k: int) -> Top:
    if not isinstance(value, dict):
        raise _fail(f"{what} is not an object")
    if len(value) > MAX_TOP + 1:
        raise _fail(f"{what} has {len(value)} entries, more than {MAX_TOP + 1}")
    entries = [
        (_text(t, f"{what} key"), _number(v, f"{what}[{t[:20]!r}]")) for t, v in value.items()
    ]
    entries.sort(key=lambda e: -e[1])
    return tuple(entries[:k])


@dataclass(frozen=True, slots=True)
class _Choice:
    text: str
    finish: str
    tokens: tuple[str, ...]
    logprobs: tuple[float | None, ...]
    tops: tuple[Top | None, ...]
    offsets: tuple[int, ...]


def _choice(answer: Any, k: int) -> _Choice:
    try:
        choice = answer["choices"][0]
        logprobs = choice["logprobs"]
        tokens = logprobs["tokens"]
        values = logprobs["token_logprobs"]
        tops = logprobs["top_logprobs"]
        offsets = logprobs["text_offset"]
    except (KeyError, IndexError, TypeError) as exc:
        raise _fail(
            f"no choices[0].logprobs with tokens, logprobs, tops, offsets ({exc!r})"
        ) from exc
    for name, seq in (("tokens", tokens), ("token_logprobs", values), ("top_logprobs", tops)):
        if not isinstance(seq, list):
            raise _fail(f"logprobs.{name} is not a list")
        if len(seq) > MAX_TOKENS:
            raise _fail(f"logprobs.{name} has {len(seq)} entries, more than {MAX_TOKENS}")
    if not isinstance(offsets, list) or not len(tokens) == len(values) == len(tops) == len(offsets):
        raise _fail("logprobs lists of different lengths")
    text = choice.get("text", "")
    if not isinstance(text, str) or len(text) > MAX_COMPLETION * 2 + MAX_TEXT * MAX_TOKENS:
        raise _fail("choices[0].text is not a string of a bounded length")
    finish = choice.get("finish_reason")
    if finish not in ("stop", "length"):
        raise _fail(f"finish_reason {str(finish)[:20]!r} is neither stop nor length")
    out_tokens = tuple(_text(t, f"token {i}") for i, t in enumerate(tokens))
    out_values = tuple(
        None if v is None else _number(v, f"token_logprobs[{i}]") for i, v in enumerate(values)
    )
    out_tops = tuple(
        None if t is None else _top(t, f"top_logprobs[{i}]", k) for i, t in enumerate(tops)
    )
    out_offsets = []
    for i, o in enumerate(offsets):
        if not isinstance(o, int) or isinstance(o, bool) or o < 0:
            raise _fail(f"text_offset[{i}] is not a non-negative integer")
        out_offsets.append(o)
    return _Choice(text, finish, out_tokens, out_values, out_tops, tuple(out_offsets))


def _check(prompt: str, completion: str, method: str, logprobs: int) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown scoring method {method!r}; one of {', '.join(METHODS)}")
    if not 1 <= logprobs <= MAX_TOP:
        raise ValueError(f"logprobs must be between 1 and {MAX_TOP}, got {logprobs}")
    if len(completion) > MAX_COMPLETION or len(prompt) > MAX_COMPLETION:
        raise ValueError(f"prompt or completion longer than {MAX_COMPLETION} characters")


def _body(model: str | None, prompt: str, logprobs: int, *, echo: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt": prompt,
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": logprobs,
    }
    if echo:
        body["echo"] = True
    if model is not None:
        body["model"] = model
    return body


async def _echo(
    post: Post, model: str | None, prompt: str, completion: str, shift: int, k: int
) -> Scored:
    c = _choice(await post("/v1/completions", _body(model, prompt + completion, k, echo=True)), k)
    count = len(c.tokens)
    appended = c.finish == "length"
    echoed = count - 1 if appended else count
    if echoed < 0:
        raise _fail("the echo has no tokens")
    texts = c.tokens[:echoed]
    whole = "".join(texts)
    if not whole.endswith(completion):
        raise _fail("the echoed token texts do not end with the completion")
    boundary = len(whole) - len(completion)
    start = echoed
    position = len(whole)
    while start > 0 and position > boundary:  # a token straddling the boundary is included
        start -= 1
        position -= len(texts[start])
    positions = []
    for i in range(start, echoed):
        j = i - shift
        value = c.logprobs[j] if j >= 0 else None
        top = c.tops[j] if j >= 0 else None
        if value is None or top is None:
            raise _fail(f"no log-probs for the completion's token {i - start}")
        positions.append(Position(texts[i], value, top))
    end: Top | None = None
    if appended:
        j = echoed - shift
        top = c.tops[j] if j >= 0 else None
        if top is None:
            raise _fail("no top log-probs after the completion")
        end = top
    return Scored(tuple(positions), end, "echo-shifted" if shift else "echo")


async def _next(post: Post, model: str | None, text: str, k: int) -> tuple[Top, bool]:
    """The top-k after `text`, and whether the greedy next token is the end of sequence."""
    c = _choice(await post("/v1/completions", _body(model, text, k, echo=False)), k)
    if c.finish == "stop" and not c.tokens:
        return (), True
    if not c.tokens or c.tops[0] is None:
        raise _fail("no top log-probs for the generated token")
    top = c.tops[0]
    return top, c.finish == "stop" and c.tokens[0] == EOS


async def _stepwise(post: Post, model: str | None, prompt: str, completion: str, k: int) -> Scored:
    positions: list[Position] = []
    done = 0
    while done < len(completion):
        if len(positions) >= MAX_TOKENS:
            raise _fail(f"the completion is more than {MAX_TOKENS} tokens")
        top, _ = await _next(post, model, prompt + completion[:done], k)
        rest = completion[done:]
        matches = [(t, v) for t, v in top if t and rest.startswith(t)]
        if matches:
            token, value = max(matches, key=lambda m: (len(m[0]), m[1]))
        else:
            found = PRETOKEN.match(rest)
            token = found.group(0) if found else rest[0]
            value = top[-1][1] if top else 0.0
        positions.append(Position(token, value, top))
        done += len(token)
    end_top, eos = await _next(post, model, prompt + completion, k)
    return Scored(tuple(positions), None if eos else end_top, "stepwise")


async def score(
    post: Post,
    *,
    model: str | None,
    prompt: str,
    completion: str,
    method: str,
    logprobs: int = 20,
) -> Scored:
    """The completion teacher-forced after `prompt` (the exact rendered prompt text), read by
    `method` (see the module docstring). BackendError on any failure or malformed answer."""
    _check(prompt, completion, method, logprobs)
    if method == "stepwise":
        return await _stepwise(post, model, prompt, completion, logprobs)
    return await _echo(
        post, model, prompt, completion, 1 if method == "echo-shifted" else 0, logprobs
    )


async def detect_method(post: Post, *, model: str | None, prompt: str, logprobs: int = 20) -> str:
    """The scoring method the server supports: a short greedy completion of `prompt` with
    log-probs, echo-scored again; "echo" when the echo's log-probs match the generation's,
    "echo-shifted" when they match one token later, else "stepwise" (when a one-token
    generation gives top log-probs). BackendError when the server answers none of these."""
    body = _body(model, prompt, logprobs, echo=False)
    body["max_tokens"] = DETECT_TOKENS
    gen = _choice(await post("/v1/completions", body), logprobs)
    values = [v for v, t in zip(gen.logprobs, gen.tokens, strict=True) if t != EOS]
    tokens = [t for t in gen.tokens if t != EOS]
    text = "".join(tokens)
    if len(values) >= 2 and text and all(v is not None for v in values):
        try:
            echo = _choice(
                await post("/v1/completions", _body(model, prompt + text, logprobs, echo=True)),
                logprobs,
            )
        except BackendError:
            echo = None
        if echo is not None:
            n = len(values)
            echoed = len(echo.tokens) - (1 if echo.finish == "length" else 0)
            got = echo.logprobs[:echoed]
            if echoed >= n + 1 and tuple(echo.tokens[echoed - n : echoed]) == tuple(tokens):
                here = got[echoed - n : echoed]
                shifted = got[echoed - n - 1 : echoed - 1]

                def close(seq: tuple[float | None, ...]) -> bool:
                    return all(
                        a is not None and b is not None and abs(a - b) <= DETECT_TOLERANCE
                        for a, b in zip(seq, values, strict=True)
                    )

                if close(here):
                    return "echo"
                if close(shifted):
                    return "echo-shifted"
    top, _ = await _next(post, model, prompt, logprobs)
    if not top:
        raise _fail("neither echo nor a one-token generation gives top log-probs")
    return "stepwise"
