"""Inference backends of a resource node: one small interface and the request it takes.

A backend turns an `InferenceRequest` (the task's model, prompts, model options and this
node's seed, PROTOCOL 4.4) into the result string the node submits. The output must be a
deterministic function of the request, so another node can recompute it with the same seed
and verify it (PROTOCOL 4.5). `deterministic` is the built-in model; `openai` asks any
OpenAI-compatible server. Fault wrappers (`resource_node.backends.faults`) compose around
either.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from chain.protocol import wire

DEFAULT_SCHEMA = "text"


class BackendError(Exception):
    """A backend could not produce an output (server down, timeout, malformed answer)."""


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


class Backend(Protocol):
    """An inference engine. `infer` returns the result string to submit.

    `name` is read-only (a property here), so frozen dataclasses implement it as a field.
    """

    @property
    def name(self) -> str: ...

    async def infer(self, request: InferenceRequest) -> str: ...


def parse_json_object(value: str) -> dict[str, Any] | None:
    """The JSON object a bytes field holds (PROTOCOL 1), or None when it holds anything else."""
    try:
        parsed = json.loads(wire.decode_bytes_field(value))
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


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


def model_of(task: Mapping[str, Any], model_options: Mapping[str, Any]) -> str | None:
    """The model a task asks for: `modelOptions.model` (PROTOCOL 4.2), or the `model` that
    queryTask reports."""
    model = model_options.get("model")
    if isinstance(model, str):
        return model
    reported = task.get("model")
    return reported if isinstance(reported, str) else None


def request_from_task(task: Mapping[str, Any], seed: int) -> InferenceRequest:
    """The request for a task object of queryPendingTasks / queryTask, computed with `seed`."""
    prompts = task.get("prompts")
    if not isinstance(prompts, str):
        raise ValueError(f"task {task.get('taskHash')}: prompts is not a string")
    raw_options = task.get("modelOptions")
    options = parse_json_object(raw_options) if isinstance(raw_options, str) else None
    options = options or {}
    max_tokens = options.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        max_tokens = None
    schema = task.get("schema")
    return InferenceRequest(
        model=model_of(task, options),
        prompts=prompts,
        model_options=options,
        seed=seed,
        max_tokens=max_tokens,
        schema=schema if isinstance(schema, str) else DEFAULT_SCHEMA,
    )


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
