"""The simulator under imperfect verification (sim.verification): the exact model unchanged at
rate 0, verdict errors at their rates and reproducible, the faults of real-model networks as
wrong results, the copier at temperature 0, and honest work still out-earning every faulty
behaviour at the measured rates (placeholders FR 0.01, FA 0.02) but not at FR 0.5.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.protocol import crypto
from chain.protocol.types import ResultStatus
from sim import cli, matrix, report
from sim.engine import Outcome, simulate
from sim.population import Group, Population, PopulationError, population_from_json
from sim.verification import ANY_FAULT, ErrorRates, Verification, uniform

MEASURED = ErrorRates.of(0.01, {ANY_FAULT: 0.02})

SMALL = Population(
    (
        Group("honest", 9),
        Group("wrong", 1, p=0.2),
        Group("lazy", 1),
        Group("copying", 1),
        Group("silent", 1),
        Group("other-prompt", 1),
        Group("truncated", 1),
        Group("other-model", 1),
        Group("sybil-pair", 1),
        Group("whale", 1, 4_000),
    ),
    tasks=80,
    seed=1,
    params={"canaryRateBps": matrix.canary_rate_bps(MEASURED)},
)


def net_per_task(outcome: Outcome) -> dict[str, float]:
    return {row.behaviour: row.net_per_task for row in report.behaviour_rows(outcome)}


def losers(outcome: Outcome) -> list[str]:
    """The behaviours that earn at least what the honest nodes earn per task."""
    nets = net_per_task(outcome)
    honest = nets.pop("honest")
    return [behaviour for behaviour, value in nets.items() if value >= honest]


def test_rates_of_zero_are_the_exact_model() -> None:
    exact = simulate(SMALL)
    zero = simulate(SMALL.with_errors(ErrorRates.of(0.0, {ANY_FAULT: 0.0, "truncated": 0.0})))
    assert report.summary_json(zero) == report.summary_json(exact)
    assert exact.false_rejects == exact.false_accepts == 0


def test_honest_work_out_earns_every_faulty_behaviour_at_the_measured_rates() -> None:
    outcome = simulate(SMALL.with_errors(MEASURED))
    assert outcome.false_rejects > 0 and outcome.false_accepts > 0  # the errors were drawn
    assert losers(outcome) == []
    # a verification that rejected half the right results would not keep it
    broken = simulate(SMALL.with_errors(ErrorRates.of(0.5, {ANY_FAULT: 0.02})))
    assert losers(broken) != []


@settings(max_examples=20, deadline=None)
@given(
    false_reject=st.floats(0.05, 0.95),
    false_accept=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**32),
)
def test_verdict_errors_come_at_their_rates(
    false_reject: float, false_accept: float, seed: int
) -> None:
    rates = ErrorRates.of(false_reject, {ANY_FAULT: 0.0, "truncated": false_accept})
    verification = Verification(rates, seed)
    n = 2_000
    verifier, submitter = crypto.address_of_private_key(b"\x01" * 32), "0x" + "22" * 20
    tasks = [crypto.keccak(i.to_bytes(4, "big")) for i in range(n)]
    for task in tasks:
        verification.submitted(task, submitter, "truncated", None)
    rejected = sum(not verification.verdict(t, verifier, submitter, True) for t in tasks)
    accepted = sum(verification.verdict(t, verifier, submitter, False) for t in tasks)
    for count, p in ((rejected, false_reject), (accepted, false_accept)):
        assert abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p)), (count, n * p)
    assert (verification.false_rejects, verification.false_accepts) == (rejected, accepted)
    # another kind's rate (0 here) and a behaviour's own rate apply to its results
    verification.submitted(tasks[0], verifier, "copy", None)
    assert not any(verification.verdict(tasks[0], submitter, verifier, False) for _ in range(3))
    verification.submitted(tasks[1], verifier, "truncated", 1.0)
    assert verification.verdict(tasks[1], submitter, verifier, False)
    # the same draws for the same (seed, task, verifier, submitter), others for another seed
    again = [uniform(seed, t, verifier, submitter) for t in tasks[:50]]
    assert again == [uniform(seed, t, verifier, submitter) for t in tasks[:50]]
    assert again != [uniform(seed + 1, t, verifier, submitter) for t in tasks[:50]]


@pytest.mark.parametrize("fault", ["other-prompt", "truncated", "other-model"])
def test_a_real_model_fault_is_a_wrong_result_passing_at_its_own_rate(fault: str) -> None:
    groups = (Group("honest", 6), Group(fault, 2))
    exact = simulate(Population(groups, tasks=40, seed=2))
    for outcome in (exact,):
        faulty = {m.address for m in outcome.members if m.label == fault}
        statuses = [
            e.status
            for t in outcome.tasks
            for e in t.execution_info
            if e.resource_node in faulty and e.forced_error is False
        ]
        assert statuses and all(s == ResultStatus.REJECTED for s in statuses)
    # every honest verdict on its results passes at FA 1 of its kind, none at FA 1 of others
    own = simulate(Population(groups, tasks=40, seed=2, errors=ErrorRates.of(0, {fault: 1.0})))
    other = simulate(Population(groups, tasks=40, seed=2, errors=ErrorRates.of(0, {"copy": 1.0})))
    assert own.false_accepts > 0 and other.false_accepts == 0
    assert net_per_task(own)[fault] > net_per_task(exact)[fault]


def copier_population(behaviour: str, min_temperature: float) -> Population:
    return Population(
        (Group("honest", 8), Group(behaviour, 2)),
        tasks=60,
        seed=4,
        temperature=0.0,
        min_temperature=min_temperature,
    )


def test_a_copier_at_temperature_zero_earns_as_an_honest_node_until_nodes_raise_it() -> None:
    free = simulate(copier_population("late-copying", 0.0))
    copier = {m.address for m in free.members if m.label == "late-copying"}
    copies = [
        e
        for t in free.tasks
        for e in t.execution_info
        if e.resource_node in copier and e.forced_error is False
    ]
    assert len(copies) > 10
    assert all(e.status == ResultStatus.VERIFIED for e in copies)  # right without computing
    nets = net_per_task(free)
    assert nets["late-copying"] > 0
    assert not any(free.ledger.slashed.get(a, 0) for a in copier)
    slashes = [s for t in free.tasks if t.settlement for s in t.settlement.slashed]
    assert not any(s.reason == "lazy" for s in slashes)  # no honest verifier caught out
    # tasks of more than one slot at temperature 0.5: every copy is a wrong result again
    raised = simulate(copier_population("late-copying", 0.5))
    copier = {m.address for m in raised.members if m.label == "late-copying"}
    copies = [e for t in raised.tasks for e in t.execution_info if e.resource_node in copier]
    assert copies and all(e.status == ResultStatus.REJECTED for e in copies)
    assert net_per_task(raised)["late-copying"] < 0 < net_per_task(raised)["honest"]
    # and a single-slot task is left at the temperature it names (nobody could copy it)
    single = simulate(
        Population(
            (Group("honest", 4),),
            tasks=8,
            seed=4,
            target_count=1,
            temperature=0.0,
            min_temperature=0.5,
        )
    )
    assert all(t.status == "verified" for t in single.tasks)


def test_the_imperfect_matrix_keeps_honest_work_ahead_at_the_measured_rates() -> None:
    rows = ("honest", "lazy", "truncated", "late-copying, t=0")
    results = matrix.run_imperfect(MEASURED, tasks=60, rows=rows)
    assert {(r.row, r.level) for r in results} == {
        (row, level) for row in rows for level, _ in matrix.RATE_FACTORS
    }
    for result in results:
        if result.level != "5x measured" and result.row not in matrix.FREE_RIDERS:
            assert result.honest_wins, (result.row, result.level, result.bad, result.honest)
    fives = next(r for r in results if r.level == "5x measured" and r.row == "honest")
    assert fives.rates == ErrorRates.of(0.05, {ANY_FAULT: 0.1})


def test_error_rates_from_json_and_flags(tmp_path: Path) -> None:
    doc = {
        "nodes": [
            {"behaviour": "honest", "count": 3},
            {"behaviour": "truncated", "falseAccept": 0.3},
        ],
        "falseReject": 0.01,
        "falseAccept": {"*": 0.02, "copy": 0.05},
        "temperature": 0,
        "minTemperature": 0.5,
    }
    population = population_from_json(doc)
    assert population.errors == ErrorRates.of(0.01, {"*": 0.02, "copy": 0.05})
    assert population.groups[1].false_accept == 0.3
    assert (population.temperature, population.min_temperature) == (0.0, 0.5)
    assert population_from_json(population.to_json()) == population
    for bad in ({"falseReject": 2}, {"falseAccept": {"late": 0.1}}, {"temperature": -1}):
        with pytest.raises(PopulationError):
            population_from_json({"nodes": doc["nodes"], **bad})
    spec = tmp_path / "population.json"
    spec.write_text(json.dumps({**doc, "tasks": 8}))
    args = cli.parse_args(
        [
            "simulate",
            "--population",
            str(spec),
            "--false-reject",
            "0.03",
            "--false-accept",
            "0.04",
            "--false-accept",
            "truncated=0.06",
        ]
    )
    flagged = cli.population_of(args)
    assert flagged.errors == ErrorRates.of(0.03, {"*": 0.04, "copy": 0.05, "truncated": 0.06})
    out = tmp_path / "out"
    assert cli.main(["simulate", "--population", str(spec), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["population"]["falseAccept"] == {"*": 0.02, "copy": 0.05}
    assert cli.main(["simulate", "--nodes", "4*honest", "--false-accept", "x=0.1"]) == 2


@pytest.mark.parametrize(("canary_bps", "lazy_wins"), [(100, True), (1_500, False)])
def test_forced_errors_must_outnumber_false_rejects(canary_bps: int, lazy_wins: bool) -> None:
    """An honest verifier loses about FR of its verdicts to false rejects, a lazy one
    canaryRateBps of them to forced errors: at FR 0.05, 1% of forced errors pays laziness,
    3 times FR does not."""
    rates = ErrorRates.of(0.05, {ANY_FAULT: 0.1})
    population = Population(
        (Group("honest", 10), Group("lazy", 2)),
        tasks=120,
        seed=1,
        params={"canaryRateBps": canary_bps},
        errors=rates,
    )
    if not lazy_wins:
        assert canary_bps == matrix.canary_rate_bps(rates)  # the matrix's rule for its network
    nets = net_per_task(simulate(population))
    assert (nets["lazy"] > nets["honest"]) == lazy_wins, nets
