"""Inference backends of a resource node: one small interface and the request it takes.

A backend turns an `InferenceRequest` (the task's model, prompts, model options and this
node's seed, PROTOCOL 4.4) into the result string the node submits. The output must be a
deterministic function of the request, so another node can recompute it with the same seed
and verify it (PROTOCOL 4.5). `deterministic` is the built-in model; `openai` asks any
OpenAI-compatible server. Fault wrappers (`resource_node.backends.faults`) compose around
either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from chain.protocol import wire
from resource_node.untrusted import (
    DEFAULT_SCHEMA,
    TaskInputs,
    Unreadable,
    json_object,
    read_inputs,
)


class BackendError(Exception):
    """A backend could not produce an output (server down, timeout, malformed answer)."""


class TaskError(BackendError):
    """The task asks what this backend cannot do (an option it does not know or the server
    refuses, a value out of range): an error of that one task, not retried."""


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """What a backend computes from.

    `prompts` is the wire string of the task; `model_options` its parsed JSON object (`{}`
    when modelOptions is not a JSON object); `schema` the task's schema (wire string), so a
    backend can shape its output for a JSON schema.
    """

    model: str | None
    prompts: str
    model_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    max_tokens: int | None = None
    schema: str = DEFAULT_SCHEMA
    target_count: int = 1


class Backend(Protocol):
    """An inference engine. `infer` returns the result string to submit.

    `name` is read-only (a property here), so frozen dataclasses implement it as a field.
    """

    @property
    def name(self) -> str: ...

    async def infer(self, request: InferenceRequest) -> str: ...


@dataclass(frozen=True, slots=True)
class Completion:
    """An output and, when the backend counts them, its tokens (prompt and completion)."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def usage(self) -> dict[str, int] | None:
        """OpenAI's usage object, or None when the backend does not count."""
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


async def complete(backend: Backend, request: InferenceRequest) -> Completion:
    """The backend's output with its usage (its `complete`, if it has one; a fault wrapper
    has none, and its output is then given without usage)."""
    method = getattr(backend, "complete", None)
    if method is not None:
        done: Completion = await method(request)
        return done
    return Completion(await backend.infer(request))


async def stream_text(backend: Backend, request: InferenceRequest) -> AsyncIterator[str]:
    """The backend's output in chunks as it makes them (its `stream`, if it has one), else
    the whole output as one chunk."""
    method = getattr(backend, "stream", None)
    if method is None:
        yield await backend.infer(request)
        return
    async for chunk in method(request):
        yield chunk


def parse_json_object(value: str) -> dict[str, Any] | None:
    """The JSON object a bytes field holds (PROTOCOL 1), or None when it holds anything else
    or is beyond the bounds of `resource_node.untrusted` (too long, nested too deep)."""
    try:
        return json_object(value, "value")
    except Unreadable:
        return None


def bytes_field_text(value: str) -> str:
    """The text a bytes field stands for (hex decoded when `0x`-hex, invalid UTF-8 replaced)."""
    return wire.decode_bytes_field(value).decode("utf-8", errors="replace")


def prompt_text(prompts: str) -> str:
    """The prompt for a chat model: the `prompt` member when prompts is a JSON object with a
    string `prompt`, else the whole decoded text."""
    obj = parse_json_object(prompts)
    if obj is not None and isinstance(obj.get("prompt"), str):
        text: str = obj["prompt"]
        return text
    return bytes_field_text(prompts)


def request_for(inputs: TaskInputs, seed: int) -> InferenceRequest:
    """The request for a task's inputs (`resource_node.untrusted.read_inputs`) and `seed`."""
    return InferenceRequest(
        model=inputs.model,
        prompts=inputs.prompts,
        model_options=inputs.model_options,
        seed=seed,
        max_tokens=inputs.max_tokens,
        schema=inputs.schema,
        target_count=inputs.target_count,
    )


def request_from_task(task: Mapping[str, Any], seed: int) -> InferenceRequest:
    """The request for a task object of queryPendingTasks / queryTask, computed with `seed`;
    `Unreadable` (a ValueError) naming a field that is missing, of the wrong type or beyond
    the bounds."""
    return request_for(read_inputs(task), seed)


def parse_backend_options(pairs: list[str]) -> dict[str, str]:
    """`k=v` strings (from `--backend-opt`) as a dict; ValueError naming a malformed one."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--backend-opt {pair!r}: expected key=value")
        options[key] = value.strip()
    return options


BACKEND_NAMES = ("deterministic", "openai")


def make_backend(name: str, options: Mapping[str, str]) -> Backend:
    """The backend `name` configured by string options; ValueError naming a bad option."""
    if name == "deterministic":
        from resource_node.backends.deterministic import DeterministicBackend

        return DeterministicBackend.from_options(options)
    if name == "openai":
        from resource_node.backends.openai_compat import OpenAIBackend

        return OpenAIBackend.from_options(options)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")


async def setup_backend(backend: Backend) -> None:
    """Let a backend check its server before the node starts (a `setup`, if it has one):
    BackendError says why it cannot serve."""
    setup = getattr(backend, "setup", None)
    if setup is not None:
        await setup()


async def close_backend(backend: Backend) -> None:
    """Release what a backend holds (an HTTP session), if it has an `aclose`."""
    aclose = getattr(backend, "aclose", None)
    if aclose is not None:
        await aclose()


def float_option(options: Mapping[str, str], key: str, default: float, *, low: float) -> float:
    if key not in options:
        return default
    try:
        value = float(options[key])
    except ValueError as exc:
        raise ValueError(f"backend option {key}: expected a number, got {options[key]!r}") from exc
    if not value >= low:  # also refuses NaN
        raise ValueError(f"backend option {key}: must be at least {low}, got {options[key]!r}")
    return value


def int_option(options: Mapping[str, str], key: str, default: int, *, low: int) -> int:
    if key not in options:
        return default
    try:
        value = int(options[key])
    except ValueError as exc:
        raise ValueError(
            f"backend option {key}: expected an integer, got {options[key]!r}"
        ) from exc
    if value < low:
        raise ValueError(f"backend option {key}: must be at least {low}, got {value}")
    return value


def check_known_options(backend: str, options: Mapping[str, str], known: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"backend {backend}: unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
