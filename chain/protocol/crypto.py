"""Hashing and signatures: keccak, EIP-712 (PROTOCOL 3), secp256k1, Ed25519, dev keys.

The EIP-712 digest is computed directly from the type tables in `types` (all fields are
static types, so the encoding is a flat concatenation) and signatures are recovered with
coincurve. The test vectors, produced by ethers.js, and a cross-check against eth-account
keep both honest.
"""

from __future__ import annotations

import sys
from functools import lru_cache

import coincurve
import sha3  # safe-pysha3: C keccak, about 4x faster than eth-hash's pycryptodome backend
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chain.protocol import wire
from chain.protocol.errors import InvalidSignature
from chain.protocol.types import MESSAGE_TYPES, Message, SignedTx, signer_of

DOMAIN_NAME = "AegisAI"
DOMAIN_VERSION = "1"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SIGNATURE_LENGTH = 65


def keccak(data: bytes) -> bytes:
    return sha3.keccak_256(data).digest()  # type: ignore[no-any-return]


DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId)"  # no verifyingContract


def domain(chain_id: int) -> dict[str, str | int]:
    """The EIP-712 domain a message of chain `chain_id` is signed under, as a dApp passes it
    to `signTypedData` (PROTOCOL 3)."""
    return {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id}


@lru_cache(maxsize=64)
def domain_separator(chain_id: int) -> bytes:
    type_hash = keccak(DOMAIN_TYPE.encode())
    return keccak(
        type_hash
        + keccak(DOMAIN_NAME.encode())
        + keccak(DOMAIN_VERSION.encode())
        + chain_id.to_bytes(32, "big")
    )


_TYPE_HASHES: dict[str, bytes] = {
    name: keccak(
        f"{name}({','.join(f'{abi} {field}' for field, _attr, abi in cls.FIELDS)})".encode()
    )
    for name, cls in MESSAGE_TYPES.items()
}


def _encode_field(abi: str, value: object) -> bytes:
    if abi == "address":
        assert isinstance(value, str)
        return b"\x00" * 12 + bytes.fromhex(value[2:])
    if abi.startswith("uint"):
        assert isinstance(value, int)
        return value.to_bytes(32, "big")
    if abi == "bool":
        return (1 if value else 0).to_bytes(32, "big")
    if abi == "bytes32":
        assert isinstance(value, bytes)
        return value
    if abi == "bytes":
        assert isinstance(value, str)
        return keccak(wire.decode_bytes_field(value))
    if abi == "string":
        assert isinstance(value, str)
        return keccak(value.encode())
    raise ValueError(f"unsupported EIP-712 type {abi}")


def struct_hash(msg: Message) -> bytes:
    parts = [_TYPE_HASHES[msg.TYPE]]
    parts.extend(_encode_field(abi, getattr(msg, attr)) for _name, attr, abi in msg.FIELDS)
    return keccak(b"".join(parts))


def digest(msg: Message, chain_id: int) -> bytes:
    """The EIP-712 signable hash of `msg`; for SubmitTask this is the taskHash."""
    return keccak(b"\x19\x01" + domain_separator(chain_id) + struct_hash(msg))


def tx_hash(msg_digest: bytes, signature: bytes) -> bytes:
    return keccak(msg_digest + signature)


def address_of_public_key(public_key: coincurve.PublicKey) -> str:
    return wire.checksum(keccak(public_key.format(compressed=False)[1:])[-20:])


# A client signs many messages with few keys: building coincurve's key object (a context and
# a key check) and deriving the address cost more than the signature itself.
@lru_cache(maxsize=1024)
def _signing_key(private_key: bytes) -> coincurve.PrivateKey:
    return coincurve.PrivateKey(private_key)


@lru_cache(maxsize=1024)
def address_of_private_key(private_key: bytes) -> str:
    return address_of_public_key(_signing_key(private_key).public_key)


def sign_digest(msg_digest: bytes, private_key: bytes) -> bytes:
    """65-byte r || s || v signature (v = 27/28) over a 32-byte digest."""
    sig = _signing_key(private_key).sign_recoverable(msg_digest, hasher=None)
    return sig[:64] + bytes([sig[64] + 27])


def recoverable_signature(signature: bytes) -> bytes:
    """The 65-byte r || s || recid form libsecp256k1 recovers from, after the checks every
    signature must pass (length, v of 27 or 28, r and s in range, s in the lower half);
    InvalidSignature otherwise."""
    if len(signature) != SIGNATURE_LENGTH:
        raise InvalidSignature(f"signature must be {SIGNATURE_LENGTH} bytes, got {len(signature)}")
    v = signature[64]
    if v not in (27, 28):
        raise InvalidSignature(f"signature v must be 27 or 28, got {v}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    if not 0 < r < SECP256K1_N or not 0 < s <= SECP256K1_N // 2:
        raise InvalidSignature("signature r or s out of range (s must be in the lower half)")
    return signature[:64] + bytes([v - 27])


def recover_public_key(msg_digest: bytes, recoverable: bytes) -> coincurve.PublicKey:
    """The public key behind a checked `recoverable_signature`: the expensive part of a
    recovery, which runs without the GIL (coincurve is cffi)."""
    try:
        return coincurve.PublicKey.from_signature_and_message(recoverable, msg_digest, hasher=None)
    except Exception as exc:
        raise InvalidSignature("signature does not recover to a public key") from exc


def recover_digest(msg_digest: bytes, signature: bytes) -> str:
    """The address that signed `msg_digest`; InvalidSignature for malformed signatures."""
    return address_of_public_key(recover_public_key(msg_digest, recoverable_signature(signature)))


def sign_message(msg: Message, chain_id: int, private_key: bytes) -> SignedTx:
    """Sign `msg`; the key must be the one of the message's signer field."""
    signer = signer_of(msg)
    if address_of_private_key(private_key) != signer:
        raise ValueError(f"this key does not belong to the signer {signer} of the message")
    msg_digest = digest(msg, chain_id)
    signature = sign_digest(msg_digest, private_key)
    return SignedTx(msg, signature, msg_digest, tx_hash(msg_digest, signature), signer)


# The transactions verified last, by signature: a validator meets each transaction at least
# twice, gossiped (or sent by a client) and then in the proposal of the block that holds it,
# and a proposal's transactions are checked on the event loop. The same message, signature
# and chain are the same transaction, so the second check is a lookup and a comparison
# instead of a digest and a secp256k1 recovery. VERIFIED_CACHE entries, the oldest dropped
# first: more than a few blocks of a loaded network hold.
VERIFIED_CACHE = 4096
_verified: dict[bytes, tuple[int, SignedTx]] = {}  # the recovery threads add to it too


def verify_message(msg: Message, chain_id: int, signature: bytes) -> SignedTx:
    """Recover the signer of `msg` and check that it is the message's own signer field."""
    known = _verified.get(signature)
    if known is not None and known[0] == chain_id and known[1].message == msg:
        return known[1]
    msg_digest = digest(msg, chain_id)
    recovered = recover_digest(msg_digest, signature)
    return verified_tx(msg, signature, msg_digest, recovered, chain_id)


def verified_cache_len() -> int:
    """How many verified transactions `verify_message` holds (at most VERIFIED_CACHE)."""
    return len(_verified)


def verified_tx(
    msg: Message, signature: bytes, msg_digest: bytes, recovered: str, chain_id: int
) -> SignedTx:
    """The transaction of `msg` (its `msg_digest` taken for `chain_id`) once its signature
    recovered to `recovered`, which must be the message's own signer field; InvalidSignature
    otherwise, naming the chain and EIP-712 domain the digest was taken under: a message
    signed for another chain recovers to some other address, and this says which chain the
    signature had to be for."""
    expected = signer_of(msg)
    if recovered != expected:
        raise InvalidSignature(
            f"signature recovers to another address than the signer field; was it signed "
            f"for chainId {chain_id} (the EIP-712 domain in data.domain)?",
            expected=expected,
            recovered=recovered,
            chain_id=chain_id,
            domain=domain(chain_id),
            domain_type=DOMAIN_TYPE,
        )
    tx = SignedTx(msg, signature, msg_digest, tx_hash(msg_digest, signature), expected)
    while len(_verified) >= VERIFIED_CACHE:  # each step is one operation under the GIL
        try:
            _verified.pop(next(iter(_verified)), None)
        except (StopIteration, RuntimeError):  # emptied or changed by another thread
            break
    _verified[signature] = (chain_id, tx)
    return tx


def task_seed(task_hash: bytes, node_address: str) -> int:
    """A node's inference seed: int(keccak256(taskHash || address)[:8]) (PROTOCOL 4.4)."""
    return int.from_bytes(keccak(task_hash + bytes.fromhex(node_address[2:]))[:8], "big")


# Forced errors (PROTOCOL 4.13): hash chains of secrets


# How many heights a dev node's chain of secrets covers from its base: hashing the whole chain
# once takes about 0.15 s.
SECRET_CHAIN_LENGTH = 1 << 16
_SECRETS_TAG = b"inferchain/secrets/v1"


def hash_steps(value: bytes, steps: int) -> bytes:
    """keccak256 applied `steps` times: the secret `steps` heights below `value`."""
    for _ in range(steps):
        value = sha3.keccak_256(value).digest()
    return value


def secrets_seed(private_key: bytes, epoch: int = 0) -> bytes:
    """The deepest value of a node's chain of secrets, derived from its key: epoch k for the
    k-th chain the node commits (a fresh chain never repeats a revealed secret)."""
    return keccak(_SECRETS_TAG + private_key + epoch.to_bytes(8, "big"))


@lru_cache(maxsize=64)
def dev_secrets_head(private_key: bytes, epoch: int = 0) -> bytes:
    """The head a node with this key commits: its seed hashed SECRET_CHAIN_LENGTH times."""
    return hash_steps(secrets_seed(private_key, epoch), SECRET_CHAIN_LENGTH)


def is_forced_error(secret: bytes, task_hash: bytes, rate_bps: int) -> bool:
    """int(keccak256(secret || taskHash)) * 10000 < canaryRateBps * 2^256 (PROTOCOL 4.13)."""
    draw = int.from_bytes(keccak(secret + task_hash), "big")
    return draw * 10_000 < rate_bps << 256


def personal_message_hash(text: str) -> bytes:
    """EIP-191 personal_sign hash of a text message."""
    data = text.encode()
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode() + data)


# Ed25519 consensus keys (PROTOCOL 2 and 6)


def consensus_seed(account_private_key: bytes) -> bytes:
    """The 32-byte Ed25519 seed of a validator: keccak256 of its account private key."""
    return keccak(account_private_key)


def ed25519_private_key(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


def ed25519_public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def ed25519_verify(public_key: bytes, signature: bytes, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except Exception:
        return False
    return True


# Dev keys (PROTOCOL 2): m/44'/60'/0'/0/i from a mnemonic


@lru_cache(maxsize=1024)
def dev_private_key(mnemonic: str, index: int) -> bytes:
    limit = sys.getrecursionlimit()
    from eth_account import Account as EthAccount

    # Importing eth_account imports py_ecc, which raises the recursion limit to 100,000: deep
    # enough for C recursion to overflow the stack before a RecursionError. Set back at once.
    sys.setrecursionlimit(limit)
    EthAccount.enable_unaudited_hdwallet_features()
    acct = EthAccount.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{index}")
    return bytes(acct.key)


def eth_keys_backend_name() -> str:
    """The eth-keys backend in use; the pure-Python fallback is about 30x slower."""
    from eth_keys.backends import get_backend

    return type(get_backend()).__name__


# Consensus messages (PROTOCOL 6)

VOTE_TYPES = {"proposal": 0, "prevote": 1, "precommit": 2}


def vote_sign_bytes(
    chain_id: int, height: int, round_: int, vote_type: str, block_hash: bytes
) -> bytes:
    """Canonical bytes a validator signs: a domain tag, then the fields at fixed widths."""
    return (
        b"inferchain/vote/v1"
        + chain_id.to_bytes(8, "big")
        + height.to_bytes(8, "big")
        + round_.to_bytes(4, "big")
        + bytes([VOTE_TYPES[vote_type]])
        + block_hash
    )


def proposal_sign_bytes(
    chain_id: int, height: int, round_: int, valid_round: int, block_hash: bytes
) -> bytes:
    """Canonical bytes of a PROPOSAL(height, round, blockHash, validRound); -1 encodes as 0."""
    return (
        b"inferchain/proposal/v1"
        + chain_id.to_bytes(8, "big")
        + height.to_bytes(8, "big")
        + round_.to_bytes(4, "big")
        + (valid_round + 1).to_bytes(4, "big")
        + block_hash
    )
