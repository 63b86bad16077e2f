"""The simulator over the chain's own rules: deterministic for a seed, the supply invariant
after every block, and the economic properties of PoS+W measured over simulated populations
(PROTOCOL 4.5, 4.6, 4.8, 4.13):

- a whale, at any stake below 2/3 of the assigned stake, gains nothing by lying or by
  colluding with a sender, and loses per lie at least 10 times what a lie earns it;
- a sybil pair's junk is accepted exactly when its partner is the one verifier assigned
  (verificationQuorum 1), at the rate the population gives that assignment;
- every bad behaviour earns strictly less per task than the honest nodes beside it, in every
  population of the default matrix (a reduced matrix here; the full one under long).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from chain.protocol import crypto, state
from chain.protocol.types import Account, ResultStatus
from sim import cli, matrix, report
from sim.engine import Outcome, Simulation, SupplyError, simulate
from sim.population import (
    BAD_BEHAVIOURS,
    Group,
    Population,
    PopulationError,
    parse_group,
    population_from_json,
)

LONG = os.environ.get("INFERCHAIN_LONG") == "1"

MIXED = Population(
    (
        Group("honest", 6),
        Group("wrong", 1, p=0.3),
        Group("lazy", 1),
        Group("copying", 1),
        Group("silent", 1),
        Group("sybil-pair", 1),
        Group("whale", 1, 8_000),
    ),
    tasks=60,
    seed=7,
    params={"canaryRateBps": 1000},
)


def net(outcome: Outcome, address: str) -> int:
    return outcome.ledger.earned.get(address, 0) - outcome.ledger.slashed.get(address, 0)


def test_a_run_is_deterministic_for_its_seed(tmp_path: Path) -> None:
    first = simulate(MIXED)
    second = simulate(MIXED)
    assert report.summary_json(first) == report.summary_json(second)
    report.write_run(first, tmp_path / "a")
    report.write_run(second, tmp_path / "b")
    for name in ("summary.json", "earnings.json"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    other = simulate(MIXED.with_seed(8))
    assert report.summary_json(other) != report.summary_json(first)


def test_the_supply_invariant_holds_after_every_block() -> None:
    sim = Simulation(MIXED)  # checks after every block; a SupplyError would stop the run
    outcome = sim.run()
    slashes = {s.reason for t in outcome.tasks for s in t.settlement.slashed if t.settlement}
    roles = {p.role for t in outcome.tasks for p in t.settlement.payouts if t.settlement}
    assert {"result", "verdict", "lazy"} <= slashes  # the run went through every path
    assert "canary" in roles
    assert outcome.ledger.jailed_at
    # and the check does fail on a base unit out of place
    address = outcome.members[0].address
    account = state.get_account(sim.store, address)
    changed = state.State(sim.store)
    state.put_account(changed, address, Account(account.balance + 1, account.stake, account.nonce))
    sim.store.apply(changed.writes())
    with pytest.raises(SupplyError):
        sim.check_invariant()


def whale_population(stake_multiple: int, honest: int, whale: str, seed: int) -> Population:
    groups = (Group("honest", honest), Group(whale, 1, stake_multiple * 2_000))
    return Population(groups, tasks=80, seed=seed, params={"canaryRateBps": 500})


def coalition_net(outcome: Outcome) -> int:
    """The whale's net and its colluding sender's spend (what it got back minus fees)."""
    whale = next(m for m in outcome.members if m.label == "whale")
    colluder = outcome.senders[-1]
    spent = 0
    for task in outcome.tasks:
        if task.sender == colluder and task.settlement is not None:
            spent += task.fee - task.settlement.refund
    return net(outcome, whale.address) - spent


@pytest.mark.parametrize("stake_multiple", [1, 5, 20])
def test_a_whale_below_two_thirds_gains_nothing_by_lying(stake_multiple: int) -> None:
    honest = 11  # 20x honest is 20/31 of the stake: below 2/3
    lying = simulate(whale_population(stake_multiple, honest, "whale", 3))
    truthful = Population(
        (Group("honest", honest), Group("honest", 1, stake_multiple * 2_000)),
        tasks=80,
        seed=3,
        params={"canaryRateBps": 500},
    )
    honest_run = simulate(truthful)
    whale = lying.members[-1]
    assert whale.label == "whale" and 3 * whale.stake < 2 * sum(m.stake for m in lying.members)
    lies = sum(
        (e.resource_node == whale.address)
        + sum(v.verifier == whale.address for v in e.verifications)
        for t in lying.tasks
        for e in t.execution_info
    )
    assert lies > 20
    earned = lying.ledger.earned.get(whale.address, 0)
    slashed = lying.ledger.slashed.get(whale.address, 0)
    assert slashed / lies >= 10 * earned / lies
    # the honest counterfactual: the same stake, computing and verifying (no colluder)
    honest_whale = honest_run.members[-1].address
    assert coalition_net(lying) < net(honest_run, honest_whale)
    assert net(lying, whale.address) < 0


def test_a_sybil_pair_wins_only_when_assigned_to_itself() -> None:
    honest = 4
    population = Population(
        (Group("honest", honest), Group("sybil-pair", 1)),
        tasks=400,
        seed=11,
        params={"verificationQuorum": 1, "minNodeStake": "1"},  # nobody is jailed
    )
    outcome = simulate(population)
    junk = next(m for m in outcome.members if m.role == "sybil-junk")
    voter = next(m for m in outcome.members if m.role == "sybil-voter")
    assert not outcome.ledger.jailed_at
    results = [
        (task, e)
        for task in outcome.tasks
        for e in task.execution_info
        if e.resource_node == junk.address
    ]
    assert len(results) > 100
    assigned_to_partner = 0
    for task, entry in results:
        paired = entry.rounds[0] == (voter.address,)
        assigned_to_partner += paired
        accepted = entry.status == ResultStatus.VERIFIED and entry.forced_error is False
        assert accepted == (paired and entry.forced_error is False), task.task_hash.hex()
        paid = task.settlement is not None and any(
            p.address == junk.address and p.role == "compute" for p in task.settlement.payouts
        )
        assert paid == accepted
    # every other node is a candidate for the junk node's result: the voter is first with
    # probability 1 / candidates
    p = 1 / (honest + 1)
    n = len(results)
    bound = 4 * math.sqrt(n * p * (1 - p))
    assert abs(assigned_to_partner - n * p) <= bound, (assigned_to_partner, n * p, bound)


def assert_honest_wins(result: matrix.CellResult) -> None:
    honest = result.net_per_task["honest"]
    bad = result.net_per_task[result.behaviour]
    assert bad < honest, (result.behaviour, result.share, bad, honest)


@pytest.mark.parametrize("behaviour", BAD_BEHAVIOURS)
def test_every_bad_behaviour_earns_less_than_honest_work(behaviour: str) -> None:
    (cell,) = matrix.default_cells(shares=(0.2,), behaviours=(behaviour,))[1:]
    assert_honest_wins(matrix.run_cell(cell))


@pytest.mark.long
@pytest.mark.skipif(not LONG, reason="the full default matrix: INFERCHAIN_LONG=1")
def test_every_bad_behaviour_earns_less_in_the_full_matrix() -> None:
    for result in matrix.run_matrix(matrix.default_cells()[1:]):
        assert_honest_wins(result)


def test_a_population_from_flags_equals_the_same_from_json() -> None:
    flags = [parse_group(t) for t in ["3*honest", "1*wrong:0.25", "1*whale@9000"]]
    doc = {
        "nodes": [
            {"behaviour": "honest", "count": 3},
            {"behaviour": "wrong:0.25"},
            {"behaviour": "whale", "stake": 9000},
        ]
    }
    assert tuple(flags) == population_from_json(doc).groups
    with pytest.raises(PopulationError):
        parse_group("2*greedy")
    with pytest.raises(PopulationError):
        population_from_json({"nodes": [{"behaviour": "honest"}]})  # one node cannot verify


def test_the_command_writes_the_table_the_figures_and_their_json(tmp_path: Path) -> None:
    spec = tmp_path / "population.json"
    spec.write_text(json.dumps({"nodes": [{"behaviour": "honest", "count": 4}], "tasks": 12}))
    out = tmp_path / "out"
    code = cli.main(
        ["simulate", "--population", str(spec), "--nodes", "3*honest", "1*lazy", "--out", str(out)]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == 12
    assert [b["behaviour"] for b in summary["behaviours"]] == ["honest", "lazy"]
    for name in ("earnings.svg", "earnings.png", "earnings.json"):
        assert (out / name).stat().st_size > 0
    assert cli.main(["simulate", "--nodes", "2*greedy", "--out", str(out)]) == 2


def test_each_agent_commits_the_chain_of_secrets_it_reveals_from() -> None:
    sim = Simulation(MIXED, secret_chain_length=64)
    heads = {n.address: n.secrets_head for n in sim.genesis.resource_nodes}
    for agent in sim.agents:
        assert heads[agent.address] == agent.secrets.head
        assert crypto.hash_steps(crypto.secrets_seed(agent.key, 0), 64) == agent.secrets.head
        for height in (1, 17, 64):
            assert crypto.hash_steps(agent.secrets.secret(height), height) == agent.secrets.head
