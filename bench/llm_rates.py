"""False-reject and false-accept rates of the `scored` verification method (PROTOCOL 4.15),
through the `openai` backend as a resource node runs it, against two real OpenAI-compatible
servers (llama.cpp's, one with the stock flags and one with other threads and batch sizes).

Each result is generated on one server and verified on the other, half of them each way, both
ways at once. For every result the verifier does what a node does: it regenerates with the same
seed (the fast path: an identical output is valid at once; otherwise its own output is kept for
rule 5), then scores the submitted text and judges it (`OpenAIBackend.read_scores`,
`resource_node.scoring.judge`). The tasks are varied prompts at the node's sampling defaults
and around them: temperature 0.7, 1.0 and 0, top_p 0.9 and 1.0, max_tokens 24 to 64.

Faulty results, one kind after another, each judged against the honest task it stands for:
another prompt's honest output (fault `otherprompt`), the first half of the characters
(`truncate`), the deterministic backend's text, the output with " [wrong]" appended, and the
output with three pairs of words swapped.

The report gives the rates per kind, the verdicts by the fast path and by rule 5, the rates of
the scoring rules alone (no fast path, no own output), the honest margins the thresholds were
chosen from, and the verifier's cost: scoring seconds per token against generation's.

`python -m bench.llm_rates --base-url URL [--verify-url URL] [--results N] [--dump FILE]`, or
`--rejudge FILE` to judge a dump again under other thresholds (`--support-slack`, `--z`,
`--mean-tolerance`) without a server. The report is JSON on stdout (and in `--json FILE`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from resource_node.backends import InferenceRequest
from resource_node.backends.deterministic import DeterministicBackend
from resource_node.backends.openai_compat import OpenAIBackend
from resource_node.scoring import Position, Sampling, Scored, Thresholds, judge

DEFAULT_RESULTS = 240
TIMEOUT_S = 300.0
FAULTS = ("other", "truncated", "deterministic", "marker", "swapped")
# (temperature, top_p, max_tokens), in turn: the node's defaults first and most often
SAMPLINGS = (
    (0.7, 0.9, 24),
    (0.7, 0.9, 48),
    (1.0, 0.9, 32),
    (0.7, 1.0, 32),
    (0.7, 0.9, 64),
    (0.0, 1.0, 32),
)
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


def prompts() -> list[str]:
    """Every prompt of TOPICS and FORMS, in a fixed shuffled order."""
    every = [form.format(topic) for form in FORMS for topic in TOPICS]
    random.Random(7).shuffle(every)
    return every


def task(index: int) -> InferenceRequest:
    """The `index`-th honest task: its prompt, sampling options and seed."""
    texts = prompts()
    temperature, top_p, max_tokens = SAMPLINGS[index % len(SAMPLINGS)]
    options = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
    return InferenceRequest(
        model=None,
        prompts=json.dumps({"prompt": texts[index % len(texts)]}),
        model_options=options,
        seed=1000 + index,
        max_tokens=max_tokens,
    )


def swap_words(text: str, rng: random.Random) -> str:
    """`text` with three pairs of words swapped."""
    words = text.split(" ")
    if len(words) < 4:
        return " ".join(reversed(words)) + " x"
    for _ in range(3):
        i, j = rng.sample(range(len(words)), 2)
        words[i], words[j] = words[j], words[i]
    swapped = " ".join(words)
    return swapped if swapped != text else text + " swapped"


@dataclass(frozen=True, slots=True)
class Row:
    """One judged result: what it is, the task's sampling, the scores the verifier read, the
    submitted text and the verifier's own output for the same seed."""

    kind: str  # "honest" or one of FAULTS
    index: int
    way: str  # "stock->other" or "other->stock"
    sampling: Sampling
    scored: Scored
    completion: str
    own: str


@dataclass(frozen=True, slots=True)
class Verdict:
    valid: bool
    by: str  # "identical", "scored", "cut short"
    reason: str
    deficit_ratio: float  # the mean log-prob's deficit over what rule 3 allows
    outside: int


def verdict(row: Row, th: Thresholds, *, fast_path: bool = True, with_own: bool = True) -> Verdict:
    """The verdict a node gives on `row`: the fast path, then the scoring rules."""
    if fast_path and row.completion == row.own:
        return Verdict(True, "identical", "own output identical", 0.0, 0)
    own = row.own if with_own else None
    j = judge(row.scored, row.sampling, th, completion=row.completion, own=own)
    deficit = j.expected_logprob - j.mean_logprob
    ratio = deficit / j.allowed_deficit if j.allowed_deficit > 0 else deficit
    by = "cut short" if "goes on" in j.reason else "scored"
    return Verdict(j.valid, by, j.reason, ratio, j.outside)


class Pipeline:
    """Results generated on `gen` and verified on `ver`, as nodes on those servers do."""

    def __init__(self, gen: OpenAIBackend, ver: OpenAIBackend, way: str) -> None:
        self.gen, self.ver, self.way = gen, ver, way
        self.seconds = {"generation": 0.0, "scoring": 0.0}
        self.tokens = {"generation": 0, "scoring": 0}

    async def _score(self, request: InferenceRequest, text: str) -> tuple[Scored, Sampling]:
        start = time.perf_counter()
        scored, sampling = await self.ver.read_scores(request, text)
        self.seconds["scoring"] += time.perf_counter() - start
        self.tokens["scoring"] += len(scored.positions)
        return scored, sampling

    async def honest(self, index: int) -> Row:
        request = task(index)
        start = time.perf_counter()
        text = await self.gen.infer(request)
        self.seconds["generation"] += time.perf_counter() - start
        own = await self.ver.infer(request)
        scored, sampling = await self._score(request, text)
        # the generated tokens, as the verifier's tokenizer reads them back
        self.tokens["generation"] += len(scored.positions)
        return Row("honest", index, self.way, sampling, scored, text, own)

    async def faulty(self, row: Row, kind: str, other: str, rng: random.Random) -> Row | None:
        request = task(row.index)
        text = row.completion
        if kind == "other":
            text = other
        elif kind == "truncated":
            text = text[: len(text) // 2]
        elif kind == "deterministic":
            text = await DeterministicBackend().infer(request)
        elif kind == "marker":
            text = text + " [wrong]"
        else:
            text = swap_words(text, rng)
        if text == row.completion:
            return None
        scored, sampling = await self._score(request, text)
        return replace(row, kind=kind, scored=scored, sampling=sampling, completion=text)

    async def run(self, indices: list[int]) -> list[Row]:
        rows = [await self.honest(i) for i in indices]
        rng = random.Random(11 + len(self.way))
        faulty: list[Row] = []
        for n, row in enumerate(rows):
            kind = FAULTS[n % len(FAULTS)]
            # another prompt's output under the same sampling options, as the fault gives
            prompt = task(row.index).prompts
            others = [
                r for r in rows if task(r.index).prompts != prompt and r.sampling == row.sampling
            ]
            other = others[(n * 7) % len(others)].completion if others else row.completion + "x"
            made = await self.faulty(row, kind, other, rng)
            if made is not None:
                faulty.append(made)
        return rows + faulty


async def measure(
    base_url: str, verify_url: str, results: int, model: str | None, first: int = 0
) -> dict[str, Any]:
    """Rows and costs over `results` honest results (tasks `first` on), half generated on each
    server."""
    options = {"timeout": str(TIMEOUT_S), "max_tokens_cap": "256"}
    if model:
        options["model"] = model
    a = OpenAIBackend.from_options({**options, "base_url": base_url})
    b = OpenAIBackend.from_options({**options, "base_url": verify_url})
    try:
        await a.setup()
        await b.setup()
        ways = [Pipeline(a, b, "stock->other"), Pipeline(b, a, "other->stock")]
        every = range(first, first + results)
        halves = [list(every[0::2]), list(every[1::2])]
        done = await asyncio.gather(*(w.run(h) for w, h in zip(ways, halves, strict=True)))
    finally:
        await a.aclose()
        await b.aclose()
    seconds = {k: sum(w.seconds[k] for w in ways) for k in ("generation", "scoring")}
    tokens = {k: sum(w.tokens[k] for w in ways) for k in ("generation", "scoring")}
    cost = {
        "method": {"stock": a.scoring_method, "other": b.scoring_method},
        "generationSecondsPerToken": seconds["generation"] / max(1, tokens["generation"]),
        "scoringSecondsPerToken": seconds["scoring"] / max(1, tokens["scoring"]),
        "generatedTokens": tokens["generation"],
        "scoredTokens": tokens["scoring"],
    }
    return {"rows": [row for rows in done for row in rows], "cost": cost}


def _rate(verdicts: list[Verdict], valid: bool) -> dict[str, Any]:
    hits = sum(1 for v in verdicts if v.valid == valid)
    return {"count": len(verdicts), "n": hits, "rate": hits / max(1, len(verdicts))}


def _histogram(values: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items()))


def report(rows: list[Row], th: Thresholds, cost: dict[str, Any]) -> dict[str, Any]:
    """The rates of `rows` judged under `th`: as a node judges (fast path and rule 5) and by
    the scoring rules alone."""
    honest = [r for r in rows if r.kind == "honest"]
    node = [verdict(r, th) for r in honest]
    alone = [verdict(r, th, fast_path=False, with_own=False) for r in honest]
    faulty_rows = [r for r in rows if r.kind != "honest"]
    faulty = {kind: [(r, verdict(r, th)) for r in faulty_rows if r.kind == kind] for kind in FAULTS}
    every_faulty = [v for pairs in faulty.values() for _, v in pairs]
    return {
        "thresholds": asdict(th),
        "honest": {
            "falseReject": _rate(node, False),
            "identical": sum(1 for v in node if v.by == "identical"),
            "rejectedReasons": [v.reason for v in node if not v.valid][:10],
            "scoringAlone": {
                "falseReject": _rate(alone, False),
                "worstDeficitOverAllowed": max((v.deficit_ratio for v in alone), default=0.0),
                "outsideHistogram": _histogram([v.outside for v in alone]),
                "rejectedReasons": [v.reason for v in alone if not v.valid][:10],
            },
        },
        "faulty": {
            "falseAccept": _rate(every_faulty, True),
            "kinds": {
                kind: {
                    "falseAccept": _rate([v for _, v in pairs], True),
                    "byRule5": sum(1 for _, v in pairs if v.by == "cut short"),
                    "acceptedExamples": [r.completion[:80] for r, v in pairs if v.valid][:3],
                }
                for kind, pairs in faulty.items()
            },
        },
        "cost": cost,
    }


def dump(rows: list[Row], cost: dict[str, Any], path: str) -> None:
    document = {"cost": cost, "rows": [asdict(r) for r in rows]}
    with open(path, "w", encoding="utf-8") as out:
        json.dump(document, out)


def load(path: str) -> tuple[list[Row], dict[str, Any]]:
    """The rows and cost a `--dump` file holds."""
    with open(path, encoding="utf-8") as src:
        document = json.load(src)
    rows = []
    for r in document["rows"]:
        sm = r["sampling"]
        sc = r["scored"]
        positions = tuple(
            Position(p["token"], p["logprob"], tuple((t, v) for t, v in p["top"]))
            for p in sc["positions"]
        )
        end = None if sc["end"] is None else tuple((t, v) for t, v in sc["end"])
        rows.append(
            Row(
                r["kind"],
                r["index"],
                r["way"],
                Sampling(**{**sm, "stop": tuple(sm["stop"])}),
                Scored(positions, end, sc["method"]),
                r["completion"],
                r["own"],
            )
        )
    return rows, document["cost"]


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.llm_rates --base-url URL [...]`: the report as JSON on stdout."""
    parser = argparse.ArgumentParser(prog="python -m bench.llm_rates", description=__doc__)
    parser.add_argument("--base-url", help="one server (the stock flags)")
    parser.add_argument("--verify-url", help="the other server (default: the same)")
    parser.add_argument("--results", type=int, default=DEFAULT_RESULTS, metavar="N")
    parser.add_argument(
        "--first", type=int, default=0, help="the first task's index (another run's new seeds)"
    )
    parser.add_argument("--model", default=None)
    parser.add_argument("--json", metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--dump", metavar="FILE", help="write every scored result to FILE")
    parser.add_argument("--rejudge", metavar="DUMP", help="judge a --dump file again, offline")
    defaults = Thresholds()
    parser.add_argument("--support-slack", type=int, default=defaults.support_slack)
    parser.add_argument("--mean-tolerance", type=float, default=defaults.mean_tolerance)
    parser.add_argument("--z", type=float, default=defaults.z)
    args = parser.parse_args(argv)
    th = replace(
        defaults, support_slack=args.support_slack, mean_tolerance=args.mean_tolerance, z=args.z
    )
    if args.rejudge:
        rows, cost = load(args.rejudge)
    elif args.base_url:
        measured = asyncio.run(
            measure(
                args.base_url,
                args.verify_url or args.base_url,
                args.results,
                args.model,
                args.first,
            )
        )
        rows, cost = measured["rows"], measured["cost"]
        if args.dump:
            dump(rows, cost, args.dump)
    else:
        parser.error("--base-url or --rejudge is needed")
    text = json.dumps(report(rows, th, cost), indent=2) + "\n"
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            out.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
