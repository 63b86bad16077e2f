"""False-reject and false-accept rates of the `scored` verification method against a real
OpenAI-compatible server (llama.cpp's, as the `openai` backend calls it).

Honest results are generated on the generating server (`--base-url`) through
/v1/chat/completions, as the `openai` backend asks (temperature, top_p, max_tokens, seed), over
varied prompts, temperatures 0, 0.7 and 1.0, top_p 0.9 and 1.0 and max_tokens 32 to 96. Each is
then scored on the verifying server (`--verify-url`, another build or thread count), with the
prompt rendered as the chat template does, and judged by `resource_node.scoring.judge`.
Faulty results, one kind after another: another prompt's honest output, the first half of the
output's characters, the deterministic backend's text, the output with " [wrong]" appended,
and the output with a few words swapped. The report gives the rates per kind, the worst
honest margins (what the thresholds were chosen from), and the verifier's cost: scoring seconds
per token against generation seconds per token.

`python -m bench.llm_rates --base-url http://127.0.0.1:P [--verify-url U] [--results N]
[--json FILE]`: the report as JSON on stdout (and in FILE).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import asdict
from typing import Any

import aiohttp

from resource_node.backends import BackendError, InferenceRequest
from resource_node.backends.deterministic import DeterministicBackend
from resource_node.scoring import (
    Position,
    Post,
    Sampling,
    Scored,
    Thresholds,
    detect_method,
    judge,
    score,
    spread,
)

DEFAULT_RESULTS = 240
TIMEOUT_S = 120.0
# the chat template of SmolLM2 as llama.cpp renders one user message (its default system one)
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
TEMPLATE = (
    "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n"
    "<|im_start|>assistant\n"
)
# what llama.cpp's server applies when a request does not say (its chat defaults)
SERVER_TOP_K = 40
SERVER_MIN_P = 0.05
TEMPERATURES = (0.0, 0.7, 1.0)
TOP_PS = (0.9, 1.0)
MAX_TOKENS = (32, 48, 64, 96)
Row = tuple[str, str, Sampling, Scored]  # kind, prompt, sampling, scored
FAULTS = ("other", "truncated", "deterministic", "marker", "swapped")

TOPICS = (
    "rivers", "the moon", "bread", "volcanoes", "chess", "bees", "the ocean", "trains",
    "libraries", "winter", "coffee", "electricity", "forests", "the internet", "music",
    "mountains", "cats", "gardening", "the sun", "bicycles",
)  # fmt: skip
FORMS = (
    "Write a short poem about {}.",
    "Explain {} to a child in a few sentences.",
    "Give three facts about {}.",
    "What is the history of {}?",
    "Write a one-paragraph story about {}.",
)


def prompts(count: int) -> list[str]:
    """`count` distinct prompts (up to len(TOPICS) * len(FORMS))."""
    every = [form.format(topic) for form in FORMS for topic in TOPICS]
    random.Random(7).shuffle(every)
    return every[: max(1, min(count, len(every)))]


def render(prompt: str) -> str:
    return TEMPLATE.format(system=SYSTEM, prompt=prompt)


def make_post(session: aiohttp.ClientSession, base_url: str) -> Post:
    base = base_url.rstrip("/")
    if base.endswith("/v1"):
        base = base[:-3]

    async def post(path: str, body: dict[str, Any]) -> Any:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        try:
            async with session.post(base + path, json=body, timeout=timeout) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise BackendError(f"POST {path}: HTTP {resp.status}: {raw[:200]!r}")
        except TimeoutError as exc:
            raise BackendError(f"POST {path}: no answer within {TIMEOUT_S:g} s") from exc
        except aiohttp.ClientError as exc:
            raise BackendError(f"POST {path} failed: {exc!r}") from exc
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise BackendError(f"POST {path}: the answer is not JSON") from exc

    return post


def swap_words(text: str, rng: random.Random) -> str:
    """`text` with three pairs of words (not next to each other) swapped."""
    words = text.split(" ")
    if len(words) < 4:
        return " ".join(reversed(words)) + " x"
    for _ in range(3):
        i, j = rng.sample(range(len(words)), 2)
        words[i], words[j] = words[j], words[i]
    swapped = " ".join(words)
    return swapped if swapped != text else text + " swapped"


async def generate(
    post: Post,
    model: str | None,
    prompt: str,
    sampling: Sampling,
    seed: int,
    repeat_penalty: float | None,
) -> tuple[str, int, float]:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": prompt}],
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "seed": seed,
    }
    if repeat_penalty is not None:
        body["repeat_penalty"] = repeat_penalty
    if model:
        body["model"] = model
    start = time.perf_counter()
    answer = await post("/v1/chat/completions", body)
    elapsed = time.perf_counter() - start
    text = answer["choices"][0]["message"]["content"]
    tokens = int(answer.get("usage", {}).get("completion_tokens", 0))
    return str(text), tokens, elapsed


def _summary(judgements: list[dict[str, Any]]) -> dict[str, Any]:
    total = len(judgements)
    accepted = sum(1 for j in judgements if j["valid"])
    return {"count": total, "accepted": accepted, "rejected": total - accepted}


async def rates(
    base_url: str,
    verify_url: str,
    *,
    results: int,
    model: str | None,
    method: str | None,
    thresholds: Thresholds,
    repeat_penalty: float | None = 1.0,
    dump: str | None = None,
    first: int = 0,
) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        gen_post = make_post(session, base_url)
        ver_post = make_post(session, verify_url)
        if method is None:
            method = await detect_method(ver_post, model=model, prompt=render("Say hello."))
        texts = prompts(max(50, results // 4))
        honest: list[dict[str, Any]] = []
        gen_seconds = 0.0
        gen_tokens = 0
        score_seconds = 0.0
        score_tokens = 0
        for i in range(first, first + results):
            prompt = texts[i % len(texts)]
            sampling = Sampling(
                temperature=TEMPERATURES[i % 3],
                top_p=TOP_PS[(i // 3) % 2],
                top_k=SERVER_TOP_K,
                min_p=SERVER_MIN_P,
                max_tokens=MAX_TOKENS[(i // 6) % len(MAX_TOKENS)],
            )
            seed = 1000 + i
            text, tokens, elapsed = await generate(
                gen_post, model, prompt, sampling, seed, repeat_penalty
            )
            gen_seconds += elapsed
            gen_tokens += tokens
            start = time.perf_counter()
            scored = await score(
                ver_post, model=model, prompt=render(prompt), completion=text, method=method
            )
            score_seconds += time.perf_counter() - start
            score_tokens += len(scored.positions)
            honest.append(
                {"prompt": prompt, "sampling": sampling, "seed": seed, "text": text, "s": scored}
            )
        rng = random.Random(11)
        deterministic = DeterministicBackend()
        rows = [("honest", h["prompt"], h["sampling"], h["s"]) for h in honest]
        for i, h in enumerate(honest):
            kind = FAULTS[i % len(FAULTS)]
            text = h["text"]
            if kind == "other":
                others = [o for o in honest if o["prompt"] != h["prompt"]]
                text = others[i % len(others)]["text"]
            elif kind == "truncated":
                text = text[: len(text) // 2]
            elif kind == "deterministic":
                request = InferenceRequest(
                    model=model, prompts=h["prompt"], seed=h["seed"], max_tokens=32
                )
                text = await deterministic.infer(request)
            elif kind == "marker":
                text = text + " [wrong]"
            else:
                text = swap_words(text, rng)
            if text == h["text"]:
                continue
            scored = await score(
                ver_post, model=model, prompt=render(h["prompt"]), completion=text, method=method
            )
            rows.append((kind, h["prompt"], h["sampling"], scored))
    cost = {
        "generationSecondsPerToken": gen_seconds / max(1, gen_tokens),
        "scoringSecondsPerToken": score_seconds / max(1, score_tokens),
        "generatedTokens": gen_tokens,
        "scoredTokens": score_tokens,
    }
    if dump:
        document = {
            "method": method,
            "cost": cost,
            "rows": [
                {"kind": k, "prompt": p, "sampling": asdict(sm), "scored": asdict(sc)}
                for k, p, sm, sc in rows
            ],
        }
        with open(dump, "w", encoding="utf-8") as out:
            json.dump(document, out)
    return report(rows, thresholds, method, cost)


def load_dump(path: str) -> tuple[list[Row], str, dict[str, Any]]:
    """The rows, method and cost a `--dump` file holds."""
    with open(path, encoding="utf-8") as src:
        document = json.load(src)
    rows: list[Row] = []
    for r in document["rows"]:
        sm = r["sampling"]
        sampling = Sampling(**{**sm, "stop": tuple(sm["stop"])})
        sc = r["scored"]
        positions = tuple(
            Position(p["token"], p["logprob"], tuple((t, v) for t, v in p["top"]))
            for p in sc["positions"]
        )
        end = None if sc["end"] is None else tuple((t, v) for t, v in sc["end"])
        rows.append((r["kind"], r["prompt"], sampling, Scored(positions, end, sc["method"])))
    return rows, document["method"], document["cost"]


def report(
    rows: list[Row], thresholds: Thresholds, method: str, cost: dict[str, Any]
) -> dict[str, Any]:
    """The rates of `rows` judged under `thresholds`."""
    report_honest = [_record(p, sc, sm, thresholds) for k, p, sm, sc in rows if k == "honest"]
    faulty: dict[str, list[dict[str, Any]]] = {kind: [] for kind in FAULTS}
    for k, p, sm, sc in rows:
        if k != "honest":
            faulty[k].append(_record(p, sc, sm, thresholds))
    honest_out = _summary(report_honest)
    return {
        "method": method,
        "thresholds": asdict(thresholds),
        "prompts": len({r["prompt"] for r in report_honest}),
        "honest": {
            **honest_out,
            "falseRejectRate": honest_out["rejected"] / max(1, honest_out["count"]),
            "rejectedReasons": [r["reason"] for r in report_honest if not r["valid"]][:10],
            "maxOutside": max((r["outside"] for r in report_honest), default=0),
            "outsideHistogram": _histogram([r["outside"] for r in report_honest]),
            "worstDeficit": max((r["deficit"] for r in report_honest), default=0.0),
            "worstDeficitOverAllowed": max((r["ratio"] for r in report_honest), default=0.0),
            "endings": _histogram([r["ending"] for r in report_honest]),
        },
        "faulty": {
            kind: {
                **_summary(rs),
                "falseAcceptRate": sum(1 for r in rs if r["valid"]) / max(1, len(rs)),
                "acceptedExamples": [r["text"][:80] for r in rs if r["valid"]][:3],
            }
            for kind, rs in faulty.items()
        },
        "cost": cost,
    }


def _histogram(values: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items()))


def _record(
    prompt: str, scored: Scored, sampling: Sampling, thresholds: Thresholds
) -> dict[str, Any]:
    j = judge(scored, sampling, thresholds)
    deficit = j.expected_logprob - j.mean_logprob
    n = max(1, j.tokens)
    base = thresholds.mean_tolerance + thresholds.z * spread(scored, sampling, thresholds) / n
    return {
        "valid": j.valid,
        "reason": j.reason,
        "outside": j.outside,
        "ending": j.ending,
        "ratio": deficit / base if base > 0 else deficit,
        "deficit": deficit,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "text": "".join(p.token for p in scored.positions),
        "prompt": prompt,
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.llm_rates --base-url URL [...]`: the report as JSON on stdout."""
    parser = argparse.ArgumentParser(prog="python -m bench.llm_rates", description=__doc__)
    parser.add_argument("--base-url", required=True, help="the generating server")
    parser.add_argument("--verify-url", help="the verifying server (default: the same)")
    parser.add_argument("--results", type=int, default=DEFAULT_RESULTS, metavar="N")
    parser.add_argument("--first", type=int, default=0, help="the index of the first result")
    parser.add_argument("--model", default=None)
    parser.add_argument("--method", choices=("echo", "echo-shifted", "stepwise"), default=None)
    parser.add_argument("--json", metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--dump", metavar="FILE", help="write every scored result to FILE")
    parser.add_argument(
        "--rejudge", metavar="DUMP", help="judge the results of a --dump file again, offline"
    )
    parser.add_argument(
        "--repeat-penalty",
        type=float,
        default=1.0,
        help="sent with each generation (llama.cpp's own default is 1.1); negative: not sent",
    )
    args = parser.parse_args(argv)
    if args.rejudge:
        rows, method, cost = load_dump(args.rejudge)
        document = report(rows, Thresholds(), method, cost)
    else:
        document = asyncio.run(
            rates(
                args.base_url,
                args.verify_url or args.base_url,
                results=args.results,
                model=args.model,
                method=args.method,
                thresholds=Thresholds(),
                repeat_penalty=None if args.repeat_penalty < 0 else args.repeat_penalty,
                dump=args.dump,
                first=args.first,
            )
        )
    text = json.dumps(document, indent=2) + "\n"
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            out.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
