"""Every fenced code block of README.md, run as it is written, against real processes.

Each block is taken from README.md itself, its URLs pointed at this test's validator
(`http://127.0.0.1:8545` and `localhost:8545`), and then, by its language and by the HTML
comment just above it:

- `sh`: run with bash (`-euo pipefail`); it must exit 0 and no JSON-RPC answer it prints may
  be an error;
- `python`: run with this interpreter; it must exit 0, and a block that waits for its task
  (`wait_for_task`) must print the task decided, `verified`;
- `js`: run with node and the ethers of tests/js against a validator without dev mode (every
  signature is checked); the task it prints must be on chain with the fields it sent and its
  taskHash must be the EIP-712 digest of them;
- `<!-- run: until ready -->`: a command that starts a long-running program (`python -m rpc`,
  `python -m resource_node`), with its data directory moved into a temporary one and its ports
  0: it must print its ready line and stop cleanly on SIGTERM;
- `<!-- check: dry run ... -->`: `make` lines run as `make -n` (each option passed in ARGS must
  reach the command) and `pytest` lines with `--collect-only` (the paths and options exist);
- `<!-- not run: REASON -->`: skipped, and there may be at most MAX_NOT_RUN of those;
- `text`: not code (the layout).

Also: the EIP-712 types PROTOCOL 3 gives as JSON are those of the ethers.js vectors.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.protocol import crypto, wire
from chain.protocol.crypto import dev_private_key
from chain.protocol.genesis import DEV_MNEMONIC, VALIDATOR_KEY_OFFSET, dev_genesis
from chain.protocol.types import SubmitTask
from rpc.client import InferchainClient, Wallet
from testnet.commands import AO_READY, RESOURCE_NODE_READY, VALIDATOR_READY, ao_args
from testnet.process import Process
from tests.helpers import (
    JS_DIR,
    REPO,
    ResourceNodeProcess,
    ValidatorProcess,
    make_genesis,
    node_for,
    write_genesis,
)

pytestmark = pytest.mark.slow

README = REPO / "README.md"
PROTOCOL = REPO / "docs" / "PROTOCOL.md"
VECTORS = REPO / "tests" / "vectors" / "eip712.json"
README_URL = "http://127.0.0.1:8545"
README_HOST = "localhost:8545"
README_NODE_URL = "http://127.0.0.1:9100"
README_AO_URL = "http://127.0.0.1:8700"
LANGUAGES = ("sh", "python", "js", "text")
MAX_NOT_RUN = 2
RUN_TIMEOUT = 120.0
FENCE = re.compile(r"^```(\S*)\n(.*?)^```$", re.M | re.S)


@dataclass(frozen=True, slots=True)
class Block:
    """A fenced code block of README.md: its language, its code, the line it starts on and
    the HTML comment right above it ("" if none)."""

    language: str
    code: str
    line: int
    mark: str

    @property
    def name(self) -> str:
        return f"line{self.line}-{self.language}"


def parse_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, each with the HTML comment above it."""
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        mark = ""
        if before.endswith("-->"):
            mark = before[before.rindex("<!--") + 4 : -3].strip()
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(match.group(1), match.group(2), line, mark))
    return blocks


BLOCKS = parse_blocks(README.read_text(encoding="utf-8"))
CODE_BLOCKS = [block for block in BLOCKS if block.language != "text"]


def pointed_at(code: str, url: str, node_url: str | None = None, ao_url: str | None = None) -> str:
    """The block with the README's validator URL replaced by `url`, its resource node's URL
    (node 0 of `make testnet`) by `node_url` and its AO unit's by `ao_url`."""
    if node_url is not None:
        code = code.replace(README_NODE_URL, node_url)
    if ao_url is not None:
        code = code.replace(README_AO_URL, ao_url)
    return code.replace(README_URL, url).replace(README_HOST, url.removeprefix("http://"))


def commands_of(code: str) -> list[str]:
    """The shell commands of a block: continuation lines joined, comments and blanks gone."""
    joined = code.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(shlex.join(words))
    return commands


def run(args: list[str], *, cwd: Path = REPO, stdin: str | None = None) -> str:
    """Run a command that must exit 0 within RUN_TIMEOUT; its stdout."""
    done = subprocess.run(
        args,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert done.returncode == 0, (
        f"{shlex.join(args)} exited with {done.returncode}\n"
        f"stdout: {done.stdout}\nstderr: {done.stderr}"
    )
    assert "Traceback (most recent call last)" not in done.stderr, done.stderr
    return done.stdout


@dataclass(frozen=True, slots=True)
class DevChain:
    url: str  # the validator's
    node_url: str  # resource node 0's
    ao_url: str  # the AO unit's


@pytest.fixture(scope="module")
def dev_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevChain]:
    """The dev genesis (accounts unlocked, 200 ms blocks) on a validator process with its three
    resource nodes (as `make testnet` runs them), so a task is computed and each result verified
    by the two others (no self-vote; a registered node that never answers would hold a result
    undecided until its verify deadline): its URL."""
    root = tmp_path_factory.mktemp("readme")
    genesis_path = write_genesis(
        root / "genesis.json", make_genesis(block_time_ms=200, ao_aliases=True)
    )
    validator = ValidatorProcess(genesis_path, root / "validator")
    nodes: list[Process] = []
    try:
        url = validator.start()
        for i in range(3):
            nodes.append(
                ResourceNodeProcess(url, i, root / f"node-{i}", "--genesis", str(genesis_path))
            )
            nodes[-1].start()
        unit = Process("AO unit", ao_args(url, root / "ao"), root / "ao.log", ready_prefix=AO_READY)
        nodes.append(unit)  # closed with them
        unit.start()
        yield DevChain(url, nodes[0].url, unit.url)
    finally:
        for node in nodes:
            node.close()
        validator.close()


@pytest.fixture(scope="module")
def strict_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dev genesis without `dev` (no unlocked account: every call must be signed) on a
    validator process, its key given as a file: its URL."""
    root = tmp_path_factory.mktemp("strict")
    raw = dev_genesis()
    del raw["dev"]
    genesis_path = root / "genesis.json"
    genesis_path.write_text(json.dumps(raw), encoding="utf-8")
    key_path = root / "validator.key"
    key_path.write_text(dev_private_key(DEV_MNEMONIC, VALIDATOR_KEY_OFFSET).hex())
    validator = ValidatorProcess(genesis_path, root / "validator", "--validator-key", str(key_path))
    try:
        yield validator.start()
    finally:
        validator.close()


def node_for_js() -> str:
    """node, with ethers installed in tests/js; skips only when node cannot be had."""
    node = node_for("the JavaScript example")
    assert (JS_DIR / "node_modules" / "ethers").is_dir(), (
        "ethers is not installed in tests/js: `make test` does it, or `cd tests/js && npm ci`"
    )
    return node


def test_every_block_is_run_or_checked() -> None:
    assert CODE_BLOCKS, "README.md has no code block"
    not_run = []
    for block in BLOCKS:
        assert block.language in LANGUAGES, f"{block.name}: a block needs a language"
        if block.language == "text":
            assert not block.mark, f"{block.name}: text is not run"
            continue
        if block.mark.startswith("not run:"):
            assert block.mark.removeprefix("not run:").strip(), f"{block.name}: say why"
            not_run.append(block.name)
        else:
            assert block.mark in ("", "run: until ready") or block.mark.startswith(
                "check: dry run"
            ), f"{block.name}: unknown mark {block.mark!r}"
    assert len(not_run) <= MAX_NOT_RUN, f"too many blocks not run: {not_run}"
    languages = {block.language for block in CODE_BLOCKS}
    assert {"sh", "python", "js"} <= languages
    python = [block for block in CODE_BLOCKS if block.language == "python"]
    assert any("wait_for_task" in block.code for block in python)


@pytest.mark.parametrize("block", CODE_BLOCKS, ids=lambda block: block.name)
async def test_readme_block(block: Block, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if block.mark.startswith("not run:"):
        pytest.skip(block.mark)
    if block.mark.startswith("check: dry run"):
        dry_run(block, request)
    elif block.mark == "run: until ready":
        await until_ready(block, request.getfixturevalue("dev_chain"), tmp_path)
    elif block.language == "sh":
        run_shell(block, request.getfixturevalue("dev_chain"))
    elif block.language == "python":
        await run_python(block, request.getfixturevalue("dev_chain"))
    else:
        assert block.language == "js", block
        await run_js(block, request)


def dry_run(block: Block, request: pytest.FixtureRequest) -> None:
    for command in commands_of(block.code):
        words = shlex.split(command)
        env = {}
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            name, value = words.pop(0).split("=", 1)
            env[name] = value
        if words[0] == "make":
            out = run(["make", "-n", *words[1:]])
            for word in words[1:]:
                if word.startswith("ARGS="):
                    for option in shlex.split(word.removeprefix("ARGS=")):
                        assert option in out, f"{command}: {option} does not reach:\n{out}"
        else:
            assert words[1:3] == ["-m", "pytest"], f"{block.name}: no dry run for {command}"
            url = "http://127.0.0.1:1"  # never asked: collecting connects to nothing
            words = shlex.split(pointed_at(shlex.join(words), url))
            done = subprocess.run(
                [*words, "--collect-only", "-q", "-p", "no:cacheprovider"],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT,
                env={**os.environ, **env},
            )
            assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
            assert re.search(r"\d+ tests? collected|^\S+::", done.stdout, re.M), done.stdout


async def until_ready(block: Block, chain: DevChain, tmp_path: Path) -> None:
    """Start the block's one command with its data in `tmp_path` and its ports 0; it must get
    ready, answer GET /health, and stop cleanly on SIGTERM."""
    (command,) = commands_of(pointed_at(block.code, chain.url))
    command = command.replace(".data/", f"{tmp_path}/")
    command = re.sub(r"(--(?:http-)?port) \d+", r"\1 0", command)
    words = shlex.split(command)
    assert words[0] == ".venv/bin/python", f"{block.name}: {command}"
    ready = VALIDATOR_READY if words[1:3] == ["-m", "rpc"] else RESOURCE_NODE_READY
    process = Process(block.name, words[1:], tmp_path / "process.log", ready_prefix=ready)
    try:
        served = process.start()
        assert served.startswith("http://127.0.0.1:"), served
        # Once it answers, its signal handlers are installed: they come right after the
        # ready line, with nothing awaited in between.
        async with InferchainClient(served) as client:
            assert (await client.health())["status"] == "ok"
        assert process.terminate() == 0, process.log_path.read_text()
    finally:
        process.close()


def run_shell(block: Block, chain: DevChain) -> None:
    code = pointed_at(block.code, chain.url, chain.node_url, chain.ao_url)
    out = run(["bash", "-euo", "pipefail", "-c", code])
    assert out.strip(), f"{block.name} printed nothing"
    decoder, at = json.JSONDecoder(), 0
    while (start := out.find("{", at)) != -1:  # the answers curl printed, back to back
        answer, at = decoder.raw_decode(out, start)
        assert "error" not in answer, f"{block.name}: {answer}"


async def run_python(block: Block, chain: DevChain) -> None:
    code = pointed_at(block.code, chain.url, chain.node_url, chain.ao_url)
    out = run([sys.executable, "-c", code])
    assert out.strip(), f"{block.name} printed nothing"
    if "wait_for_task" in block.code:
        assert out.splitlines()[-1].startswith("verified at block "), out


async def run_js(block: Block, request: pytest.FixtureRequest) -> None:
    node = node_for_js()
    url = request.getfixturevalue("strict_chain")
    out = run([node, "--input-type=module"], cwd=JS_DIR, stdin=pointed_at(block.code, url))
    hashes = re.findall(r"^taskHash (0x[0-9a-f]{64})$", out, re.M)
    assert len(hashes) == 1, out
    async with InferchainClient(url) as client:
        task = await client.query_task(hashes[0])
        chain_id = await client.chain_id()
    # The fields sent, as the README's script wrote them, are the ones on chain.
    assert task["sender"] == Wallet.dev(0).address
    for field in ("prompts", "modelOptions"):
        assert f"{field}: '{task[field]}'" in block.code, (field, task[field])
    assert f'schema: "{task["schema"]}"' in block.code
    assert (task["targetCount"], task["feeParams"]) == (1, "")
    # And they are what was signed: the taskHash is their EIP-712 digest.
    fields = ("sender", "nonce", "schema", "targetCount", "prompts", "modelOptions", "SID")
    message = wire.message_from_params(
        SubmitTask, {**{field: task[field] for field in fields}, "feeParams": task["feeParams"]}
    )
    assert wire.hex0x(crypto.digest(message, chain_id)) == hashes[0]


def test_protocol_gives_the_types_of_the_ethers_vectors() -> None:
    """The EIP-712 types PROTOCOL 3 gives as JSON, field by field and in order, are those
    ethers.js signed the vectors with."""
    text = PROTOCOL.read_text(encoding="utf-8")
    section = text[text.index("## 3. Signed messages") : text.index("## 4. Task lifecycle")]
    (types_json,) = re.findall(r"^```json\n(.*?)^```$", section, re.M | re.S)
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))["types"]
    vectors.pop("EIP712Domain", None)
    assert json.loads(types_json) == vectors


CODE_LINE = st.text(st.characters(codec="utf-8", exclude_characters="\n\r`"), max_size=30)
PROSE = st.text(st.characters(codec="utf-8", exclude_characters="\n\r`<>"), max_size=30)
WRITTEN = st.lists(
    st.tuples(
        st.sampled_from(LANGUAGES),
        st.lists(CODE_LINE, max_size=4),
        st.sampled_from(["", "not run: starts a network", "run: until ready", "check: dry run"]),
        PROSE,
    ),
    max_size=5,
)


@given(WRITTEN)
def test_blocks_are_read_as_written(written: list[tuple[str, list[str], str, str]]) -> None:
    """Markdown of prose, marks and fenced blocks is read back block for block: language,
    code, line and the mark right above it (and only that one)."""
    parts, expected, line = ["# title\n"], [], 2
    for language, code_lines, mark, prose in written:
        parts.append(f"{prose}\n\n")
        line += 2
        if mark:
            parts.append(f"<!-- {mark} -->\n")
            line += 1
        code = "".join(f"{code_line}\n" for code_line in code_lines)
        parts.append(f"```{language}\n{code}```\n")
        expected.append(Block(language, code, line, mark))
        line += len(code_lines) + 2
    assert parse_blocks("".join(parts)) == expected
