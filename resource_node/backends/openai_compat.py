"""The `openai` backend: any OpenAI-compatible server over HTTP (aiohttp): llama.cpp's, vLLM's,
Ollama's.

It generates with `POST /v1/completions` (option `api=completions`, the default), over the
prompt rendered by a template (`template=chatml`, the default, `raw`, or any text holding
`{prompt}`), or with `POST /v1/chat/completions` (`api=chat`, the prompt as one user message).
A `base_url` that already ends in `/v1` is not doubled.

What it sends is the task's sampling (PROTOCOL 4.15), every value checked against its range
before anything is sent: `temperature` (0 to 2, default 0.7), `top_p` (0 to 1, default 0.9),
`max_tokens` (1 to the node's cap `max_tokens_cap`, default `max_tokens` = 256), and when the
task sets them `top_k`, `min_p`, `repeat_penalty`, `presence_penalty`, `frequency_penalty`
and `stop`. A key of modelOptions it does not know, a value out of range, or an answer of HTTP
400 or 422 (the server cannot take an option) is a `TaskError`: an error of that task, never a
silent default. The node's seed goes along as `seed`, reduced to 63 bits because servers such
as vLLM validate it as a signed 64-bit integer.

At the node's start (`setup`) the backend asks `/v1/models` and refuses to start unless the
server serves the configured `model` (without one, the server's only model is taken); it then
serves that model only (`serves`). With `api=completions` it also finds out how the server
scores a given completion (`resource_node.scoring.detect_method`), which the `scored`
verification method uses (`score`).

Every failure (connection, timeout, HTTP status, malformed body) raises `BackendError`; a
total timeout bounds every request, so a stuck server never hangs the node. The answer is read
as untrusted as a task: at most MAX_ANSWER_BYTES, parsed by `wire.parse_json` (its nesting
bounded before the parse), and a text longer than a task field may be is refused.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from chain.protocol import wire
from resource_node import scoring
from resource_node.backends import (
    BackendError,
    Completion,
    InferenceRequest,
    TaskError,
    check_known_options,
    float_option,
    int_option,
    prompt_text,
)
from resource_node.untrusted import MAX_FIELD_LENGTH, describe

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
SEED_MODULUS = 2**63
OPTIONS = (
    "base_url",
    "api_key",
    "timeout",
    "model",
    "api",
    "template",
    "max_tokens",
    "max_tokens_cap",
    "verify",
    "logprobs",
    "fast_path",
)
APIS = ("completions", "chat")
TEMPLATES = {
    "chatml": "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n",
    "raw": "{prompt}",
}
VERIFY_METHODS = ("exact", "scored")
DEFAULT_MAX_TOKENS = 256
DEFAULT_MAX_TOKENS_CAP = 2048
DEFAULT_LOGPROBS = 20
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.9
# A task of targetCount > 1 verified by score is sampled at least this hot, so that two nodes'
# outputs differ and a copy can be told (PROTOCOL 4.15).
MIN_SHARED_TEMPERATURE = 0.5
NEUTRAL_REPEAT_PENALTY = 1.0
SCORED_TOP_K = 40
SCORED_MIN_P = 0.05
MAX_STOPS = 4
MAX_STOP_CHARS = 256
# The modelOptions keys the backend reads: the sampling below, and the ones the node reads.
NODE_KEYS = ("model", "verify", "max_tokens")
ERROR_EXCERPT = 300
MAX_ANSWER_BYTES = 16 * 1024 * 1024
# What a server answers for a request it cannot take: the task's error, not the server's.
REFUSED_STATUSES = (400, 422)
# Idle connections are closed before the servers' own keep-alive ends (uvicorn's, under
# llama-cpp-python and vLLM: 5 s), and a request on one the server closed meanwhile is sent
# again once.
KEEPALIVE_S = 2.0
USAGE_KEYS = ("prompt_tokens", "completion_tokens")
STALE_RETRIES = 1


@dataclass(frozen=True, slots=True)
class Range:
    """A sampling option's range (both ends included) and whether it must be an integer."""

    low: float
    high: float
    integer: bool = False


SAMPLING_RANGES: dict[str, Range] = {
    "temperature": Range(0.0, 2.0),
    "top_p": Range(0.0, 1.0),
    "top_k": Range(0, 1_000_000, integer=True),
    "min_p": Range(0.0, 1.0),
    "repeat_penalty": Range(0.0, 10.0),
    "presence_penalty": Range(-2.0, 2.0),
    "frequency_penalty": Range(-2.0, 2.0),
}


def api_url(base_url: str, api: str) -> str:
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + ("/chat/completions" if api == "chat" else "/completions")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _sampling_value(key: str, value: Any) -> float | int:
    limits = SAMPLING_RANGES[key]
    if limits.integer:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TaskError(f"modelOptions.{key}: expected an integer, got {describe(value)}")
    elif not _number(value) or not math.isfinite(value):
        raise TaskError(f"modelOptions.{key}: expected a number, got {describe(value)}")
    if not limits.low <= value <= limits.high:
        raise TaskError(
            f"modelOptions.{key}: must be from {limits.low:g} to {limits.high:g}, got {value}"
        )
    number: float | int = value
    return number


def _stops(value: Any) -> tuple[str, ...]:
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise TaskError(
            f"modelOptions.stop: expected a string or a list of strings, got {describe(value)}"
        )
    if len(stops) > MAX_STOPS or any(len(s) > MAX_STOP_CHARS for s in stops):
        raise TaskError(
            f"modelOptions.stop: at most {MAX_STOPS} strings of at most {MAX_STOP_CHARS} characters"
        )
    return tuple(stops)


def template_text(template: str) -> str:
    """The template a `template` option names (`chatml`, `raw`) or is; ValueError if it has
    no `{prompt}`."""
    text = TEMPLATES.get(template, template)
    if "{prompt}" not in text:
        raise ValueError(
            f"backend option template: {', '.join(TEMPLATES)}, or a text holding {{prompt}}; "
            f"got {template!r}"
        )
    return text


@dataclass(frozen=True, slots=True)
class Generation:
    """What one request asks the server: its JSON body, and the sampling it sets."""

    body: dict[str, Any]
    sampling: scoring.Sampling


class OpenAIBackend:
    """Completions on an OpenAI-compatible server, for one model (the configured one, or the
    server's only one)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        model: str | None = None,
        api: str = "completions",
        template: str = "chatml",
        max_tokens: int = DEFAULT_MAX_TOKENS,
        max_tokens_cap: int = DEFAULT_MAX_TOKENS_CAP,
        verify: str | None = None,
        logprobs: int = DEFAULT_LOGPROBS,
        fast_path: bool = True,
        thresholds: scoring.Thresholds | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"backend option base_url: expected an http(s) URL, got {base_url!r}")
        if not timeout > 0:
            raise ValueError(f"backend option timeout: must be positive, got {timeout}")
        if api not in APIS:
            raise ValueError(f"backend option api: {' or '.join(APIS)}, got {api!r}")
        if not 1 <= max_tokens <= max_tokens_cap:
            raise ValueError(
                f"backend option max_tokens: from 1 to max_tokens_cap ({max_tokens_cap}), "
                f"got {max_tokens}"
            )
        verify = verify or ("scored" if api == "completions" else "exact")
        if verify not in VERIFY_METHODS:
            raise ValueError(
                f"backend option verify: {' or '.join(VERIFY_METHODS)}, got {verify!r}"
            )
        if verify == "scored" and api != "completions":
            raise ValueError("backend option verify=scored needs api=completions")
        self.base_url = base_url
        self.api = api
        self.url = api_url(base_url, api)
        self.template = template_text(template)
        self.api_key = api_key or None
        self.timeout = timeout
        self.model = model or None
        self.max_tokens = max_tokens
        self.max_tokens_cap = max_tokens_cap
        self.verify = verify
        self.logprobs = logprobs
        self.fast_path = fast_path
        self.thresholds = thresholds or scoring.Thresholds()
        self.scoring_method: str | None = None
        self._session = session
        self._owns_session = session is None

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> OpenAIBackend:
        check_known_options("openai", options, OPTIONS)
        if not options.get("base_url"):
            raise ValueError("backend openai needs --backend-opt base_url=http://host:port")
        fast_path = options.get("fast_path", "true").lower()
        if fast_path not in ("true", "false"):
            raise ValueError(f"backend option fast_path: true or false, got {fast_path!r}")
        cap = int_option(options, "max_tokens_cap", DEFAULT_MAX_TOKENS_CAP, low=1)
        return cls(
            options["base_url"],
            api_key=options.get("api_key"),
            timeout=float_option(options, "timeout", DEFAULT_TIMEOUT, low=0.001),
            model=options.get("model"),
            api=options.get("api", "completions"),
            template=options.get("template", "chatml"),
            max_tokens=int_option(options, "max_tokens", min(DEFAULT_MAX_TOKENS, cap), low=1),
            max_tokens_cap=cap,
            verify=options.get("verify"),
            logprobs=int_option(options, "logprobs", DEFAULT_LOGPROBS, low=1),
            fast_path=fast_path == "true",
        )

    # The model and the server's scoring, found at the start

    async def setup(self) -> None:
        """Ask the server which models it serves; BackendError unless it serves the configured
        one (or, with none configured, exactly one). With `verify=scored`, find how it scores."""
        answer = await self._request("GET", "/v1/models", None)
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list):
            raise BackendError(f"GET {self._url('/v1/models')}: no data list in the answer")
        served = [item["id"] for item in data if isinstance(item, dict) and "id" in item]
        served = [model for model in served if isinstance(model, str)]
        if self.model is None:
            if len(served) != 1:
                raise BackendError(
                    f"the server at {self.base_url} serves {', '.join(served) or 'no model'}: "
                    "choose one with --backend-opt model=NAME"
                )
            self.model = served[0]
        elif self.model not in served:
            raise BackendError(
                f"the server at {self.base_url} does not serve model {self.model!r}; it serves "
                f"{', '.join(repr(m) for m in served) or 'no model'}"
            )
        if self.verify == "scored":
            probe = self.template.replace("{prompt}", "Name a colour.")
            self.scoring_method = await scoring.detect_method(
                self.post, model=self.model, prompt=probe, logprobs=self.logprobs
            )
            log.info("the server at %s scores by %s", self.base_url, self.scoring_method)

    def serves(self, model: str | None) -> bool:
        """Whether a task for `model` is this backend's (a task that names none is)."""
        return model is None or self.model is None or model == self.model

    # Requests

    def verify_method(self, request: InferenceRequest) -> str:
        """The task's verification method (modelOptions.verify), else this backend's."""
        method = request.model_options.get("verify", self.verify)
        if method not in VERIFY_METHODS:
            raise TaskError(f"modelOptions.verify: {' or '.join(VERIFY_METHODS)}, got {method!r}")
        if method == "scored" and self.api != "completions":
            raise TaskError("modelOptions.verify: scored needs a node with api=completions")
        return str(method)

    def render(self, request: InferenceRequest) -> str:
        """The prompt text a completions request sends."""
        return self.template.replace("{prompt}", prompt_text(request.prompts))

    def generation(self, request: InferenceRequest) -> Generation:
        """The request body for `request` and the sampling it sets; TaskError naming an option
        of the task this backend cannot pass."""
        options = request.model_options
        unknown = sorted(set(options) - set(SAMPLING_RANGES) - {"stop", *NODE_KEYS})
        if unknown:
            raise TaskError(
                f"modelOptions: {', '.join(unknown)} not known to the openai backend; known: "
                f"{', '.join([*NODE_KEYS, *SAMPLING_RANGES, 'stop'])}"
            )
        max_tokens = self.max_tokens if request.max_tokens is None else request.max_tokens
        if not 1 <= max_tokens <= self.max_tokens_cap:
            raise TaskError(
                f"modelOptions.max_tokens: must be from 1 to this node's cap "
                f"{self.max_tokens_cap}, got {max_tokens}"
            )
        values = {
            key: _sampling_value(key, options[key]) for key in SAMPLING_RANGES if key in options
        }
        temperature = float(values.setdefault("temperature", DEFAULT_TEMPERATURE))
        if self.verify_method(request) == "scored":
            if request.target_count > 1:
                temperature = max(temperature, MIN_SHARED_TEMPERATURE)
                values["temperature"] = temperature
            # scored judges by the model's own distribution: llama.cpp and Ollama default to
            # a repeat penalty of 1.1, which samples from another one
            values.setdefault("repeat_penalty", NEUTRAL_REPEAT_PENALTY)
            # and by its support, which every node bounds alike (llama.cpp's defaults): a
            # token the model gives less than min_p of the best is then far outside it
            values.setdefault("top_k", SCORED_TOP_K)
            values.setdefault("min_p", SCORED_MIN_P)
        values.setdefault("top_p", DEFAULT_TOP_P)
        stops = _stops(options["stop"]) if "stop" in options else ()
        body: dict[str, Any] = {}
        if self.model is not None:
            body["model"] = self.model
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt_text(request.prompts)}]
        else:
            body["prompt"] = self.render(request)
        body.update(values)
        if stops:
            body["stop"] = list(stops)
        body["max_tokens"] = max_tokens
        body["seed"] = request.seed % SEED_MODULUS
        sampling = scoring.Sampling(
            temperature=temperature,
            top_p=float(values["top_p"]),
            top_k=int(values.get("top_k", 0)),
            min_p=float(values.get("min_p", 0.0)),
            max_tokens=max_tokens,
            stop=stops,
        )
        return Generation(body, sampling)

    def request_body(self, request: InferenceRequest) -> dict[str, Any]:
        """The JSON body that generates `request`."""
        return self.generation(request).body

    async def infer(self, request: InferenceRequest) -> str:
        answer = await self.post(self.url_path, self.request_body(request))
        return self._content(answer)

    async def complete(self, request: InferenceRequest) -> Completion:
        """The output and the server's usage (its `usage` object, when it has one)."""
        answer = await self.post(self.url_path, self.request_body(request))
        usage = answer.get("usage") if isinstance(answer, dict) else None
        counts = [usage.get(k) if isinstance(usage, dict) else None for k in USAGE_KEYS]
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
            counts = [None, None]
        return Completion(self._content(answer), counts[0], counts[1])

    async def stream(self, request: InferenceRequest) -> AsyncIterator[str]:
        """The output as the server streams it (`stream: true`, server-sent events), chunk by
        chunk; BackendError when the server fails, TaskError when it refuses the request."""
        body = self.request_body(request) | {"stream": True}
        url = self._url(self.url_path)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        size = 0
        try:
            async with self._get_session().post(
                url, data=json.dumps(body), headers=self._headers(), timeout=timeout
            ) as resp:
                if resp.status != 200:
                    raw = await self._read(resp, url)
                    text = raw[:ERROR_EXCERPT].decode("utf-8", errors="replace")
                    if resp.status in REFUSED_STATUSES:
                        raise TaskError(f"POST {url}: the server refused the request: {text!r}")
                    raise BackendError(f"POST {url}: HTTP {resp.status}: {text!r}")
                async for line in resp.content:
                    size += len(line)
                    if size > MAX_ANSWER_BYTES:
                        raise BackendError(f"{url}: the stream is over {MAX_ANSWER_BYTES} bytes")
                    chunk = self._event_text(line, url)
                    if chunk is None:
                        return
                    if chunk:
                        yield chunk
        except TimeoutError as exc:
            raise BackendError(
                f"POST {url}: no end of the stream within {self.timeout:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise BackendError(f"POST {url} failed: {exc!r}") from exc

    def _event_text(self, line: bytes, url: str) -> str | None:
        """The text of one server-sent event line ('' for a line without any), or None at
        `data: [DONE]`."""
        text = line.strip()
        if not text.startswith(b"data:"):
            return ""
        data = text[5:].strip()
        if data == b"[DONE]":
            return None
        try:
            event = wire.parse_json(data)
            choice = event["choices"][0]
            content = choice["delta"].get("content") if self.api == "chat" else choice["text"]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(
                f"POST {url}: a stream event without its text: {data[:80]!r}"
            ) from exc
        if content is None:
            return ""
        if not isinstance(content, str):
            raise BackendError(f"POST {url}: a stream event's text is not a string")
        return content

    async def read_scores(
        self, request: InferenceRequest, completion: str
    ) -> tuple[scoring.Scored, scoring.Sampling]:
        """`completion` teacher-forced after `request`'s prompt, and the sampling `request`
        sets; BackendError when the server fails, TaskError for a bad option."""
        generation = self.generation(request)
        if self.scoring_method is None:
            raise BackendError("this node's server was not probed for scoring (setup not run)")
        scored = await scoring.score(
            self.post,
            model=self.model,
            prompt=self.render(request),
            completion=completion,
            method=self.scoring_method,
            logprobs=self.logprobs,
        )
        return scored, generation.sampling

    async def score(
        self, request: InferenceRequest, completion: str, own: str | None = None
    ) -> scoring.Judgement:
        """Judge `completion` as an output of `request` by the model's own distribution
        (PROTOCOL 4.15), with this node's own output for the same seed when it has one."""
        scored, sampling = await self.read_scores(request, completion)
        return scoring.judge(scored, sampling, self.thresholds, completion=completion, own=own)

    @property
    def url_path(self) -> str:
        return "/v1/chat/completions" if self.api == "chat" else "/v1/completions"

    def _url(self, path: str) -> str:
        base = self.base_url.rstrip("/")
        if base.endswith("/v1") and path.startswith("/v1/"):
            path = path[3:]
        return base + path

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_S)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST `body` to the server's `path`, the answer parsed (`scoring.Post`)."""
        return await self._request("POST", path, body)

    async def _request(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        url = self._url(path)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        data = None if body is None else json.dumps(body)
        for attempt in range(1 + STALE_RETRIES):
            try:
                async with self._get_session().request(
                    method, url, data=data, headers=self._headers(), timeout=timeout
                ) as resp:
                    status = resp.status
                    raw = await self._read(resp, url)
                break
            except TimeoutError as exc:
                raise BackendError(f"{method} {url}: no answer within {self.timeout:g} s") from exc
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                # a kept-alive connection the server closed as it was reused: once more, on a
                # new one (a generation is seeded and a scoring reads only: both repeatable)
                if attempt == STALE_RETRIES:
                    raise BackendError(f"{method} {url} failed: {exc!r}") from exc
            except aiohttp.ClientError as exc:
                raise BackendError(f"{method} {url} failed: {exc!r}") from exc
        text = raw[:ERROR_EXCERPT].decode("utf-8", errors="replace")
        if status in REFUSED_STATUSES and body is not None:
            raise TaskError(f"{method} {url}: the server refused the task's request: {text!r}")
        if status != 200:
            raise BackendError(f"{method} {url}: HTTP {status}: {text!r}")
        try:
            return wire.parse_json(raw)
        except ValueError as exc:
            raise BackendError(f"{method} {url}: the answer is not JSON: {text!r}") from exc

    @staticmethod
    async def _read(resp: aiohttp.ClientResponse, url: str) -> bytes:
        """The body, or BackendError once it is longer than MAX_ANSWER_BYTES."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise BackendError(f"{url}: the answer is over {MAX_ANSWER_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _content(self, answer: Any) -> str:
        where = "choices[0].message.content" if self.api == "chat" else "choices[0].text"
        try:
            choice = answer["choices"][0]
            content = choice["message"]["content"] if self.api == "chat" else choice["text"]
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"POST {self.url}: no {where} in the answer") from exc
        if not isinstance(content, str):
            raise BackendError(f"POST {self.url}: {where} is not a string")
        if len(content) > MAX_FIELD_LENGTH:
            raise BackendError(
                f"POST {self.url}: {where} is {len(content)} characters, more than "
                f"{MAX_FIELD_LENGTH}"
            )
        return content

    async def aclose(self) -> None:
        """Close the HTTP session if this backend created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
