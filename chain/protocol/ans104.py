"""ANS-104 data items (Arweave's bundled data v2.0): parsed from untrusted bytes, verified,
created and serialized, as the specification and its deployed client (arbundles) have them.

AO's processes and messages are data items, and the chain checks every item it is given
(PROTOCOL 8.3), so this is pure code: bytes in, a `DataItem` or an `Ans104Error` out.

The layout (every integer little-endian):

    signature type   2 bytes (1 Arweave, 3 Ethereum, ...: the sizes below follow from it)
    signature        the type's length
    owner            the type's length (the public key)
    target           a presence byte (0 or 1), then 32 bytes when 1
    anchor           a presence byte (0 or 1), then 32 bytes when 1
    number of tags   8 bytes
    tag bytes        8 bytes: the length of the tags' encoding that follows
    tags             an Avro array of {name: bytes, value: bytes} records
    data             every byte left: an item has no trailing bytes, its data runs to the end

The id is base64url (no padding) of SHA-256(signature). What is signed is the deep-hash
(SHA-384) of ["dataitem", "1", signature type as decimal text, owner, target or b"", anchor
or b"", the tags' bytes as they are in the item, data]: arbundles' form, which every deployed
item follows. The specification's text lists no signature type and the tags as a nested list
of [name, value] pairs; an item signed that way verifies nowhere, so it is not accepted here.

- Type 1 (Arweave): owner is the 512-byte RSA-4096 modulus, exponent 65537; the signature
  is RSASSA-PSS with SHA-256 and MGF1-SHA-256 over the 48-byte deep-hash. arweave-js signs
  under Node with the largest salt (478 bytes, Node's default) and in browsers with 32; its
  verifiers take any salt length, and so does `verify`. `ArweaveSigner` signs with 478.
- Type 3 (Ethereum): owner is the 65-byte uncompressed secp256k1 key; the signature is
  r || s || v (v 27 or 28) over the EIP-191 personal message of the 48-byte deep-hash,
  keccak256("\\x19Ethereum Signed Message:\\n48" || deepHash), as ethers' signMessage makes
  it for arbundles' EthereumSigner. `verify` requires s in the lower half and v to be the
  one that recovers the owner (AO's scheduler does the same; arbundles ignores v).

Bounds, checked before anything is read or allocated: at most 128 tags, a name of 1..1024
bytes and a value of 1..3072 bytes, both UTF-8 text (the specification: non-empty strings),
and at most 4096 bytes of encoded tags (arbundles can neither write nor verify more). No
tags is written as zero tag bytes, as arbundles writes it; an empty Avro array (one zero
byte) is read as no tags too.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

import coincurve
from cryptography.exceptions import InvalidSignature as RsaInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from chain.protocol import crypto, wire
from chain.protocol.errors import InvalidSignature

ARWEAVE = 1
ETHEREUM = 3
# Every signature type arbundles knows: (signature length, owner length, name). Items of all
# of them parse; `verify` checks ARWEAVE and ETHEREUM.
SIGNATURE_TYPES: dict[int, tuple[int, int, str]] = {
    1: (512, 512, "arweave"),
    2: (64, 32, "ed25519"),
    3: (65, 65, "ethereum"),
    4: (64, 32, "solana"),
    5: (64, 32, "injectedAptos"),
    6: (64 * 32 + 4, 32 * 32 + 1, "multiAptos"),
    7: (65, 42, "typedEthereum"),
}
VERIFIED_TYPES = (ARWEAVE, ETHEREUM)

ADDRESS_LENGTH = 32  # target and anchor, when present
MAX_TAGS = 128
MAX_TAG_NAME_BYTES = 1024
MAX_TAG_VALUE_BYTES = 3072
MAX_TAG_BYTES = 4096
MAX_VARINT_BYTES = 10  # an Avro long is 64 bits: ten 7-bit groups

RSA_MODULUS_BYTES = 512
RSA_PUBLIC_EXPONENT = 65537
PSS_SIGN_SALT_LENGTH = RSA_MODULUS_BYTES - hashes.SHA256.digest_size - 2  # 478, Node's default
EIP191_PREFIX = b"\x19Ethereum Signed Message:\n"


class Ans104Error(ValueError):
    """A data item that is malformed, breaks a bound, or whose signature does not verify;
    the message says which."""


@dataclass(frozen=True, slots=True)
class Tag:
    name: str
    value: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _type_sizes(signature_type: int) -> tuple[int, int]:
    sizes = SIGNATURE_TYPES.get(signature_type)
    if sizes is None:
        known = ", ".join(f"{t} ({name})" for t, (_s, _o, name) in SIGNATURE_TYPES.items())
        raise Ans104Error(f"unknown signature type {signature_type}: the known ones are {known}")
    return sizes[0], sizes[1]


@dataclass(frozen=True, slots=True)
class DataItem:
    """One data item. `parse` and `create` give `raw`, the item's exact bytes (what
    `serialize` returns, and where the signed tag bytes are read from); an item built by
    hand has it computed from its fields, the tags encoded as `encode_tags` does."""

    signature_type: int
    signature: bytes
    owner: bytes
    target: bytes | None
    anchor: bytes | None
    tags: tuple[Tag, ...]
    data: bytes
    raw: bytes = field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        signature_length, owner_length = _type_sizes(self.signature_type)
        if len(self.signature) != signature_length:
            raise Ans104Error(
                f"a type {self.signature_type} signature is {signature_length} bytes, "
                f"got {len(self.signature)}"
            )
        if len(self.owner) != owner_length:
            raise Ans104Error(
                f"a type {self.signature_type} owner is {owner_length} bytes, got {len(self.owner)}"
            )
        for name in ("target", "anchor"):
            value = getattr(self, name)
            if value is not None and len(value) != ADDRESS_LENGTH:
                raise Ans104Error(f"{name} must be {ADDRESS_LENGTH} bytes, got {len(value)}")
        if not self.raw:
            tag_bytes = encode_tags(self.tags)
            object.__setattr__(self, "raw", _layout(self, tag_bytes))

    @property
    def id(self) -> str:
        """base64url without padding of SHA-256(signature): 43 characters."""
        return _b64url(hashlib.sha256(self.signature).digest())

    @property
    def owner_address(self) -> str:
        """The owner as its network names it: the EIP-55 address of the key for type 3;
        base64url of SHA-256(owner) for the others, as Arweave addresses are."""
        if self.signature_type == ETHEREUM:
            return wire.checksum(crypto.keccak(self.owner[1:])[-20:])
        return _b64url(hashlib.sha256(self.owner).digest())

    @property
    def tag_bytes(self) -> bytes:
        """The tags' encoding as it is in the item: what the signature covers."""
        start = self._tags_start()
        length = int.from_bytes(self.raw[start + 8 : start + 16], "little")
        return self.raw[start + 16 : start + 16 + length]

    def _tags_start(self) -> int:
        signature_length, owner_length = _type_sizes(self.signature_type)
        start = 2 + signature_length + owner_length
        start += 1 + (ADDRESS_LENGTH if self.target is not None else 0)
        start += 1 + (ADDRESS_LENGTH if self.anchor is not None else 0)
        return start


def _layout(item: DataItem, tag_bytes: bytes) -> bytes:
    def optional(value: bytes | None) -> bytes:
        return b"\x00" if value is None else b"\x01" + value

    return b"".join(
        (
            item.signature_type.to_bytes(2, "little"),
            item.signature,
            item.owner,
            optional(item.target),
            optional(item.anchor),
            len(item.tags).to_bytes(8, "little"),
            len(tag_bytes).to_bytes(8, "little"),
            tag_bytes,
            item.data,
        )
    )


# Parsing


class _Reader:
    """A cursor over untrusted bytes: every read is checked against what is left."""

    def __init__(self, raw: bytes, what: str) -> None:
        self.raw = raw
        self.pos = 0
        self.what = what

    @property
    def left(self) -> int:
        return len(self.raw) - self.pos

    def take(self, n: int, field_name: str) -> bytes:
        if n > self.left:
            raise Ans104Error(
                f"{self.what} truncated: {field_name} needs {n} bytes at offset {self.pos}, "
                f"{self.left} left"
            )
        chunk = self.raw[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def long(self, field_name: str) -> int:
        """An Avro long: a zigzag-coded varint of at most 64 bits."""
        value = 0
        for i in range(MAX_VARINT_BYTES):
            if self.left < 1:
                raise Ans104Error(f"{self.what} truncated: {field_name} ends inside a varint")
            byte = self.raw[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if value >= 1 << 64:
                    raise Ans104Error(f"{self.what}: {field_name} is longer than 64 bits")
                return (value >> 1) ^ -(value & 1)
        raise Ans104Error(f"{self.what}: {field_name} is a varint of more than 10 bytes")


def parse(raw: bytes) -> DataItem:
    """The data item in `raw`, its layout and tags checked (not its signature: `verify`);
    Ans104Error saying what is wrong otherwise."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise Ans104Error(f"a data item is bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    reader = _Reader(raw, "data item")
    signature_type = int.from_bytes(reader.take(2, "the signature type"), "little")
    signature_length, owner_length = _type_sizes(signature_type)
    signature = reader.take(signature_length, "the signature")
    owner = reader.take(owner_length, "the owner")
    target = _optional(reader, "target")
    anchor = _optional(reader, "anchor")
    tag_count = int.from_bytes(reader.take(8, "the number of tags"), "little")
    if tag_count > MAX_TAGS:
        raise Ans104Error(f"{tag_count} tags: at most {MAX_TAGS}")
    tag_length = int.from_bytes(reader.take(8, "the number of tag bytes"), "little")
    if tag_length > MAX_TAG_BYTES:
        raise Ans104Error(f"{tag_length} tag bytes: at most {MAX_TAG_BYTES}")
    tag_bytes = reader.take(tag_length, "the tags")
    tags = decode_tags(tag_bytes)
    if len(tags) != tag_count:
        raise Ans104Error(
            f"the item says {tag_count} tags, its {tag_length} tag bytes hold {len(tags)}"
        )
    data = raw[reader.pos :]
    return DataItem(signature_type, signature, owner, target, anchor, tags, data, raw)


def _optional(reader: _Reader, name: str) -> bytes | None:
    presence = reader.take(1, f"the {name} presence byte")[0]
    if presence == 0:
        return None
    if presence != 1:
        raise Ans104Error(f"the {name} presence byte must be 0 or 1, got {presence}")
    return reader.take(ADDRESS_LENGTH, f"the {name}")


# Tags: an Avro array of records {name: bytes, value: bytes}


def _check_tag_text(raw: bytes, what: str, limit: int) -> str:
    if not raw:
        raise Ans104Error(f"{what} is empty: names and values are non-empty strings")
    if len(raw) > limit:
        raise Ans104Error(f"{what} is {len(raw)} bytes: at most {limit}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Ans104Error(f"{what} is not UTF-8 text") from exc


def decode_tags(encoded: bytes) -> tuple[Tag, ...]:
    """The tags of an item's tag bytes: Avro blocks (a count, a byte size after a negative
    count, the records), ended by a zero count at the very end; no bytes at all is no tags."""
    if len(encoded) > MAX_TAG_BYTES:
        raise Ans104Error(f"{len(encoded)} tag bytes: at most {MAX_TAG_BYTES}")
    tags: list[Tag] = []
    if not encoded:
        return ()
    reader = _Reader(bytes(encoded), "tags")
    while True:
        count = reader.long("a block count")
        if count == 0:
            break
        block_end: int | None = None
        if count < 0:
            count = -count
            size = reader.long("a block size")
            if size < 0 or size > reader.left:
                raise Ans104Error(f"tags: a block size of {size} with {reader.left} bytes left")
            block_end = reader.pos + size
        if len(tags) + count > MAX_TAGS:
            raise Ans104Error(f"tags: more than {MAX_TAGS}")
        for _ in range(count):
            i = len(tags)
            tags.append(
                Tag(
                    _read_tag_text(reader, f"tag {i} name", MAX_TAG_NAME_BYTES),
                    _read_tag_text(reader, f"tag {i} value", MAX_TAG_VALUE_BYTES),
                )
            )
        if block_end is not None and reader.pos != block_end:
            raise Ans104Error("tags: a block's records do not fill its byte size exactly")
    if reader.left:
        raise Ans104Error(f"tags: {reader.left} bytes after the array's end")
    return tuple(tags)


def _read_tag_text(reader: _Reader, what: str, limit: int) -> str:
    length = reader.long(f"the length of {what}")
    if length < 0:
        raise Ans104Error(f"{what} has a negative length {length}")
    if length > limit:
        raise Ans104Error(f"{what} is {length} bytes: at most {limit}")
    return _check_tag_text(reader.take(length, what), what, limit)


def _long(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte = zigzag & 0x7F
        zigzag >>= 7
        if zigzag:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_tags(tags: Iterable[Tag]) -> bytes:
    """The tags as arbundles writes them: one block of every record, then the zero count;
    nothing at all for no tags. Ans104Error for tags past the bounds."""
    tags = tuple(tags)
    if not tags:
        return b""
    if len(tags) > MAX_TAGS:
        raise Ans104Error(f"{len(tags)} tags: at most {MAX_TAGS}")
    parts = [_long(len(tags))]
    for i, tag in enumerate(tags):
        if not isinstance(tag, Tag):
            raise Ans104Error(f"tag {i} is not a Tag: {type(tag).__name__}")
        for what, text, limit in (
            (f"tag {i} name", tag.name, MAX_TAG_NAME_BYTES),
            (f"tag {i} value", tag.value, MAX_TAG_VALUE_BYTES),
        ):
            if not isinstance(text, str):
                raise Ans104Error(f"{what} is not a string")
            try:
                raw = text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise Ans104Error(f"{what} cannot be UTF-8 encoded") from exc
            _check_tag_text(raw, what, limit)
            parts += [_long(len(raw)), raw]
    parts.append(b"\x00")
    encoded = b"".join(parts)
    if len(encoded) > MAX_TAG_BYTES:
        raise Ans104Error(f"the tags encode to {len(encoded)} bytes: at most {MAX_TAG_BYTES}")
    return encoded


# Signatures


DeepHashChunk: TypeAlias = bytes | Sequence["DeepHashChunk"]


def deep_hash(value: DeepHashChunk) -> bytes:
    """Arweave 2.0's deep-hash (SHA-384): a blob is H(H("blob" || len) || H(blob)); a list
    folds acc = H(acc || deep_hash(item)) over its items from acc = H("list" || len)."""
    if isinstance(value, bytes | bytearray | memoryview):
        blob = bytes(value)
        tag = hashlib.sha384(b"blob" + str(len(blob)).encode()).digest()
        return hashlib.sha384(tag + hashlib.sha384(blob).digest()).digest()
    acc = hashlib.sha384(b"list" + str(len(value)).encode()).digest()
    for chunk in value:
        acc = hashlib.sha384(acc + deep_hash(chunk)).digest()
    return acc


def _signature_data(
    signature_type: int,
    owner: bytes,
    target: bytes | None,
    anchor: bytes | None,
    tag_bytes: bytes,
    data: bytes,
) -> bytes:
    return deep_hash(
        [
            b"dataitem",
            b"1",
            str(signature_type).encode(),
            owner,
            target or b"",
            anchor or b"",
            tag_bytes,
            data,
        ]
    )


def signature_data(item: DataItem) -> bytes:
    """The 48 bytes an item's owner signs (for type 3, inside an EIP-191 message)."""
    return _signature_data(
        item.signature_type, item.owner, item.target, item.anchor, item.tag_bytes, item.data
    )


def ethereum_message_hash(message: bytes) -> bytes:
    """EIP-191 personal_sign of bytes: keccak256("\\x19Ethereum Signed Message:\\n" ||
    len || message), as ethers' hashMessage of a byte array."""
    return crypto.keccak(EIP191_PREFIX + str(len(message)).encode() + message)


def verify(item: DataItem) -> None:
    """Check the item's signature against its owner; Ans104Error saying why otherwise.
    Types 1 (Arweave) and 3 (Ethereum) are verified; the others are refused."""
    message = signature_data(item)
    if item.signature_type == ARWEAVE:
        _verify_arweave(item.owner, item.signature, message)
    elif item.signature_type == ETHEREUM:
        _verify_ethereum(item.owner, item.signature, message)
    else:
        name = SIGNATURE_TYPES[item.signature_type][2]
        known = ", ".join(f"{t} ({SIGNATURE_TYPES[t][2]})" for t in VERIFIED_TYPES)
        raise Ans104Error(
            f"signature type {item.signature_type} ({name}) is not verified here: only {known}"
        )


def _verify_arweave(owner: bytes, signature: bytes, message: bytes) -> None:
    modulus = int.from_bytes(owner, "big")
    if modulus.bit_length() != 8 * RSA_MODULUS_BYTES or not modulus & 1:
        raise Ans104Error("the owner is not a 4096-bit RSA modulus")
    try:
        key = rsa.RSAPublicNumbers(RSA_PUBLIC_EXPONENT, modulus).public_key()
        key.verify(
            signature,
            message,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
            hashes.SHA256(),
        )
    except (RsaInvalidSignature, ValueError) as exc:
        raise Ans104Error("the RSA-PSS signature does not verify against the owner") from exc


def _verify_ethereum(owner: bytes, signature: bytes, message: bytes) -> None:
    if owner[0] != 4:
        raise Ans104Error("the owner is not an uncompressed secp256k1 key (0x04 || x || y)")
    try:
        coincurve.PublicKey(owner)
    except Exception as exc:
        raise Ans104Error("the owner is not a point of secp256k1") from exc
    digest = ethereum_message_hash(message)
    try:
        recovered = crypto.recover_public_key(digest, crypto.recoverable_signature(signature))
    except InvalidSignature as exc:
        raise Ans104Error(f"the Ethereum signature is malformed: {exc}") from exc
    if recovered.format(compressed=False) != owner:
        raise Ans104Error("the Ethereum signature does not recover to the owner")


# Creating


class Signer(Protocol):
    """What `create` signs with: a type, the owner's public key, and a signature over the
    48-byte signature data."""

    signature_type: int

    @property
    def owner(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class EthereumSigner:
    """Type 3, as arbundles' EthereumSigner: an EIP-191 personal signature of the deep-hash
    (RFC 6979 nonces, as ethers', so the same key and item give the same signature)."""

    signature_type = ETHEREUM

    def __init__(self, private_key: bytes) -> None:
        if len(private_key) != 32:
            raise ValueError(f"a secp256k1 private key is 32 bytes, got {len(private_key)}")
        self._private_key = bytes(private_key)
        self._owner = coincurve.PrivateKey(self._private_key).public_key.format(compressed=False)

    @property
    def owner(self) -> bytes:
        return bytes(self._owner)

    @property
    def address(self) -> str:
        return crypto.address_of_private_key(self._private_key)

    def sign(self, message: bytes) -> bytes:
        return crypto.sign_digest(ethereum_message_hash(message), self._private_key)


class ArweaveSigner:
    """Type 1, as arbundles' ArweaveSigner under Node: RSA-PSS, SHA-256, the largest salt."""

    signature_type = ARWEAVE

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        numbers = private_key.public_key().public_numbers()
        if numbers.n.bit_length() != 8 * RSA_MODULUS_BYTES or numbers.e != RSA_PUBLIC_EXPONENT:
            raise ValueError("an Arweave key is RSA-4096 with the public exponent 65537")
        self._key = private_key
        self._owner = numbers.n.to_bytes(RSA_MODULUS_BYTES, "big")

    @classmethod
    def generate(cls) -> ArweaveSigner:
        return cls(rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=4096))

    @classmethod
    def from_jwk(cls, jwk: dict[str, Any]) -> ArweaveSigner:
        """An Arweave wallet file's key (a JWK with n, e, d, p, q, dp, dq, qi)."""

        def number(name: str) -> int:
            value = jwk.get(name)
            if not isinstance(value, str):
                raise ValueError(f"the JWK has no {name}")
            return int.from_bytes(_b64url_decode(value), "big")

        public = rsa.RSAPublicNumbers(number("e"), number("n"))
        private = rsa.RSAPrivateNumbers(
            number("p"),
            number("q"),
            number("d"),
            number("dp"),
            number("dq"),
            number("qi"),
            public,
        )
        return cls(private.private_key())

    def jwk(self) -> dict[str, str]:
        """The key as an Arweave wallet file holds it."""
        private = self._key.private_numbers()

        def encode(value: int) -> str:
            return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

        return {
            "kty": "RSA",
            "e": encode(private.public_numbers.e),
            "n": encode(private.public_numbers.n),
            "d": encode(private.d),
            "p": encode(private.p),
            "q": encode(private.q),
            "dp": encode(private.dmp1),
            "dq": encode(private.dmq1),
            "qi": encode(private.iqmp),
        }

    @property
    def owner(self) -> bytes:
        return self._owner

    @property
    def address(self) -> str:
        return _b64url(hashlib.sha256(self._owner).digest())

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(
            message,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SIGN_SALT_LENGTH),
            hashes.SHA256(),
        )


def create(
    *,
    signer: Signer,
    data: bytes,
    target: bytes | None = None,
    anchor: bytes | None = None,
    tags: Iterable[Tag] = (),
) -> DataItem:
    """A data item signed by `signer`, laid out as arbundles' createData lays it out."""
    tags = tuple(tags)
    tag_bytes = encode_tags(tags)
    for name, value in (("target", target), ("anchor", anchor)):
        if value is not None and len(value) != ADDRESS_LENGTH:
            raise Ans104Error(f"{name} must be {ADDRESS_LENGTH} bytes, got {len(value)}")
    data = bytes(data)
    message = _signature_data(signer.signature_type, signer.owner, target, anchor, tag_bytes, data)
    signature = signer.sign(message)
    return DataItem(signer.signature_type, signature, signer.owner, target, anchor, tags, data)


def serialize(item: DataItem) -> bytes:
    """The item's bytes: those it was parsed from, or its layout when created."""
    return item.raw
