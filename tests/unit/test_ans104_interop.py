"""ANS-104 against arbundles, the client AO users make data items with (tests/js/ans104.mjs):
items arbundles makes parse and verify here with its id, and items made here verify in
arbundles with ours, for both signature types, with a target, an anchor, tags and binary
data, and without them."""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any

import pytest

from chain.protocol import ans104, crypto
from chain.protocol.ans104 import Tag
from tests.helpers import JS_DIR, node_for

TIMEOUT = 120

ETH_KEY = crypto.keccak(b"ans104 interop key")
TARGET = bytes(range(32, 64))
ANCHOR = bytes(range(200, 232))
TAGS = (
    Tag("Data-Protocol", "ao"),
    Tag("Type", "Message"),
    Tag("Unicode", "ü ✓ \U0001f680"),
    Tag("Long", "v" * 300),
    Tag("n" * 70, "short"),
)
DATA = bytes(range(256)) * 3


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def run_arbundles(node: str, request: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [node, "ans104.mjs"],
        cwd=JS_DIR,
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


@pytest.fixture(scope="module")
def node() -> str:
    return node_for("the arbundles interop", ("arbundles",))


@pytest.fixture(scope="module")
def arweave() -> ans104.ArweaveSigner:
    return ans104.ArweaveSigner.generate()


def cases(arweave: ans104.ArweaveSigner) -> list[tuple[str, ans104.Signer, dict[str, Any]]]:
    """(name, our signer, arbundles' signer) with every field, and with none."""
    eth = ans104.EthereumSigner(ETH_KEY)
    return [
        ("ethereum", eth, {"ethereum": ETH_KEY.hex()}),
        ("arweave", arweave, {"arweave": arweave.jwk()}),
    ]


FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("full", {"target": TARGET, "anchor": ANCHOR, "tags": TAGS, "data": DATA}),
    ("bare", {"target": None, "anchor": None, "tags": (), "data": b""}),
    ("text", {"target": TARGET, "anchor": None, "tags": TAGS[:1], "data": b"hello"}),
]


def js_request(signer: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "signer": signer,
        "data": fields["data"].hex(),
        "target": b64url(fields["target"]) if fields["target"] else None,
        "anchor": fields["anchor"].hex() if fields["anchor"] else None,
        "tags": [[tag.name, tag.value] for tag in fields["tags"]],
    }


def test_items_arbundles_makes_verify_here(node: str, arweave: ans104.ArweaveSigner) -> None:
    rows = [
        (f"{kind} {name}", ours, js_request(theirs, fields), fields)
        for kind, ours, theirs in cases(arweave)
        for name, fields in FIELDS
    ]
    answer = run_arbundles(node, {"create": [request for _, _, request, _ in rows]})
    assert len(answer["created"]) == len(rows)
    for (name, ours, _request, fields), made in zip(rows, answer["created"], strict=True):
        raw = bytes.fromhex(made["raw"])
        item = ans104.parse(raw)
        ans104.verify(item)
        assert item.id == made["id"], name
        assert item.signature_type == ours.signature_type, name
        assert item.owner == ours.owner, name
        assert (item.target, item.anchor, item.tags, item.data) == (
            fields["target"],
            fields["anchor"],
            fields["tags"],
            fields["data"],
        ), name
        assert ans104.serialize(item) == raw
        if isinstance(ours, ans104.EthereumSigner):
            # ethers and libsecp256k1 both take RFC 6979 nonces: the same bytes
            again = ans104.create(signer=ours, **fields)
            assert again.raw == raw, name


def test_items_made_here_verify_in_arbundles(node: str, arweave: ans104.ArweaveSigner) -> None:
    items = [
        (f"{kind} {name}", ans104.create(signer=ours, **fields), fields)
        for kind, ours, _theirs in cases(arweave)
        for name, fields in FIELDS
    ]
    answer = run_arbundles(node, {"verify": [item.raw.hex() for _, item, _ in items]})
    for (name, item, fields), seen in zip(items, answer["verified"], strict=True):
        assert seen["valid"] is True, name
        assert seen["id"] == item.id, name
        assert seen["owner"] == b64url(item.owner), name
        assert seen["target"] == (b64url(fields["target"]) if fields["target"] else ""), name
        assert seen["anchor"] == (fields["anchor"].hex() if fields["anchor"] else ""), name
        assert seen["tags"] == [[tag.name, tag.value] for tag in fields["tags"]], name
        assert seen["data"] == fields["data"].hex(), name


def test_changed_items_fail_in_both(node: str, arweave: ans104.ArweaveSigner) -> None:
    """A change to the data or the tags after signing fails in arbundles and here; a
    flipped v (27 <-> 28) arbundles ignores, and is refused here (it would give the same
    item a second id)."""
    eth = ans104.create(signer=ans104.EthereumSigner(ETH_KEY), data=b"data", tags=TAGS[:2])
    rsa = ans104.create(signer=arweave, data=b"data", tags=TAGS[:2])
    changed_data = [item.raw[:-1] + b"b" for item in (eth, rsa)]
    changed_tag = [item.raw.replace(b"Message", b"Massage") for item in (eth, rsa)]
    at = 2 + 64
    flipped_v = eth.raw[:at] + bytes([55 - eth.raw[at]]) + eth.raw[at + 1 :]
    answer = run_arbundles(node, {"verify": [r.hex() for r in [*changed_data, *changed_tag]]})
    assert [seen["valid"] for seen in answer["verified"]] == [False] * 4
    for raw in [*changed_data, *changed_tag, flipped_v]:
        with pytest.raises(ans104.Ans104Error, match="does not"):
            ans104.verify(ans104.parse(raw))
    (seen,) = run_arbundles(node, {"verify": [flipped_v.hex()]})["verified"]
    assert seen["valid"] is True
    assert seen["id"] != eth.id
