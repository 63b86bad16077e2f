"""A damaged or foreign data directory is refused, never replaced (PROTOCOL 6.11).

A chain of a few blocks is built once by a real validator process, over two runs (so its
LevelDB has a table file as well as a log), and stopped. Each test damages a copy of it the
way a disk, an operator or a crash could, and starts `python -m rpc` on it: exit code 2, one
line that names the directory, no traceback, and every file byte for byte as it was. Then
`--repair`, adoption of a ledger from before the marker, a new chain in an empty directory,
and damage found while the validator runs.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chain.node.store import MARKER, MARKER_FORMAT
from chain.protocol.genesis import Genesis
from rpc.client import InferchainClient, RpcError, TransportError, Wallet
from testnet.commands import validator_args
from testnet.process import run_to_exit as run_args_to_exit
from tests.e2e.processes import REFUSAL_TIMEOUT, TRACEBACK, Exited, StartValidator, run_to_exit
from tests.helpers import ValidatorProcess, make_genesis, write_genesis

pytestmark = pytest.mark.slow

TX_TIMEOUT = 20.0
EXIT_TIMEOUT = 30.0
TRANSFERS_PER_RUN = 4
HEAD_KEYS = ("genesisHash", "height", "blockHash", "appHash")


@dataclass(frozen=True)
class BuiltChain:
    genesis: Genesis
    genesis_path: Path
    data_dir: Path  # never started again: tests copy it
    health: dict[str, Any]  # /health at the end


async def _transfers(url: str, count: int) -> dict[str, Any]:
    async with InferchainClient(url) as client:
        for _ in range(count):
            tx_hash = await client.transfer(Wallet.dev(0), Wallet.dev(1).address, 10**15)
            tx = await client.wait_for_tx(tx_hash, timeout=TX_TIMEOUT)
            assert tx["status"] == "committed", tx
        return await client.health()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltChain:
    """A dev chain of 2 * TRANSFERS_PER_RUN blocks, built over two runs of one validator."""
    root = tmp_path_factory.mktemp("built")
    genesis = make_genesis()
    genesis_path = write_genesis(root / "genesis.json", genesis)
    data_dir = root / "ledger"
    health: dict[str, Any] = {}
    for _run in range(2):
        process = ValidatorProcess(genesis_path, data_dir)
        try:
            process.start()
            health = asyncio.run(_transfers(process.url, TRANSFERS_PER_RUN))
            assert process.terminate() == 0
        finally:
            process.close()
    assert health["height"] == 2 * TRANSFERS_PER_RUN
    assert tables(data_dir), sorted(p.name for p in data_dir.iterdir())
    return BuiltChain(genesis, genesis_path, data_dir, health)


def tables(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.iterdir() if p.suffix in (".ldb", ".sst"))


def copy_of(built: BuiltChain, tmp_path: Path) -> Path:
    target = tmp_path / "ledger"
    shutil.copytree(built.data_dir, target)
    return target


def contents(path: Path) -> dict[str, bytes | None]:
    """Every file under `path` (None for a directory) by its relative path; a file itself."""
    if path.is_file():
        return {".": path.read_bytes()}
    out: dict[str, bytes | None] = {}
    for item in sorted(path.rglob("*")):
        out[str(item.relative_to(path))] = None if item.is_dir() else item.read_bytes()
    return out


def assert_refused(exited: Exited, data_dir: Path, *expected: str) -> None:
    """Exit code 2; one ERROR line, naming the directory and every `expected` text; no
    traceback; never listened."""
    assert exited.returncode == 2, exited
    assert TRACEBACK not in exited.stderr, exited.stderr
    assert "Listening on" not in exited.stdout, exited.stdout
    errors = [line for line in exited.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, exited.stderr
    assert str(data_dir) in errors[0], errors[0]
    for text in expected:
        assert text in errors[0], f"{text!r} is not in {errors[0]!r}"


# Damage: (what it does to a copy of the built ledger, a text the refusal must contain)


def remove(name: str) -> Callable[[Path], None]:
    def damage(data_dir: Path) -> None:
        (data_dir / name).unlink()

    return damage


def remove_manifest(data_dir: Path) -> None:
    (manifest,) = data_dir.glob("MANIFEST-*")
    manifest.unlink()


def garbage_in_table(data_dir: Path) -> None:
    """Overwrite the middle third of the first table file with random bytes."""
    table = tables(data_dir)[0]
    size = table.stat().st_size
    with table.open("r+b") as file:
        file.seek(size // 3)
        file.write(random.Random(7).randbytes(size // 3))


def truncate_table(data_dir: Path) -> None:
    table = tables(data_dir)[0]
    os.truncate(table, table.stat().st_size // 2)


def remove_table(data_dir: Path) -> None:
    tables(data_dir)[0].unlink()


def garbage_in_manifest(data_dir: Path) -> None:
    (manifest,) = data_dir.glob("MANIFEST-*")
    manifest.write_bytes(random.Random(8).randbytes(manifest.stat().st_size))


def foreign_files(data_dir: Path) -> None:
    """Not a ledger at all: files of something else, no marker."""
    shutil.rmtree(data_dir)
    data_dir.mkdir()
    rng = random.Random(9)
    for name in ("photo.jpg", "notes.txt", "000001.bin"):
        (data_dir / name).write_bytes(rng.randbytes(1000))
    (data_dir / "sub").mkdir()
    (data_dir / "sub" / "more.dat").write_bytes(rng.randbytes(100))


def file_instead_of_dir(data_dir: Path) -> None:
    shutil.rmtree(data_dir)
    data_dir.write_text("not a directory\n")


def marker_of_another_format(data_dir: Path) -> None:
    (data_dir / MARKER).write_text(f'{{"format": {MARKER_FORMAT + 1}}}\n')


# The default run takes one damage of each kind (a LevelDB file missing, a table spoiled, a
# directory that is no ledger); the others run with INFERCHAIN_LONG=1.
LONG_ONLY = (
    pytest.mark.long,
    pytest.mark.skipif(
        os.environ.get("INFERCHAIN_LONG") != "1", reason="more damages: INFERCHAIN_LONG=1"
    ),
)
DAMAGE = [
    pytest.param(remove("CURRENT"), "CURRENT missing", id="CURRENT-removed"),
    pytest.param(remove_manifest, "which CURRENT names", id="MANIFEST-removed", marks=LONG_ONLY),
    pytest.param(garbage_in_manifest, "damaged", id="MANIFEST-garbage", marks=LONG_ONLY),
    pytest.param(garbage_in_table, "Corruption", id="table-garbage"),
    pytest.param(truncate_table, ".ldb", id="table-truncated", marks=LONG_ONLY),
    pytest.param(remove_table, "missing", id="table-removed", marks=LONG_ONLY),
    pytest.param(foreign_files, "not an inferchain data directory", id="not-a-ledger"),
    pytest.param(file_instead_of_dir, "is a file", id="a-file"),
    pytest.param(
        marker_of_another_format,
        f"format {MARKER_FORMAT + 1}",
        id="marker-format",
        marks=LONG_ONLY,
    ),
]


@pytest.mark.parametrize(("damage", "expected"), DAMAGE)
def test_a_damaged_or_foreign_dir_is_refused_and_left_as_it_was(
    built: BuiltChain, tmp_path: Path, damage: Callable[[Path], None], expected: str
) -> None:
    data_dir = copy_of(built, tmp_path)
    damage(data_dir)
    before = contents(data_dir)

    exited = run_to_exit(built.genesis_path, data_dir)

    assert_refused(exited, data_dir, expected)
    assert contents(data_dir) == before


def test_the_refusal_says_how_to_repair(built: BuiltChain, tmp_path: Path) -> None:
    data_dir = copy_of(built, tmp_path)
    (data_dir / "CURRENT").unlink()

    exited = run_to_exit(built.genesis_path, data_dir)

    assert_refused(exited, data_dir, f"python -m rpc --data-dir {data_dir} --repair")


@pytest.fixture
def lock_holder() -> Iterator[Callable[[Path], None]]:
    """hold(data_dir): another process takes LevelDB's LOCK of `data_dir` (a POSIX lock, as
    LevelDB takes it) and keeps it until the test ends."""
    held: list[subprocess.Popen[str]] = []
    code = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )

    def hold(data_dir: Path) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(data_dir / "LOCK")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        held.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "held\n"

    yield hold
    for proc in held:
        proc.kill()
        proc.wait()


def test_a_dir_locked_by_another_process_is_refused_and_left_as_it_was(
    built: BuiltChain, tmp_path: Path, lock_holder: Callable[[Path], None]
) -> None:
    data_dir = copy_of(built, tmp_path)
    lock_holder(data_dir)
    before = contents(data_dir)

    exited = run_to_exit(built.genesis_path, data_dir)

    assert_refused(exited, data_dir, "in use", "LOCK")
    assert contents(data_dir) == before


def run_repair(built: BuiltChain, data_dir: Path) -> Exited:
    args = validator_args(built.genesis_path, data_dir, extra=["--repair"])
    exited = run_args_to_exit(args, REFUSAL_TIMEOUT)
    assert not exited.timed_out, exited
    return exited


async def head_of(url: str) -> dict[str, Any]:
    async with InferchainClient(url) as client:
        health = await client.health()
    return {key: health[key] for key in HEAD_KEYS}


def built_head(built: BuiltChain) -> dict[str, Any]:
    return {key: built.health[key] for key in HEAD_KEYS}


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(remove("CURRENT"), id="CURRENT-removed"),
        pytest.param(remove_manifest, id="MANIFEST-removed", marks=LONG_ONLY),
    ],
)
async def test_repair_then_start_reaches_the_same_head(
    built: BuiltChain, tmp_path: Path, validators: StartValidator, damage: Callable[[Path], None]
) -> None:
    data_dir = copy_of(built, tmp_path)
    damage(data_dir)

    repaired = run_repair(built, data_dir)

    assert repaired.returncode == 0, repaired
    assert TRACEBACK not in repaired.stderr, repaired.stderr
    assert f"repaired the ledger in {data_dir}" in repaired.stdout, repaired.stdout
    assert f"consistent at height {built.health['height']}" in repaired.stdout
    assert "Listening on" not in repaired.stdout
    node = validators(built.genesis_path, data_dir)
    assert await head_of(node.url) == built_head(built)
    after = await _transfers(node.url, 1)
    assert after["height"] == built.health["height"] + 1


def test_repair_that_loses_blocks_is_refused_and_so_is_the_start_after_it(
    built: BuiltChain, tmp_path: Path
) -> None:
    """Garbage in the table of the first run's blocks: LevelDB's repair salvages what it can
    read, which is not a consistent ledger; the repair says so, and a start is refused."""
    data_dir = copy_of(built, tmp_path)
    garbage_in_table(data_dir)

    repaired = run_repair(built, data_dir)

    assert_refused(repaired, data_dir, "LevelDB repaired the ledger", "still not consistent")
    assert "nothing was changed" not in repaired.stderr
    exited = run_to_exit(built.genesis_path, data_dir)
    assert_refused(exited, data_dir, "damaged")


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(foreign_files, id="not-a-ledger"),
        pytest.param(file_instead_of_dir, id="a-file", marks=LONG_ONLY),
    ],
)
def test_repair_of_what_is_not_a_ledger_is_refused_and_changes_nothing(
    built: BuiltChain, tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    data_dir = copy_of(built, tmp_path)
    damage(data_dir)
    before = contents(data_dir)

    exited = run_repair(built, data_dir)

    assert_refused(exited, data_dir)
    assert contents(data_dir) == before


def test_repair_of_a_dir_in_use_is_refused(
    built: BuiltChain, tmp_path: Path, lock_holder: Callable[[Path], None]
) -> None:
    data_dir = copy_of(built, tmp_path)
    (data_dir / "CURRENT").unlink()
    lock_holder(data_dir)
    before = contents(data_dir)

    exited = run_repair(built, data_dir)

    assert_refused(exited, data_dir, "in use")
    assert contents(data_dir) == before


async def test_a_ledger_from_before_the_marker_is_adopted(
    built: BuiltChain, tmp_path: Path, validators: StartValidator
) -> None:
    data_dir = copy_of(built, tmp_path)
    (data_dir / MARKER).unlink()

    node = validators(built.genesis_path, data_dir)

    assert await head_of(node.url) == built_head(built)
    assert (data_dir / MARKER).is_file()


def test_a_ledger_of_another_genesis_without_the_marker_is_refused(
    built: BuiltChain, tmp_path: Path
) -> None:
    data_dir = copy_of(built, tmp_path)
    (data_dir / MARKER).unlink()
    other = make_genesis(task_base_fee=2 * 10**15)
    other_path = write_genesis(tmp_path / "other.json", other)
    before = contents(data_dir)

    exited = run_to_exit(other_path, data_dir)

    assert exited.returncode == 2, exited
    assert TRACEBACK not in exited.stderr, exited.stderr
    assert built.health["genesisHash"] in exited.stderr, exited.stderr
    assert contents(data_dir) == before


@pytest.mark.parametrize("exists", [True, False], ids=["empty-dir", "missing-dir"])
async def test_an_empty_or_missing_dir_starts_a_new_chain(
    built: BuiltChain, tmp_path: Path, validators: StartValidator, exists: bool
) -> None:
    data_dir = tmp_path / "new"
    if exists:
        data_dir.mkdir()

    node = validators(built.genesis_path, data_dir)

    head = await head_of(node.url)
    assert head["height"] == 0
    assert head["genesisHash"] == built.health["genesisHash"]
    assert (data_dir / MARKER).is_file()


async def test_unknown_files_in_a_marked_dir_are_left_alone(
    built: BuiltChain, tmp_path: Path, validators: StartValidator
) -> None:
    data_dir = copy_of(built, tmp_path)
    (data_dir / "operator-notes.txt").write_bytes(b"kept by the operator\n")

    node = validators(built.genesis_path, data_dir)

    assert await head_of(node.url) == built_head(built)
    assert (data_dir / "operator-notes.txt").read_bytes() == b"kept by the operator\n"


async def test_damage_found_while_running_stops_with_exit_code_2(
    built: BuiltChain, tmp_path: Path, validators: StartValidator
) -> None:
    data_dir = copy_of(built, tmp_path)
    node = validators(built.genesis_path, data_dir)
    first_table = tables(data_dir)[0]  # the first run's blocks; the open read only a few keys
    # Its data blocks, in place: the front half of the file. Not its index and footer at the
    # end: once the table is open LevelDB parses them from its memory map of the file, which
    # an overwrite changes under it (a crash of the library, not a damage it can report).
    half = first_table.stat().st_size // 2
    with first_table.open("r+b") as table:
        table.write(random.Random(10).randbytes(half))

    async with InferchainClient(node.url) as client:
        # an error answer, or none: the validator may stop before its answer is written
        with pytest.raises((RpcError, TransportError, OSError)):
            await client.get_block(1)
    assert node.proc is not None
    code = await asyncio.to_thread(node.proc.wait, EXIT_TIMEOUT)

    log = node.log_path.read_text()
    assert code == 2, log
    assert TRACEBACK not in log, log
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1, log
    assert str(data_dir) in errors[0] and "found while running" in errors[0], errors[0]
