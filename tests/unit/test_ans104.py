"""ANS-104 data items (chain.protocol.ans104): the layout, the Avro tags, the deep-hash, both
signature types, every malformed row, and parse's behaviour on arbitrary bytes."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.protocol import ans104, crypto
from chain.protocol.ans104 import Ans104Error, DataItem, Tag

ETH_KEY = crypto.keccak(b"ans104 test key")
TARGET = bytes(range(32))
ANCHOR = bytes(range(100, 132))
TAGS = (Tag("Data-Protocol", "ao"), Tag("Type", "Message"), Tag("Name", "ü ✓"))

# An AO message as AO's scheduler unit has it in its own tests (type 1, a target, five
# tags): the deployed form, signed by arbundles' ArweaveSigner.
AO_ITEM = (
    "AQB9q2yhsQlBHv2LOTIrtmKjw063S1DG0prKcq86DykIegmPnXOReXkWXwpqXt4YxTRw6Rw1jG7f1QFF5ReoJO2M"
    "rJmia9ymkTmnhamv3lsYYIotBC6U4Bmzo6IZiKmn2llJt0MDvCe8rxzG15vvff9bpnDIVflY_Dm9Y0dCH-w2Xg8r"
    "b2xLq-cM8SBoNRiYruwcwpahiHTjXcxboJKksZRXaI_E7_7vL1gWlMLqeYeF_uXqkth8_PGtZcqMA7pbTYcRzGki"
    "_rifGXKUIZKgSIRXTk54iboiqNzOklIFpDKDJpC9Xk_6ppSw_Xzs8S0KpR-veBL8TeURtGhrsDecu_36Pk2MMvdZ"
    "edxiAg7bvQ9H_NZecoZcju-sQKZiE7haq9Nos3g6njh9IpXivGJ1k8tRLeox7hXOeynffzcXz1Vnz5c4Zxw8LKUb"
    "Lygni49sflKyFTMnQ8sgDw00fPsuhrznq37-2OLhmYe-tIg-TEV3T4VNdqchzeRSFIv_l7ZJcxeFxcEgdq9aXMx2"
    "yzVhSInFuk_W8fJSbhPKX9cewbr4BA_XUNMReowLVcnjB_19iCWnivkVk9sz-QRbjuVL2IMqZePWcRdN5ncXRJoY"
    "v4F-Z4FfXDCFuyCD4UAtiQfdch-S4KvRf99DwKrZrMIF28MDdRFdE3ZGDs3FXcPuN8eMLoKBrkyfkM3J89W1GNvr"
    "cCNHSNzhF8oPItU4Qno7-x52ZIOAjfdFcXTYLQYU7Xfr6GKaRByemPrkbkrJpdB8RQREt3rQRDNGRQ0jnbPn62PQ"
    "ugvss98JZn9D4ScNusbbgKMihj4MqfXE2mt7Ab9ewx5d01d-Mwf3D6mGz_ERBJgJo8b119bRXdNvgUDJC58NFd4c"
    "hEOUF4mbyj2pZB9P7fx22yEvV7y6DNzuKvk02YQt7TwL7sdxH1PT63CYJx0tlVGGDvJhGKUQwOfDaXHFMjuuUlXa"
    "_klTJT5wEb78aAyh33rw0n9wpOakTIk2KgekbJAzVWCT0BfLrrOhKs3556_d--2mLmcLOONosBjSLokuvtyrTOX7"
    "btKRf6Zl5l3wtxsFaPgO6M3Qy9UR46AtK76XSFQd9kcDf_Qj1FyronJS_enQFWYn5Um97mDnYT9SJwMpDFS_FYBT"
    "KlsNhsVy11EW5kKuo6mTRlfebJa9CQv-NzbUajd7ulAcM4VNWYt-KbbhVZtUUUxgDvXJdlwRSYR5U8JwSze3sfat"
    "b5mbds-EAS-tT7grwrvTb4wRz20e9ARtBg6kC_x8QujHmFORJ97zrFlnnunPbsWgwWz8bfT9RMFy5xUE1KDCtnJq"
    "p-M3FoWwQc4sREIyCl7Q6JTq_slPe-Xwt9C5oquj4e_SoOuTAfqDPAmIG6rEXKSN7RP3KRjN5IA5Wpp2I0hgOJ6b"
    "T2qNAAUAAAAAAAAASAAAAAAAAAAKGkRhdGEtUHJvdG9jb2wEYW8QZnVuY3Rpb24GcmF3GkRhdGEtUHJvdG9jb2wE"
    "YW8OYW8tdHlwZQ5tZXNzYWdlBlNESwRhbwA2NTgz"
)


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def arweave() -> ans104.ArweaveSigner:
    return ans104.ArweaveSigner.generate()


ETH = ans104.EthereumSigner(ETH_KEY)
ETH_ITEM = ans104.create(
    signer=ETH, data=b"\x00\xffbinary\n", target=TARGET, anchor=ANCHOR, tags=TAGS
)


def tags_start(item: DataItem) -> int:
    """Where the number of tags is in an item's bytes."""
    sig, owner, _ = ans104.SIGNATURE_TYPES[item.signature_type]
    return 2 + sig + owner + (33 if item.target else 1) + (33 if item.anchor else 1)


# Tags


@pytest.mark.parametrize(
    ("tags", "encoded"),
    [
        ((), b""),
        ((Tag("a", "b"),), bytes.fromhex("020261026200")),
        # arbundles' serializeTags of these two (UTF-8, the count first, then the end block)
        ((Tag("a", "b"), Tag("Name", "ü")), bytes.fromhex("0402610262084e616d6504c3bc00")),
        # a length of 100 is zigzag 200: the varint c8 01
        ((Tag("n" * 100, "v"),), b"\x02\xc8\x01" + b"n" * 100 + b"\x02v\x00"),
    ],
)
def test_tag_encoding_vectors(tags: tuple[Tag, ...], encoded: bytes) -> None:
    assert ans104.encode_tags(tags) == encoded
    assert ans104.decode_tags(encoded) == tags


def test_tags_in_blocks_and_with_byte_sizes() -> None:
    """Avro may split an array into blocks; a negative count is followed by the block's
    byte size. All of them decode to the same tags."""
    one = b"\x02a\x02b"  # name "a", value "b" (lengths zigzag 1 -> 0x02)
    two = b"\x02c\x02d"
    tags = (Tag("a", "b"), Tag("c", "d"))
    assert ans104.decode_tags(b"\x04" + one + two + b"\x00") == tags
    assert ans104.decode_tags(b"\x02" + one + b"\x02" + two + b"\x00") == tags
    # count -2 (zigzag 3), size 8 (zigzag 16)
    assert ans104.decode_tags(b"\x03\x10" + one + two + b"\x00") == tags
    # an empty Avro array is no tags, as zero bytes are
    assert ans104.decode_tags(b"\x00") == ()
    # a non-minimal varint is still the number it encodes
    assert ans104.decode_tags(b"\x82\x00" + one + b"\x00") == (Tag("a", "b"),)


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        (b"\x02\x02a\x02b", "truncated: a block count ends inside a varint"),
        (b"\x02\x02a\x02b\x00\x00", "1 bytes after the array's end"),
        (b"\x02\x02a", "truncated: the length of tag 0 value ends inside a varint"),
        (b"\x02\x02a\x06b\x00", "truncated: tag 0 value needs 3 bytes at offset 4, 2 left"),
        (b"\x02\x00\x02b\x00", "tag 0 name is empty"),
        (b"\x02\x02a\x00\x00", "tag 0 value is empty"),
        (b"\x02\x01a\x02b\x00", "tag 0 name has a negative length -1"),
        (b"\x02\x02\xff\x02b\x00", "tag 0 name is not UTF-8"),
        (b"\x03\x12\x02a\x02b\x02c\x02d\x00", "do not fill its byte size exactly"),
        (b"\x03\x7e\x02a\x02b\x00", "a block size of 63 with"),
        (b"\x03\x01\x02a\x02b\x00", "a block size of -1"),
        (b"\x82\x02", "more than 128"),
        (b"\xff" * 10 + b"\x01", "a varint of more than 10 bytes"),
        (b"\xff" * 9 + b"\x7f", "longer than 64 bits"),
        (b"\x02\x82\x10" + b"n" * 1025 + b"\x02v\x00", "tag 0 name is 1025 bytes: at most 1024"),
        (b"\x00" * 4097, "4097 tag bytes: at most 4096"),
    ],
)
def test_malformed_tags(encoded: bytes, message: str) -> None:
    with pytest.raises(Ans104Error, match=message.replace("(", r"\(")):
        ans104.decode_tags(encoded)


def test_tag_bounds_on_both_sides() -> None:
    longest = Tag("n" * 1024, "v" * 2900)  # within 4096 bytes with the varints
    assert ans104.decode_tags(ans104.encode_tags([longest])) == (longest,)
    assert len(ans104.encode_tags([Tag(f"t{i}", "x") for i in range(128)])) < 4096
    # a 3072-byte value is allowed by itself; refused only past 4096 encoded bytes
    value = Tag("n", "v" * 3072)
    assert ans104.decode_tags(ans104.encode_tags([value])) == (value,)
    rows = [
        ([Tag(f"t{i}", "x") for i in range(129)], "129 tags: at most 128"),
        ([Tag("n" * 1025, "v")], "tag 0 name is 1025 bytes: at most 1024"),
        ([Tag("n", "v" * 3073)], "tag 0 value is 3073 bytes: at most 3072"),
        ([Tag("n", "")], "tag 0 value is empty"),
        ([Tag("a", "b"), Tag("", "v")], "tag 1 name is empty"),
        ([Tag("n" * 1024, "v" * 3072)], "encode to 4102 bytes: at most 4096"),
        ([Tag("n", "\ud800")], "tag 0 value cannot be UTF-8 encoded"),
    ]
    for tags, message in rows:
        with pytest.raises(Ans104Error, match=message):
            ans104.encode_tags(tags)


def utf8_ok(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


tag_strategy = st.builds(
    Tag,
    st.text(min_size=1, max_size=30).filter(utf8_ok),
    st.text(min_size=1, max_size=60).filter(utf8_ok),
)


@given(st.lists(tag_strategy, max_size=20))
def test_tags_round_trip(tags: list[Tag]) -> None:
    assert ans104.decode_tags(ans104.encode_tags(tags)) == tuple(tags)


@given(st.binary(max_size=200))
def test_decode_tags_raises_only_ans104_error(encoded: bytes) -> None:
    try:
        tags = ans104.decode_tags(encoded)
    except Ans104Error:
        return
    assert len(tags) <= ans104.MAX_TAGS


# The deep-hash


def test_deep_hash_vectors() -> None:
    """Values from arbundles' deepHash."""
    assert ans104.deep_hash(b"").hex() == (
        "fbf00cc444f5fea9dc3bedf62a13fba8ae87e7445fc910567a23bec4eb82fadb"
        "1143c433069314d8362983dc3c2e4a38"
    )
    nested: list[ans104.DeepHashChunk] = [b"dataitem", [b"a", bytes([0, 1, 2])], b"", []]
    assert ans104.deep_hash(nested).hex() == (
        "d67af1b049105ae5b4e9dca10f4f7a82fc9f47b58505af57f86c643fb3d3c92d"
        "a7856356aa3118fcb21666d1c40e1914"
    )
    assert ans104.deep_hash([b"a"]) != ans104.deep_hash(b"a") != ans104.deep_hash([[b"a"]])


def test_signature_data_is_the_deep_hash_of_the_fields() -> None:
    item = ETH_ITEM
    expected = ans104.deep_hash(
        [
            b"dataitem",
            b"1",
            b"3",
            item.owner,
            TARGET,
            ANCHOR,
            ans104.encode_tags(TAGS),
            item.data,
        ]
    )
    assert ans104.signature_data(item) == expected
    bare = ans104.create(signer=ETH, data=b"x")
    assert ans104.signature_data(bare) == ans104.deep_hash(
        [b"dataitem", b"1", b"3", bare.owner, b"", b"", b"", b"x"]
    )


# A deployed item


def test_an_ao_message_as_deployed() -> None:
    raw = b64url_decode(AO_ITEM)
    item = ans104.parse(raw)
    assert item.id == "6oYAxVAnH8yKsZKpMgHSbRv7uVWey68PAqYuSXeZBbg"
    assert item.signature_type == ans104.ARWEAVE
    assert item.target is not None
    assert b64url(item.target) == "-oM8CYgbqsRcpI3tE_cpGM3kgDlamnYjSGA4nptPao0"
    assert item.anchor is None
    assert item.tags == (
        Tag("Data-Protocol", "ao"),
        Tag("function", "raw"),
        Tag("Data-Protocol", "ao"),
        Tag("ao-type", "message"),
        Tag("SDK", "ao"),
    )
    assert item.data == b"6583"
    assert item.owner_address == b64url(hashlib.sha256(item.owner).digest())
    ans104.verify(item)
    assert ans104.serialize(item) == raw
    with pytest.raises(Ans104Error, match="RSA-PSS signature does not verify"):
        ans104.verify(ans104.parse(raw[:-1] + b"4"))


# Round trips and ids


@pytest.mark.parametrize("kind", ["ethereum", "arweave"])
@pytest.mark.parametrize(
    ("target", "anchor", "tags", "data"),
    [
        (None, None, (), b""),
        (TARGET, None, (), b"data"),
        (None, ANCHOR, TAGS, bytes(range(256))),
        (TARGET, ANCHOR, TAGS, b"\x00" * 1000),
    ],
)
def test_round_trip(
    kind: str,
    target: bytes | None,
    anchor: bytes | None,
    tags: tuple[Tag, ...],
    data: bytes,
    request: pytest.FixtureRequest,
) -> None:
    signer: ans104.Signer = ETH if kind == "ethereum" else request.getfixturevalue("arweave")
    item = ans104.create(signer=signer, data=data, target=target, anchor=anchor, tags=tags)
    raw = ans104.serialize(item)
    parsed = ans104.parse(raw)
    assert parsed == item
    assert ans104.serialize(parsed) == raw
    assert (parsed.target, parsed.anchor, parsed.tags, parsed.data) == (target, anchor, tags, data)
    ans104.verify(parsed)
    assert parsed.id == b64url(hashlib.sha256(parsed.signature).digest())
    assert len(parsed.id) == 43
    # A DataItem built from its fields lays itself out the same way.
    rebuilt = DataItem(item.signature_type, item.signature, item.owner, target, anchor, tags, data)
    assert ans104.serialize(rebuilt) == raw


def test_owner_addresses(arweave: ans104.ArweaveSigner) -> None:
    assert ETH_ITEM.owner_address == crypto.address_of_private_key(ETH_KEY) == ETH.address
    assert len(ETH_ITEM.owner) == 65 and ETH_ITEM.owner[0] == 4
    item = ans104.create(signer=arweave, data=b"x")
    assert len(item.owner) == 512
    assert item.owner_address == b64url(hashlib.sha256(item.owner).digest()) == arweave.address
    assert len(item.owner_address) == 43


def test_ethereum_signatures_are_deterministic() -> None:
    again = ans104.create(signer=ETH, data=ETH_ITEM.data, target=TARGET, anchor=ANCHOR, tags=TAGS)
    assert again.raw == ETH_ITEM.raw and again.id == ETH_ITEM.id
    assert ETH_ITEM.signature[64] in (27, 28)
    digest = ans104.ethereum_message_hash(ans104.signature_data(ETH_ITEM))
    assert digest == crypto.keccak(
        b"\x19Ethereum Signed Message:\n48" + ans104.signature_data(ETH_ITEM)
    )
    assert crypto.recover_digest(digest, ETH_ITEM.signature) == ETH.address


def test_arweave_signs_with_the_largest_salt_and_verifies_any(
    arweave: ans104.ArweaveSigner,
) -> None:
    item = ans104.create(signer=arweave, data=b"salt")
    public = rsa.RSAPublicNumbers(65537, int.from_bytes(item.owner, "big")).public_key()
    message = ans104.signature_data(item)
    public.verify(
        item.signature,
        message,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=478),
        hashes.SHA256(),
    )
    assert ans104.PSS_SIGN_SALT_LENGTH == 478

    class BrowserSigner:
        """arweave-js in a browser: WebCrypto's RSA-PSS with a 32-byte salt."""

        signature_type = ans104.ARWEAVE
        owner = arweave.owner

        def sign(self, message: bytes) -> bytes:
            return arweave._key.sign(
                message,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                hashes.SHA256(),
            )

    ans104.verify(ans104.create(signer=BrowserSigner(), data=b"salt"))


def test_jwk_round_trip(arweave: ans104.ArweaveSigner) -> None:
    again = ans104.ArweaveSigner.from_jwk(arweave.jwk())
    assert again.owner == arweave.owner
    assert b64url_decode(arweave.jwk()["n"]) == arweave.owner
    ans104.verify(ans104.create(signer=again, data=b"x"))
    with pytest.raises(ValueError, match="no qi"):
        ans104.ArweaveSigner.from_jwk({k: v for k, v in arweave.jwk().items() if k != "qi"})


def test_signers_refuse_wrong_keys() -> None:
    with pytest.raises(ValueError, match="32 bytes, got 31"):
        ans104.EthereumSigner(b"\x01" * 31)
    small = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ValueError, match="RSA-4096"):
        ans104.ArweaveSigner(small)


# Malformed items


def replace(raw: bytes, at: int, new: bytes) -> bytes:
    return raw[:at] + new + raw[at + len(new) :]


def malformed_rows() -> list[tuple[str, bytes, str]]:
    raw = ETH_ITEM.raw
    ts = tags_start(ETH_ITEM)
    target_at = 2 + 65 + 65
    anchor_at = target_at + 33
    tag_bytes = ans104.encode_tags(TAGS)
    return [
        ("empty", b"", "truncated: the signature type needs 2 bytes at offset 0, 0 left"),
        ("one byte", b"\x03", "truncated: the signature type"),
        ("type 0", replace(raw, 0, b"\x00\x00"), "unknown signature type 0: the known ones"),
        ("type 8", replace(raw, 0, b"\x08\x00"), "unknown signature type 8"),
        ("type 0x0300", replace(raw, 0, b"\x00\x03"), "unknown signature type 768"),
        ("short signature", raw[:40], "truncated: the signature needs 65 bytes"),
        ("short owner", raw[:100], "truncated: the owner needs 65 bytes at offset 67"),
        ("no target byte", raw[:target_at], "truncated: the target presence byte"),
        ("target byte 2", replace(raw, target_at, b"\x02"), "target presence byte must be 0 or 1"),
        ("target byte ff", replace(raw, target_at, b"\xff"), "got 255"),
        ("short target", raw[: target_at + 10], "truncated: the target needs 32 bytes"),
        ("anchor byte 2", replace(raw, anchor_at, b"\x02"), "anchor presence byte must be 0 or 1"),
        ("short anchor", raw[: anchor_at + 5], "truncated: the anchor needs 32"),
        ("no tag count", raw[: ts + 3], "truncated: the number of tags needs 8"),
        ("no tag length", raw[: ts + 12], "truncated: the number of tag bytes needs 8"),
        ("129 tags", replace(raw, ts, (129).to_bytes(8, "little")), "129 tags: at most 128"),
        ("2**64-1 tags", replace(raw, ts, b"\xff" * 8), "tags: at most 128"),
        (
            "4097 tag bytes",
            replace(raw, ts + 8, (4097).to_bytes(8, "little")),
            "4097 tag bytes: at most 4096",
        ),
        (
            "tag bytes past the end",
            raw[: ts + 16 + 5],
            f"truncated: the tags needs {len(tag_bytes)} bytes",
        ),
        (
            "fewer tags than counted",
            replace(raw, ts, (4).to_bytes(8, "little")),
            r"the item says 4 tags, its \d+ tag bytes hold 3",
        ),
        (
            "tags but a count of 0",
            replace(raw, ts, (0).to_bytes(8, "little")),
            "the item says 0 tags",
        ),
        (
            "a count but no tag bytes",
            raw[:ts] + (1).to_bytes(8, "little") + bytes(8),
            "the item says 1 tags, its 0 tag bytes hold 0",
        ),
        (
            "tag bytes cut short",
            replace(raw, ts + 8, (len(tag_bytes) - 1).to_bytes(8, "little")),
            "tags truncated: a block count ends inside a varint",
        ),
        (
            "an empty tag value",
            raw[:ts] + (1).to_bytes(8, "little") + (5).to_bytes(8, "little") + b"\x02\x02a\x00\x00",
            "tag 0 value is empty",
        ),
    ]


@pytest.mark.parametrize(
    ("name", "raw", "message"), malformed_rows(), ids=[row[0] for row in malformed_rows()]
)
def test_malformed_items(name: str, raw: bytes, message: str) -> None:
    with pytest.raises(Ans104Error, match=message):
        ans104.parse(raw)


def test_parse_takes_only_bytes() -> None:
    with pytest.raises(Ans104Error, match="a data item is bytes, got str"):
        ans104.parse(ETH_ITEM.raw.hex())  # type: ignore[arg-type]
    assert ans104.parse(bytearray(ETH_ITEM.raw)) == ETH_ITEM  # type: ignore[arg-type]


def test_zero_tags_as_an_empty_avro_array() -> None:
    """No tags is written as no tag bytes; one zero byte (Avro's empty array) is read as no
    tags too, and its signature covers that byte."""
    bare = ans104.create(signer=ETH, data=b"d")
    ts = tags_start(bare)
    unsigned = bare.raw[:ts] + bytes(8) + (1).to_bytes(8, "little") + b"\x00" + b"d"
    item = ans104.parse(unsigned)
    assert item.tags == () and item.data == b"d" and item.tag_bytes == b"\x00"
    with pytest.raises(Ans104Error, match="does not recover to the owner"):
        ans104.verify(item)
    signature = ETH.sign(ans104.signature_data(item))
    signed = ans104.parse(unsigned[:2] + signature + unsigned[67:])
    ans104.verify(signed)
    assert ans104.signature_data(signed) != ans104.signature_data(bare)


def test_data_runs_to_the_end() -> None:
    """An item has no trailing bytes: whatever follows the tags is its data."""
    item = ans104.parse(ETH_ITEM.raw + b"more")
    assert item.data == ETH_ITEM.data + b"more"
    with pytest.raises(Ans104Error, match="does not recover to the owner"):
        ans104.verify(item)


def test_fields_are_checked_when_built() -> None:
    rows: list[tuple[dict[str, Any], str]] = [
        (dict(signature=b"\x00" * 64), "a type 3 signature is 65 bytes, got 64"),
        (dict(owner=b"\x04" * 64), "a type 3 owner is 65 bytes, got 64"),
        (dict(target=b"\x00" * 31), "target must be 32 bytes, got 31"),
        (dict(anchor=b""), "anchor must be 32 bytes, got 0"),
        (dict(signature_type=9), "unknown signature type 9"),
        (dict(tags=(Tag("", "v"),)), "tag 0 name is empty"),
    ]
    base: dict[str, Any] = dict(
        signature_type=3,
        signature=ETH_ITEM.signature,
        owner=ETH_ITEM.owner,
        target=None,
        anchor=None,
        tags=(),
        data=b"",
    )
    for change, message in rows:
        with pytest.raises(Ans104Error, match=message):
            DataItem(**{**base, **change})
    with pytest.raises(Ans104Error, match="anchor must be 32 bytes, got 33"):
        ans104.create(signer=ETH, data=b"", anchor=b"\x00" * 33)


# Verification failures


def resigned_tags(item: DataItem, tags: tuple[Tag, ...]) -> DataItem:
    """The item with other tags and its old signature."""
    return DataItem(
        item.signature_type, item.signature, item.owner, item.target, item.anchor, tags, item.data
    )


def test_changed_items_fail_verify(arweave: ans104.ArweaveSigner) -> None:
    for item in (ETH_ITEM, ans104.create(signer=arweave, data=b"payload", tags=TAGS)):
        ans104.verify(item)
        fields = (item.signature_type, item.signature, item.owner, item.target, item.anchor)
        changed = [
            resigned_tags(item, (*TAGS[:-1], Tag("Name", "other"))),
            resigned_tags(item, TAGS[::-1]),
            resigned_tags(item, TAGS[:-1]),
            DataItem(*fields, item.tags, item.data + b"!"),
            DataItem(*fields[:3], TARGET[::-1], item.anchor, item.tags, item.data),
            DataItem(*fields[:4], bytes(32), item.tags, item.data),
        ]
        for bad in changed:
            with pytest.raises(Ans104Error, match=r"does not (recover to|verify against)"):
                ans104.verify(bad)


def test_ethereum_signature_rules() -> None:
    sig = ETH_ITEM.signature
    fields = (ETH_ITEM.owner, ETH_ITEM.target, ETH_ITEM.anchor, ETH_ITEM.tags, ETH_ITEM.data)
    flipped_v = sig[:64] + bytes([55 - sig[64]])
    high_s = sig[:32] + (crypto.SECP256K1_N - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big")
    rows = [
        (flipped_v, "does not recover to the owner"),
        (sig[:64] + bytes([sig[64] - 27]), "malformed: signature v must be 27 or 28, got"),
        (high_s + bytes([55 - sig[64]]), "malformed: signature r or s out of range"),
        (bytes(65), "malformed"),
    ]
    for signature, message in rows:
        with pytest.raises(Ans104Error, match=message):
            ans104.verify(DataItem(3, signature, *fields))
    other = ans104.EthereumSigner(crypto.keccak(b"other"))
    for owner, message in [
        (other.owner, "does not recover to the owner"),
        (b"\x02" + ETH_ITEM.owner[1:], "not an uncompressed secp256k1 key"),
        (b"\x04" + b"\x00" * 64, "not a point of secp256k1"),
    ]:
        with pytest.raises(Ans104Error, match=message):
            ans104.verify(DataItem(3, sig, owner, *fields[1:]))


def test_arweave_owner_rules(arweave: ans104.ArweaveSigner) -> None:
    item = ans104.create(signer=arweave, data=b"x")
    rest = (item.target, item.anchor, item.tags, item.data)
    for owner, message in [
        (b"\x00" + item.owner[1:], "not a 4096-bit RSA modulus"),
        (item.owner[:-1] + bytes([item.owner[-1] & 0xFE]), "not a 4096-bit RSA modulus"),
        (ans104.ArweaveSigner.generate().owner, "RSA-PSS signature does not verify"),
    ]:
        with pytest.raises(Ans104Error, match=message):
            ans104.verify(DataItem(1, item.signature, owner, *rest))
    with pytest.raises(Ans104Error, match="does not verify"):
        ans104.verify(DataItem(1, bytes(512), item.owner, *rest))


@pytest.mark.parametrize("signature_type", [2, 4, 5, 6, 7])
def test_other_types_parse_but_are_refused(signature_type: int) -> None:
    sig_length, owner_length, name = ans104.SIGNATURE_TYPES[signature_type]
    item = DataItem(
        signature_type, b"\x01" * sig_length, b"\x02" * owner_length, None, None, TAGS, b"d"
    )
    parsed = ans104.parse(item.raw)
    assert parsed == item
    with pytest.raises(
        Ans104Error,
        match=rf"type {signature_type} \({name}\) is not verified here: only 1 \(arweave\), "
        r"3 \(ethereum\)",
    ):
        ans104.verify(parsed)


# Properties


@settings(max_examples=300)
@given(st.sampled_from([0, 1, 2, 3, 4, 6, 7, 8, 0xFFFF]), st.binary(max_size=1200))
def test_parse_raises_only_ans104_error(signature_type: int, rest: bytes) -> None:
    raw = signature_type.to_bytes(2, "little") + rest
    try:
        item = ans104.parse(raw)
    except Ans104Error:
        return
    assert ans104.serialize(item) == raw


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_parse_of_a_valid_header_and_arbitrary_rest(rest: bytes) -> None:
    """Past the fixed fields (type, signature, owner) arbitrary bytes: the presence bytes,
    counts and tags are what hypothesis varies."""
    raw = ETH_ITEM.raw[:132] + rest
    try:
        item = ans104.parse(raw)
    except Ans104Error:
        return
    with pytest.raises(Ans104Error):
        ans104.verify(item)


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    raw = ETH_ITEM.raw
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "append"]))
    at = draw(st.integers(0, len(raw) - 1))
    if kind == "flip":
        return replace(raw, at, bytes([raw[at] ^ draw(st.integers(1, 255))]))
    if kind == "truncate":
        return raw[:at]
    if kind == "insert":
        return raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    if kind == "delete":
        return raw[:at] + raw[at + draw(st.integers(1, 8)) :]
    return raw + draw(st.binary(min_size=1, max_size=8))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_mutations_of_a_valid_item_fail(raw: bytes) -> None:
    """Any change to a valid item's bytes is refused: by parse, or else by verify."""
    try:
        item = ans104.parse(raw)
    except Ans104Error:
        return
    with pytest.raises(Ans104Error):
        ans104.verify(item)


@settings(max_examples=60)
@given(
    st.binary(max_size=300),
    st.none() | st.binary(min_size=32, max_size=32),
    st.none() | st.binary(min_size=32, max_size=32),
    st.lists(tag_strategy, max_size=8),
)
def test_created_items_round_trip(
    data: bytes, target: bytes | None, anchor: bytes | None, tags: list[Tag]
) -> None:
    item = ans104.create(signer=ETH, data=data, target=target, anchor=anchor, tags=tags)
    parsed = ans104.parse(ans104.serialize(item))
    assert (parsed.data, parsed.target, parsed.anchor, parsed.tags) == (
        data,
        target,
        anchor,
        tuple(tags),
    )
    ans104.verify(parsed)
    assert parsed.id == item.id
