"""A hypothesis state machine: a resource node's submission log on disk (its file and its
journal, resource_node.state) against the same log kept in memory only.

The steps are the log's changes, the rewrite of its file, and three kinds of crash, each
followed by reading the log back from the directory: a kill (the process stops between two
changes), a kill between the rewrite of the file and the emptying of the journal (the journal
is then replayed over a file that already holds it), and a kill in the middle of a journal
line (a line cut short). After every step the log read back equals the one in memory.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from resource_node.state import (
    RESULT_OUTCOMES,
    SubmissionLog,
    journal_path,
    state_path,
    write_atomically,
)
from rpc.client import Wallet

NODE = Wallet.dev(200)
TASKS = [f"0x{i:064x}" for i in range(12)]
SUBMITTERS = [Wallet.dev(201 + i).address for i in range(3)]
MAX_TASKS = 8  # fewer than TASKS: the oldest are forgotten

tasks = st.sampled_from(TASKS)
outcomes = st.sampled_from(RESULT_OUTCOMES)


class SubmissionLogOnDisk(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="inferchain-state-"))
        self.path = state_path(self.dir, NODE.address)
        self.disk = SubmissionLog(NODE.address, self.path, max_tasks=MAX_TASKS)
        self.memory = SubmissionLog(NODE.address, None, max_tasks=MAX_TASKS)

    def teardown(self) -> None:
        self.disk.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _both(self, change: str, *args: object) -> None:
        getattr(self.disk, change)(*args)
        getattr(self.memory, change)(*args)

    def _read_back(self) -> None:
        self.disk.close()
        self.disk = SubmissionLog.load(NODE.address, self.path, max_tasks=MAX_TASKS)

    @rule(task=tasks, outcome=outcomes, height=st.none() | st.integers(0, 50))
    def result(self, task: str, outcome: str, height: int | None) -> None:
        self._both("record_result", task, outcome, height)

    @rule(task=tasks, submitter=st.sampled_from(SUBMITTERS), valid=st.booleans(), o=outcomes)
    def verdict(self, task: str, submitter: str, valid: bool, o: str) -> None:
        self._both("record_verdict", task, submitter, valid, o)

    @rule(epoch=st.integers(0, 2**64 - 1))
    def secrets_epoch(self, epoch: int) -> None:
        self._both("record_secrets_epoch", epoch)

    @rule(genesis=st.sampled_from(["0x" + "01" * 32, "0x" + "02" * 32]))
    def genesis(self, genesis: str) -> None:
        self._both("record_genesis", genesis)

    @rule()
    def reset(self) -> None:
        self._both("reset", "0x" + "03" * 32)

    @rule()
    def rewrite_the_file(self) -> None:
        self.disk.save()

    @rule()
    def killed(self) -> None:
        self._read_back()

    @rule()
    def killed_after_the_file_before_the_journal_is_emptied(self) -> None:
        write_atomically(self.path, orjson.dumps(self.disk.to_json()))
        self._read_back()

    @rule(cut=st.binary(min_size=1, max_size=30).filter(lambda b: b"\n" not in b))
    def killed_in_the_middle_of_a_line(self, cut: bytes) -> None:
        self.disk.close()
        with journal_path(self.path).open("ab") as journal:
            journal.write(cut)
        self._read_back()

    @invariant()
    def what_is_read_back_is_what_was_recorded(self) -> None:
        again = SubmissionLog.load(NODE.address, self.path, max_tasks=MAX_TASKS)
        assert again.to_json() == self.memory.to_json()
        again.close()


SubmissionLogOnDisk.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_submission_log_on_disk = SubmissionLogOnDisk.TestCase
