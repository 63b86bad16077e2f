"""The built-in model: text that is a pure function of (model, prompts, modelOptions, seed).

It needs no GPU and no download, and any node recomputes another node's output exactly, which
is what verification (PROTOCOL 4.5) needs. A keccak stream over a canonical encoding of the
inputs picks a word count (between half of the token limit and the limit) and words from a
fixed vocabulary. For a task whose schema is JSON the text is wrapped as `{"answer": text}`,
so the postprocessed form parses. An optional simulated speed makes inference take time.

The algorithm is part of the network's behaviour: nodes that disagree on it reject each other's
results. A pinned vector in the tests guards it; change `STREAM_DOMAIN` if it must change.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

from chain.protocol import crypto, schema, wire
from resource_node.backends import (
    Completion,
    InferenceRequest,
    check_known_options,
    float_option,
    int_option,
    prompt_text,
)

STREAM_DOMAIN = b"inferchain/deterministic/v1"
DEFAULT_MAX_TOKENS = 32
OPTIONS = ("tokens_per_second", "default_max_tokens")

VOCABULARY = (
    "the", "a", "model", "answer", "chain", "block", "node", "seed",
    "token", "verify", "proof", "stake", "reward", "task", "result", "honest",
    "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and",
    "river", "mountain", "light", "shadow", "signal", "noise", "pattern", "random",
    "bright", "quiet", "ancient", "modern", "simple", "complex", "green", "blue",
    "is", "was", "will", "can", "should", "might", "runs", "holds",
    "under", "above", "through", "between", "before", "after", "with", "without",
    "data", "graph", "layer", "weight", "vector", "matrix", "prompt", "output",
)  # fmt: skip

Sleep = Callable[[float], Awaitable[None]]
WORD_CHUNK = re.compile(r"\s*\S+\s*")


def canonical_input(request: InferenceRequest) -> bytes:
    """The encoding the stream hashes: the inputs that define the output, and only those.

    Bytes fields count by the bytes they stand for, so `hi` and `0x6869` are the same prompt;
    modelOptions by its parsed object, so whitespace and key order do not matter.
    """
    document = {
        "model": request.model,
        "prompts": wire.decode_bytes_field(request.prompts).hex(),
        "modelOptions": request.model_options,
        "seed": str(request.seed),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def keccak_stream(key: bytes, length: int) -> bytes:
    """`length` bytes: keccak(STREAM_DOMAIN || keccak(key) || counter) blocks, concatenated."""
    root = crypto.keccak(key)
    blocks = []
    for counter in range((length + 31) // 32):
        blocks.append(crypto.keccak(STREAM_DOMAIN + root + counter.to_bytes(4, "big")))
    return b"".join(blocks)[:length]


def generate_words(request: InferenceRequest, default_max_tokens: int) -> list[str]:
    """The words of the output: at least 1 and at most the token limit."""
    limit = request.max_tokens or default_max_tokens
    low = (limit + 1) // 2
    stream = keccak_stream(canonical_input(request), 2 + 2 * limit)
    count = low + int.from_bytes(stream[:2], "big") % (limit - low + 1)
    return [
        VOCABULARY[int.from_bytes(stream[2 + 2 * i : 4 + 2 * i], "big") % len(VOCABULARY)]
        for i in range(count)
    ]


def render(words: list[str], task_schema: str) -> str:
    """A sentence; for a JSON schema, the JSON document `{"answer": sentence}`."""
    text = " ".join(words)
    text = text[:1].upper() + text[1:] + "."
    if schema.schema_kind(task_schema) == schema.JSON:
        return json.dumps({"answer": text}, separators=(",", ":"))
    return text


@dataclass(frozen=True, slots=True)
class DeterministicBackend:
    """The built-in model. `tokens_per_second` > 0 simulates work by awaiting
    words / speed seconds on `sleep` (injectable, so tests need no real clock)."""

    tokens_per_second: float = 0.0
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    sleep: Sleep = asyncio.sleep
    name: str = "deterministic"

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> DeterministicBackend:
        check_known_options("deterministic", options, OPTIONS)
        return cls(
            tokens_per_second=float_option(options, "tokens_per_second", 0.0, low=0.0),
            default_max_tokens=int_option(options, "default_max_tokens", DEFAULT_MAX_TOKENS, low=1),
        )

    def compute(self, request: InferenceRequest) -> tuple[str, int]:
        """The output and its number of tokens (words), without any simulated delay."""
        words = generate_words(request, self.default_max_tokens)
        return render(words, request.schema), len(words)

    async def infer(self, request: InferenceRequest) -> str:
        return (await self.complete(request)).text

    async def complete(self, request: InferenceRequest) -> Completion:
        """The output, with its usage counted in words (the prompt's split on whitespace)."""
        output, tokens = self.compute(request)
        if self.tokens_per_second > 0:
            await self.sleep(tokens / self.tokens_per_second)
        prompt_words = len(prompt_text(request.prompts).split())
        return Completion(output, prompt_words, tokens)

    async def stream(self, request: InferenceRequest) -> AsyncIterator[str]:
        """The output word by word (each with the spaces after it), at the simulated speed:
        the chunks join to what `infer` returns."""
        output, _tokens = self.compute(request)
        for word in WORD_CHUNK.findall(output):
            if self.tokens_per_second > 0:
                await self.sleep(1 / self.tokens_per_second)
            yield word
