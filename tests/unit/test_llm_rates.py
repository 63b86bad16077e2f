"""bench.llm_rates without a server: the verdicts a node gives on recorded rows, the report's
counts, and a dump that judges the same once loaded again."""

from __future__ import annotations

from pathlib import Path

from bench import llm_rates, run
from resource_node.scoring import Position, Sampling, Scored, Thresholds

TOP = (("Hi", -0.2), (" there", -1.9), ("!", -3.0))
EOS_END = (("", -0.05), ("Hi", -3.5))
NO_EOS = (("Hi", -0.01), ("!", -6.0))
SAMPLING = Sampling(temperature=0.7, top_p=0.9, max_tokens=24)


def row(
    kind: str, tokens: list[str], own: str, end: tuple[tuple[str, float], ...]
) -> llm_rates.Row:
    values = dict(TOP)
    positions = tuple(Position(t, values.get(t, -12.0), TOP) for t in tokens)
    scored = Scored(positions, end, "echo")
    return llm_rates.Row(kind, 0, "stock->other", SAMPLING, scored, "".join(tokens), own)


def test_a_node_verdicts_fast_path_scoring_and_cut_short() -> None:
    th = Thresholds()
    same = row("honest", ["Hi", "Hi"], "HiHi", EOS_END)
    assert llm_rates.verdict(same, th).by == "identical"
    other = row("honest", ["Hi", "Hi"], "Hi there", EOS_END)
    v = llm_rates.verdict(other, th)
    assert v.valid and v.by == "scored"
    cut = row("truncated", ["Hi"], "Hi there, friend", EOS_END)
    v = llm_rates.verdict(cut, th)
    assert not v.valid and v.by == "cut short"
    # without its own output, the scoring rules alone accept the same cut text
    assert llm_rates.verdict(cut, th, fast_path=False, with_own=False).valid
    junk = row("deterministic", ["zz", "qq", "xx", "yy"], "Hi", EOS_END)
    v = llm_rates.verdict(junk, th)
    assert not v.valid and v.outside == 4


def test_the_report_counts_and_a_dump_judges_the_same(tmp_path: Path) -> None:
    rows = [
        row("honest", ["Hi", "Hi"], "HiHi", EOS_END),
        row("honest", ["Hi", "!"], "Hi there", EOS_END),
        row("truncated", ["Hi"], "Hi there, friend", EOS_END),
        row("other", ["Hi", " there"], "Hi!", EOS_END),
        row("deterministic", ["zz", "qq", "xx"], "Hi", NO_EOS),
    ]
    cost = {
        "method": {"stock": "echo", "other": "echo"},
        "generationSecondsPerToken": 0.1,
        "scoringSecondsPerToken": 0.3,
        "scoredTokens": 10,
    }
    report = llm_rates.report(rows, Thresholds(), cost)
    assert report["honest"]["falseReject"] == {"count": 2, "n": 0, "rate": 0.0}
    assert report["honest"]["identical"] == 1
    faulty = report["faulty"]["kinds"]
    assert faulty["truncated"]["falseAccept"]["n"] == 0
    assert faulty["truncated"]["byRule5"] == 1
    assert faulty["other"]["falseAccept"]["n"] == 1  # a plausible text: accepted
    assert faulty["deterministic"]["falseAccept"]["n"] == 0
    assert report["faulty"]["falseAccept"] == {"count": 3, "n": 1, "rate": 1 / 3}
    path = tmp_path / "dump.json"
    llm_rates.dump(rows, cost, str(path))
    loaded, loaded_cost = llm_rates.load(str(path))
    assert loaded == rows and loaded_cost == cost
    assert llm_rates.report(loaded, Thresholds(), loaded_cost) == report
    table = run.llm_table({"model": "m", "serverFlags": [], "rates": report})
    assert "| faulty (other), accepted | 1 | 1 of 1 (100.0%) |" in table
    assert "| every faulty result, accepted | 3 | 1 of 3 (33.3%) |" in table
    assert any("(3.0x)" in line for line in table)
