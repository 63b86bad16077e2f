"""The `openai` backend: any OpenAI-compatible chat completions server over HTTP (aiohttp).

It POSTs `{base_url}/v1/chat/completions` (a `base_url` that already ends in `/v1` is not
doubled) with the prompt as one user message and the task's sampling options, and submits
`choices[0].message.content`. The node's seed goes along as `seed`, reduced to 63 bits because
servers such as vLLM validate it as a signed 64-bit integer. Whether the output is then
reproducible (and so verifiable by other nodes, PROTOCOL 4.5) depends on the server.

Every failure (connection, timeout, HTTP status, malformed body) raises `BackendError`; a
total timeout bounds every request, so a stuck server never hangs the node. The answer is read
as untrusted as a task: at most MAX_ANSWER_BYTES, parsed by `wire.parse_json` (its nesting
bounded before the parse), and a content longer than a task field may be is refused.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from chain.protocol import wire
from resource_node.backends import (
    BackendError,
    InferenceRequest,
    check_known_options,
    float_option,
    prompt_text,
)
from resource_node.untrusted import MAX_FIELD_LENGTH

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
SEED_MODULUS = 2**63
OPTIONS = ("base_url", "api_key", "timeout", "model")
PASSED_OPTIONS = ("temperature", "top_p")
ERROR_EXCERPT = 300
MAX_ANSWER_BYTES = 16 * 1024 * 1024


def completions_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if base.endswith("/v1"):
        return base + "/chat/completions"
    return base + "/v1/chat/completions"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class OpenAIBackend:
    """Chat completions on an OpenAI-compatible server. `model` overrides the task's model."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        model: str | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"backend option base_url: expected an http(s) URL, got {base_url!r}")
        if not timeout > 0:
            raise ValueError(f"backend option timeout: must be positive, got {timeout}")
        self.base_url = base_url
        self.url = completions_url(base_url)
        self.api_key = api_key or None
        self.timeout = timeout
        self.model = model or None
        self._session = session
        self._owns_session = session is None

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> OpenAIBackend:
        check_known_options("openai", options, OPTIONS)
        if not options.get("base_url"):
            raise ValueError("backend openai needs --backend-opt base_url=http://host:port")
        return cls(
            options["base_url"],
            api_key=options.get("api_key"),
            timeout=float_option(options, "timeout", DEFAULT_TIMEOUT, low=0.001),
            model=options.get("model"),
        )

    def request_body(self, request: InferenceRequest) -> dict[str, Any]:
        """The JSON body for `request`; only the sampling options the task sets."""
        body: dict[str, Any] = {}
        model = self.model or request.model
        if model is not None:
            body["model"] = model
        body["messages"] = [{"role": "user", "content": prompt_text(request.prompts)}]
        for key in PASSED_OPTIONS:
            value = request.model_options.get(key)
            if _number(value):
                body[key] = value
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        body["seed"] = request.seed % SEED_MODULUS
        return body

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def infer(self, request: InferenceRequest) -> str:
        body = self.request_body(request)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with self._get_session().post(
                self.url, data=json.dumps(body), headers=self._headers(), timeout=timeout
            ) as resp:
                status = resp.status
                raw = await self._read(resp)
        except TimeoutError as exc:
            raise BackendError(f"POST {self.url}: no answer within {self.timeout:g} s") from exc
        except aiohttp.ClientError as exc:
            raise BackendError(f"POST {self.url} failed: {exc!r}") from exc
        text = raw[:ERROR_EXCERPT].decode("utf-8", errors="replace")
        if status != 200:
            raise BackendError(f"POST {self.url}: HTTP {status}: {text!r}")
        try:
            answer = wire.parse_json(raw)
        except ValueError as exc:
            raise BackendError(f"POST {self.url}: the answer is not JSON: {text!r}") from exc
        return self._content(answer, text)

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        """The body, or BackendError once it is longer than MAX_ANSWER_BYTES."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise BackendError(f"POST {self.url}: the answer is over {MAX_ANSWER_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _content(self, answer: Any, text: str) -> str:
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError(
                f"POST {self.url}: no choices[0].message.content in the answer: {text!r}"
            ) from exc
        if not isinstance(content, str):
            raise BackendError(f"POST {self.url}: choices[0].message.content is not a string")
        if len(content) > MAX_FIELD_LENGTH:
            raise BackendError(
                f"POST {self.url}: choices[0].message.content is {len(content)} characters, "
                f"more than {MAX_FIELD_LENGTH}"
            )
        return content

    async def aclose(self) -> None:
        """Close the HTTP session if this backend created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
