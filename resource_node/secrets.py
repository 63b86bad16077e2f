"""A resource node's chain of secrets (PROTOCOL 4.13): what it commits to and reveals.

The chain of epoch E of a key starts from `crypto.secrets_seed(key, E)`, the deepest value, and
hashes up `length` times to its head, the value the node commits (genesis `secretsHead`, or a
CommitSecrets transaction). The secret of height h, for a chain committed at `base`, is the value
`s` with `keccak^(h - base)(s) == head`: `length - (h - base)` hashes above the seed. The chain
reaches the heights `base` to `base + length`.

Walking up from the seed costs up to `length` hashes, so the chain is walked once
(`SecretChain.derive`, about 0.15 s for the dev length, 65536: run it in a worker thread) and a
checkpoint kept every `CHECKPOINT_EVERY` values: the secret of any height then costs at most
that many hashes, and the secrets asked last are remembered.

The dev resource nodes of `chain.protocol.genesis.dev_genesis` commit epoch 0 of the dev length
(`crypto.dev_secrets_head`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from chain.protocol import crypto
from chain.protocol.types import Secrets

CHECKPOINT_EVERY = 256


@dataclass(frozen=True, slots=True)
class SecretChain:
    """Epoch `epoch` of a key's chain of secrets: `length` values above its seed, `head` the
    last. `checkpoints[i]` is the value `i * CHECKPOINT_EVERY` hashes above the seed."""

    epoch: int
    length: int
    head: bytes
    checkpoints: tuple[bytes, ...]

    @classmethod
    def derive(
        cls, private_key: bytes, epoch: int, length: int = crypto.SECRET_CHAIN_LENGTH
    ) -> SecretChain:
        """Walk the chain of `epoch` once (`length` hashes) and keep its checkpoints; the
        same chain again is the one walked before (a value: nothing of it changes)."""
        return _derived(private_key, epoch, length)

    @classmethod
    def walk(cls, private_key: bytes, epoch: int, length: int) -> SecretChain:
        if length < 1:
            raise ValueError(f"a chain of secrets has at least one value, got length {length}")
        if not 0 <= epoch < 1 << 64:
            raise ValueError(f"an epoch is 8 bytes, got {epoch}")
        value = crypto.secrets_seed(private_key, epoch)
        checkpoints = [value]
        walked = 0
        while walked < length:
            steps = min(CHECKPOINT_EVERY, length - walked)
            value = crypto.hash_steps(value, steps)
            walked += steps
            if steps == CHECKPOINT_EVERY:
                checkpoints.append(value)
        return cls(epoch, length, value, tuple(checkpoints))

    def reaches(self, height: int, base: int) -> bool:
        """Whether this chain, committed at `base`, holds a secret for `height`."""
        return 0 <= height - base <= self.length

    def secret(self, height: int, base: int) -> bytes:
        """The secret of `height` for this chain committed at `base`: the value that hashes
        `height - base` times to the head. ValueError when the chain does not reach it."""
        if not self.reaches(height, base):
            raise ValueError(
                f"the chain of secrets committed at {base} (length {self.length}) does not "
                f"reach height {height}"
            )
        depth = self.length - (height - base)  # hashes above the seed
        index, rest = divmod(depth, CHECKPOINT_EVERY)
        return _climb(self.checkpoints[index], rest)


@functools.lru_cache(maxsize=4096)
def _climb(checkpoint: bytes, steps: int) -> bytes:
    """`steps` hashes above a checkpoint. The tasks of one block share their height, and a
    node asks the secret of each task it computes and of each it reveals: remembered, each
    height's secret is hashed once."""
    return crypto.hash_steps(checkpoint, steps)


def _hash32(value: object) -> bytes | None:
    if isinstance(value, str) and len(value) == 66 and value[:2] in ("0x", "0X"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            return None
    return None


def _height(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63:
        return value
    return None


def listed_secrets(value: object) -> Secrets | None:
    """The `secrets` member of a getResourceNodes entry (`{base, head, revealed,
    revealedHeight}`, every member checked: an untrusted answer), or None when it is null;
    ValueError, naming what is wrong, when it is not well formed."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"secrets: expected an object or null, got {type(value).__name__}")
    base, height = _height(value.get("base")), _height(value.get("revealedHeight"))
    head, revealed = _hash32(value.get("head")), _hash32(value.get("revealed"))
    if base is None or height is None or head is None or revealed is None or height < base:
        raise ValueError(f"secrets: not {{base, head, revealed, revealedHeight}}: {value!r:.200}")
    return Secrets(head=head, base=base, revealed_height=height, revealed=revealed)


@functools.lru_cache(maxsize=16)
def _derived(private_key: bytes, epoch: int, length: int) -> SecretChain:
    return SecretChain.walk(private_key, epoch, length)
