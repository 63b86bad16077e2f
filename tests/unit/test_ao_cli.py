"""`python -m ao`'s options: each bad one exits 2 with a message naming it, before anything
is served; the unit's and the bridge's keys are written once and kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from ao.__main__ import load_bridge_wallet, load_wallet, main, parse_args
from rpc.client import Wallet


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--infer-price", "-1"], "--infer-price"),
        (["--armstrongs-per-credit", "0"], "--armstrongs-per-credit"),
        (["--target-count", "0"], "--target-count"),
        (["--router-model", " "], "--router-model"),
        (["--bridge-dev-index", "-1"], "--bridge-dev-index"),
        (["--bridge-key", "/nonexistent/key"], "--bridge-key"),
        (["--dev-index", "-1"], "--dev-index"),
        (["--port", "70000"], "--port"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    extra: list[str], message: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = ["--rpc", "http://127.0.0.1:1", "--data-dir", str(tmp_path / "unit"), *extra]
    assert main(args) == 2
    assert message in caplog.text


def test_an_rpc_that_is_not_http_exits_2(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["--rpc", "ftp://x", "--data-dir", str(tmp_path)]) == 2
    assert "--rpc" in caplog.text


def test_the_keys_of_the_first_start_are_kept(tmp_path: Path) -> None:
    first = parse_args(
        ["--rpc", "http://x", "--data-dir", str(tmp_path), "--bridge-dev-index", "3"]
    )
    assert load_wallet(first, tmp_path).address == Wallet.dev(9).address
    assert load_bridge_wallet(first, tmp_path).address == Wallet.dev(3).address
    later = parse_args(
        ["--rpc", "http://x", "--data-dir", str(tmp_path), "--bridge-dev-index", "5"]
    )
    assert load_bridge_wallet(later, tmp_path).address == Wallet.dev(3).address
    assert (tmp_path / "bridge.key").stat().st_mode & 0o777 == 0o600
