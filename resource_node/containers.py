"""A resource node's containers: named inference stages that off-chain jobs run (PROTOCOL 7.1).

A container is Infernet's unit of work: an id, whether a job may start with it (`external`),
a descriptive `image`, and here a backend (`deterministic` or `openai`, with its options and
faults) and a model. The node's containers come from a JSON file in Infernet's shape
(`--config node.json`, `load_config`) or, without one, from the node's own flags: one external
container per served model (`default_containers`), and `--container` adds more.

A stage's input is a JSON object (`render_input`): its `prompt`, else its `messages` (`role:
content` lines), else the JSON of the object, is the prompt; `seed` (an integer) and `options`
(an object: the modelOptions of a chain task, PROTOCOL 4.2) are read when present. It answers
`{"output": text, "model", "seed", "usage"}`, which the next stage reads as `{"prompt":
output}`. Every failure of a stage is a `StageError`, which a job reports as Infernet's
ContainerError.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chain.protocol import crypto, wire
from chain.protocol.errors import InvalidParams
from resource_node.backends import (
    BACKEND_NAMES,
    Backend,
    BackendError,
    InferenceRequest,
    close_backend,
    complete,
    make_backend,
    setup_backend,
    stream_text,
)
from resource_node.backends.faults import Faults
from resource_node.untrusted import MAX_FIELD_LENGTH, Unreadable, describe

CONTAINER_KEYS = (
    "id",
    "image",
    "external",
    "description",
    "backend",
    "backend_options",
    "model",
    "faults",
    "allowed_ips",
    "allowed_addresses",
    "rate_limit",
)
# Keys of Infernet's own container config that have no meaning here: read and ignored.
INFERNET_ONLY_KEYS = (
    "port",
    "url",
    "bearer",
    "command",
    "env",
    "volumes",
    "gpu",
    "accepted_payments",
    "generates_proofs",
    "allowed_delegate_addresses",
)
CONFIG_KEYS = ("containers", "server", "max_running_jobs", "ocean")
CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
MAX_CONTAINERS = 64
DEFAULT_RATE_REQUESTS = 60  # Infernet's default: 60 requests per 60 s per client
DEFAULT_RATE_PERIOD = 60.0
DEFAULT_MAX_RUNNING_JOBS = 16
MAX_PROMPT_CHARS = MAX_FIELD_LENGTH
STAGE_KEYS = ("prompt", "messages", "seed", "options")
SEED_LIMIT = 2**64
DETERMINISTIC_IMAGE = "inferchain/deterministic:v1"


class StageError(Exception):
    """A stage could not produce its output; the message is the ContainerError's `error`."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `num_requests` per `period` seconds per client (Infernet's `rate_limit`)."""

    num_requests: int = DEFAULT_RATE_REQUESTS
    period: float = DEFAULT_RATE_PERIOD

    @classmethod
    def parse(cls, value: Any, where: str) -> RateLimit:
        """From `{"num_requests", "period"}` or the text `N/S`; ValueError naming `where`."""
        if isinstance(value, str):
            count, sep, period = value.partition("/")
            if not sep or not wire.ascii_digits(count.strip()):
                raise ValueError(f"{where}: write N/SECONDS, got {value!r}")
            try:
                seconds = float(period)
            except ValueError as exc:
                raise ValueError(f"{where}: write N/SECONDS, got {value!r}") from exc
            value = {"num_requests": int(count), "period": seconds}
        if not isinstance(value, dict) or set(value) - {"num_requests", "period"}:
            raise ValueError(f"{where}: expected {{num_requests, period}}, got {describe(value)}")
        count = value.get("num_requests", DEFAULT_RATE_REQUESTS)
        period = value.get("period", DEFAULT_RATE_PERIOD)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{where}.num_requests: a positive integer, got {describe(count)}")
        if isinstance(period, bool) or not isinstance(period, int | float) or not period > 0:
            raise ValueError(f"{where}.period: a positive number of seconds, got {period!r}")
        return cls(count, float(period))

    def to_json(self) -> dict[str, Any]:
        return {"num_requests": self.num_requests, "period": self.period}


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """One container as configured (the `containers` entries of `--config`)."""

    id: str
    image: str
    external: bool = True
    description: str = ""
    backend: str = "deterministic"
    backend_options: tuple[tuple[str, str], ...] = ()
    model: str | None = None
    faults: tuple[str, ...] = ()
    allowed_ips: tuple[str, ...] = ()
    allowed_addresses: tuple[str, ...] = ()
    rate_limit: RateLimit | None = None

    @classmethod
    def parse(cls, item: Any, where: str) -> ContainerConfig:
        """One entry; ValueError naming `where` and the field."""
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object, got {describe(item)}")
        unknown = sorted(set(item) - set(CONTAINER_KEYS) - set(INFERNET_ONLY_KEYS))
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(CONTAINER_KEYS)}"
            )
        cid = item.get("id")
        if not isinstance(cid, str) or not CONTAINER_ID.fullmatch(cid):
            raise ValueError(
                f"{where}.id: 1 to 128 letters, digits and ._:/- (a letter or digit first), "
                f"got {describe(cid)}"
            )
        backend = _text(item, "backend", where, "deterministic")
        if backend not in BACKEND_NAMES:
            raise ValueError(f"{where}.backend: one of {', '.join(BACKEND_NAMES)}, got {backend!r}")
        options = item.get("backend_options", {})
        if not isinstance(options, dict) or not all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in options.values()
        ):
            raise ValueError(f"{where}.backend_options: an object of strings or numbers")
        external = item.get("external", True)
        if not isinstance(external, bool):
            raise ValueError(f"{where}.external: true or false, got {describe(external)}")
        model = item.get("model")
        if model is not None and (not isinstance(model, str) or not model):
            raise ValueError(f"{where}.model: a model name, got {describe(model)}")
        default_image = str(options.get("base_url", "")) or DETERMINISTIC_IMAGE
        ips = _strings(item, "allowed_ips", where)
        for ip in ips:
            try:
                ipaddress.ip_network(ip, strict=False)
            except ValueError as exc:
                raise ValueError(f"{where}.allowed_ips: {ip!r} is not an IP or CIDR") from exc
        try:
            addresses = tuple(
                wire.parse_address(a, f"{where}.allowed_addresses")
                for a in _strings(item, "allowed_addresses", where)
            )
        except InvalidParams as exc:
            raise ValueError(str(exc)) from exc
        faults = _strings(item, "faults", where)
        try:
            Faults.parse(faults)
        except ValueError as exc:
            raise ValueError(f"{where}.faults: {exc}") from exc
        rate = item.get("rate_limit")
        return cls(
            id=cid,
            image=_text(item, "image", where, default_image),
            external=external,
            description=_text(item, "description", where, ""),
            backend=backend,
            backend_options=tuple((str(k), str(v)) for k, v in options.items()),
            model=model,
            faults=faults,
            allowed_ips=ips,
            allowed_addresses=addresses,
            rate_limit=None if rate is None else RateLimit.parse(rate, f"{where}.rate_limit"),
        )

    def info(self) -> dict[str, Any]:
        """Infernet's Container object."""
        return {
            "id": self.id,
            "external": self.external,
            "image": self.image,
            "description": self.description,
        }

    def admits_ip(self, ip: str) -> bool:
        """Whether a caller at `ip` may run this container (Infernet's `allowed_ips`: CIDR
        ranges; none listed admits every caller)."""
        if not self.allowed_ips:
            return True
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(n, strict=False) for n in self.allowed_ips)

    def admits_address(self, address: str) -> bool:
        """Whether a caller who proved `address` (a signed Ocean request) may run it; none
        listed admits every address."""
        if not self.allowed_addresses:
            return True
        return address.lower() in {a.lower() for a in self.allowed_addresses}


def _text(item: Mapping[str, Any], key: str, where: str, default: str) -> str:
    value = item.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"{where}.{key}: a string, got {describe(value)}")
    return value


def _strings(item: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = item.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}.{key}: a list of strings, got {describe(value)}")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """The `--config` file: containers, the server's rate limit, the cap on running jobs,
    and the Ocean section (read by `resource_node.ocean`)."""

    containers: tuple[ContainerConfig, ...] = ()
    rate_limit: RateLimit = field(default_factory=RateLimit)
    max_running_jobs: int = DEFAULT_MAX_RUNNING_JOBS
    ocean: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, document: Any, where: str = "config") -> NodeConfig:
        if not isinstance(document, dict):
            raise ValueError(f"{where}: expected a JSON object, got {describe(document)}")
        unknown = sorted(set(document) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(CONFIG_KEYS)}"
            )
        items = document.get("containers", [])
        if not isinstance(items, list) or len(items) > MAX_CONTAINERS:
            raise ValueError(f"{where}.containers: a list of at most {MAX_CONTAINERS} containers")
        containers = tuple(
            ContainerConfig.parse(item, f"{where}.containers[{i}]") for i, item in enumerate(items)
        )
        check_unique(containers, where)
        server = document.get("server", {})
        if not isinstance(server, dict):
            raise ValueError(f"{where}.server: an object, got {describe(server)}")
        rate = server.get("rate_limit")
        running = document.get("max_running_jobs", DEFAULT_MAX_RUNNING_JOBS)
        if isinstance(running, bool) or not isinstance(running, int) or running < 1:
            raise ValueError(f"{where}.max_running_jobs: a positive integer, got {running!r}")
        ocean = document.get("ocean", {})
        if not isinstance(ocean, dict):
            raise ValueError(f"{where}.ocean: an object, got {describe(ocean)}")
        return cls(
            containers=containers,
            rate_limit=RateLimit()
            if rate is None
            else RateLimit.parse(rate, f"{where}.server.rate_limit"),
            max_running_jobs=running,
            ocean=ocean,
        )


def check_unique(containers: Iterable[ContainerConfig], where: str) -> None:
    seen: set[str] = set()
    for container in containers:
        if container.id in seen:
            raise ValueError(f"{where}: container id {container.id!r} given twice")
        seen.add(container.id)


def load_config(path: str | Path) -> NodeConfig:
    """The `--config` file; ValueError naming the file and what is wrong."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"--config {path}: cannot read it ({exc.strerror})") from exc
    try:
        document = wire.parse_json(raw)
    except ValueError as exc:
        raise ValueError(f"--config {path}: not JSON ({exc})") from exc
    return NodeConfig.parse(document, f"--config {path}")


def parse_container_flag(text: str, index: int) -> ContainerConfig:
    """One `--container` flag: a container object as in the config file, in JSON."""
    try:
        item = wire.parse_json(text.encode())
    except ValueError as exc:
        raise ValueError(f"--container {text!r}: expected a JSON object ({exc})") from exc
    return ContainerConfig.parse(item, f"--container[{index}]")


def default_containers(
    models: Iterable[str], backend: str, options: Mapping[str, str], faults: Iterable[str]
) -> tuple[ContainerConfig, ...]:
    """Without `--config`: one external container per served model, on the node's backend
    (its id the model's name); `*` (every model) gives one container named after the
    backend, of the backend's own model."""
    image = options.get("base_url") or DETERMINISTIC_IMAGE
    out = []
    for model in models:
        every = model == "*"
        out.append(
            ContainerConfig(
                id=backend if every else model,
                image=image,
                external=True,
                description=f"the node's {backend} backend" + ("" if every else f", model {model}"),
                backend=backend,
                backend_options=tuple(options.items()),
                model=None if every else model,
                faults=tuple(faults),
            )
        )
    return tuple(out)


# Running a stage


@dataclass(frozen=True, slots=True)
class StageInput:
    """What a stage computes from, read from its input object."""

    prompt: str
    seed: int | None
    options: dict[str, Any]


def render_input(data: Any, where: str = "data") -> StageInput:
    """A stage's input object read (see the module docstring); ValueError naming the field."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {describe(data)}")
    seed = data.get("seed")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT
    ):
        raise ValueError(f"{where}.seed: an integer from 0 to 2^64-1, got {describe(seed)}")
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise ValueError(f"{where}.options: an object of model options, got {describe(options)}")
    if "prompt" in data:
        prompt = data["prompt"]
        if not isinstance(prompt, str):
            raise ValueError(f"{where}.prompt: a string, got {describe(prompt)}")
    elif "messages" in data:
        prompt = _messages_text(data["messages"], f"{where}.messages")
    else:
        rest = {k: v for k, v in data.items() if k not in ("seed", "options")}
        prompt = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"{where}: the prompt is over {MAX_PROMPT_CHARS} characters")
    return StageInput(prompt, seed, options)


def _messages_text(messages: Any, where: str) -> str:
    if not isinstance(messages, list) or not messages:
        raise ValueError(
            f"{where}: a non-empty list of {{role, content}}, got {describe(messages)}"
        )
    lines = []
    for i, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            raise ValueError(f"{where}[{i}]: expected {{role: string, content: string}}")
        lines.append(f"{message['role']}: {message['content']}")
    return "\n".join(lines)


def job_seed(job_id: str, index: int) -> int:
    """The seed of stage `index` of a job whose input names none: a function of the job id."""
    digest = crypto.keccak(f"inferchain/job-seed/{job_id}/{index}".encode())
    return int.from_bytes(digest[:8], "big")


class Container:
    """A configured container and its backend, ready to run stages."""

    def __init__(self, config: ContainerConfig, backend: Backend, *, owns_backend: bool) -> None:
        self.config = config
        self.inner = backend
        self.backend = Faults.parse(config.faults).compute_backend(backend)
        self._owns_backend = owns_backend

    @property
    def id(self) -> str:
        return self.config.id

    def request(self, stage: StageInput, seed: int) -> InferenceRequest:
        options = dict(stage.options)
        max_tokens = options.get("max_tokens")
        return InferenceRequest(
            model=self.config.model,
            prompts=json.dumps({"prompt": stage.prompt}, ensure_ascii=False),
            model_options=options,
            seed=seed,
            max_tokens=max_tokens
            if isinstance(max_tokens, int) and not isinstance(max_tokens, bool)
            else None,
        )

    def model_name(self) -> str | None:
        return self.config.model or getattr(self.inner, "model", None)

    def output(self, text: str, seed: int, usage: dict[str, int] | None) -> dict[str, Any]:
        return {"output": text, "model": self.model_name(), "seed": seed, "usage": usage}

    async def run(self, data: Any, default_seed: int) -> dict[str, Any]:
        """The stage's output object for input `data`; StageError saying why it failed."""
        stage = self._read(data)
        seed = default_seed if stage.seed is None else stage.seed
        try:
            done = await complete(self.backend, self.request(stage, seed))
        except BackendError as exc:
            raise StageError(str(exc)) from exc
        return self.output(done.text, seed, done.usage())

    async def stream(self, data: Any, default_seed: int) -> AsyncIterator[str]:
        """The stage's output text in chunks as they come; StageError saying why it failed."""
        stage = self._read(data)
        seed = default_seed if stage.seed is None else stage.seed
        try:
            async for chunk in stream_text(self.backend, self.request(stage, seed)):
                yield chunk
        except BackendError as exc:
            raise StageError(str(exc)) from exc

    def _read(self, data: Any) -> StageInput:
        try:
            return render_input(data)
        except (ValueError, Unreadable) as exc:
            raise StageError(f"bad input: {exc}") from exc

    async def setup(self) -> None:
        if self._owns_backend:
            await setup_backend(self.inner)

    async def close(self) -> None:
        if self._owns_backend:
            await close_backend(self.inner)


def build_containers(
    configs: Iterable[ContainerConfig], shared: Mapping[str, Backend] | None = None
) -> dict[str, Container]:
    """The runtime containers of `configs`, by id. A container whose backend and options are
    those of a backend in `shared` (keyed by `backend_key`) uses it; every other one gets its
    own backend (ValueError naming a bad option)."""
    shared = dict(shared or {})
    out: dict[str, Container] = {}
    for config in configs:
        key = backend_key(config.backend, dict(config.backend_options))
        backend = shared.get(key)
        if backend is not None:
            out[config.id] = Container(config, backend, owns_backend=False)
            continue
        try:
            backend = make_backend(config.backend, dict(config.backend_options))
        except ValueError as exc:
            raise ValueError(f"container {config.id}: {exc}") from exc
        out[config.id] = Container(config, backend, owns_backend=True)
    return out


def backend_key(backend: str, options: Mapping[str, str]) -> str:
    """A backend's identity: its name and options, so containers alike share one."""
    return json.dumps([backend, sorted(options.items())])
