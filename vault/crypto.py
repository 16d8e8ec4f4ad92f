"""Key derivation, key wrapping and sealing.

passphrase -> Argon2id -> key-encryption key (KEK) -> wraps a random 32-byte data key.
Records are sealed with XChaCha20-Poly1305 under a subkey of the data key; the whole file
is authenticated with keyed BLAKE2b under another subkey. Parameters from a file are checked
against a floor and ceilings *before* any expensive work.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nacl import bindings as _sodium
from nacl.exceptions import CryptoError as _NaclCryptoError

from .errors import AuthenticationError, FormatError, InvalidInputError

__all__ = [
    "CEILING",
    "FLOOR",
    "KEY_SIZE",
    "NONCE_SIZE",
    "RECOMMENDED_MEMORY_KIB",
    "SALT_SIZE",
    "TAG_SIZE",
    "KdfParams",
    "NonceReuseError",
    "Sealer",
    "calibrate",
    "derive_kek",
    "encode_passphrase",
    "mac",
    "open_sealed",
    "subkey",
    "verify_mac",
]

KEY_SIZE = 32
SALT_SIZE = 16
NONCE_SIZE = _sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
TAG_SIZE = _sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES  # 16
MAC_SIZE = 32
RECOMMENDED_MEMORY_KIB = 256 * 1024


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost parameters: memory in KiB, passes, lanes."""

    memory_kib: int
    iterations: int
    parallelism: int

    def describe(self) -> str:
        return (f"Argon2id, {self.memory_kib // 1024} MiB, {self.iterations} passes, "
                f"{self.parallelism} lanes")

    def is_test_only(self) -> bool:
        return self == CHEAPEST_TEST_ONLY


# Below this a stolen file is cheap to brute-force (OWASP's minimum for Argon2id).
FLOOR = KdfParams(memory_kib=19 * 1024, iterations=2, parallelism=1)
# Above this a hostile file could make us swap or hang for minutes.
CEILING = KdfParams(memory_kib=4 * 1024 * 1024, iterations=64, parallelism=16)

# TEST ONLY. Far below the floor, so that tests can open thousands of vaults. Vaults that
# use it open only inside `vault._testing.cheap_kdf()`; the CLI never enables that.
CHEAPEST_TEST_ONLY = KdfParams(memory_kib=8, iterations=1, parallelism=1)
_test_kdf_allowed = False


def check_params(params: KdfParams, *, error: type[FormatError | InvalidInputError]) -> None:
    """Refuse parameters outside [FLOOR, CEILING] before running anything expensive."""
    if params.is_test_only() and _test_kdf_allowed:
        return
    problems = []
    if params.memory_kib < FLOOR.memory_kib:
        problems.append(f"memory {params.memory_kib} KiB is below the floor of 19 MiB")
    if params.memory_kib > CEILING.memory_kib:
        problems.append(f"memory {params.memory_kib} KiB is above the ceiling of 4 GiB")
    if params.iterations < FLOOR.iterations:
        problems.append(f"{params.iterations} passes is below the floor of 2")
    if params.iterations > CEILING.iterations:
        problems.append(f"{params.iterations} passes is above the ceiling of 64")
    if not FLOOR.parallelism <= params.parallelism <= CEILING.parallelism:
        problems.append(f"{params.parallelism} lanes is outside 1..16")
    if problems:
        raise error("KDF parameters out of range: " + "; ".join(problems))


def encode_passphrase(passphrase: str | bytes) -> bytes:
    """Bytes for the KDF. Text is NFC-normalised so that the same passphrase typed through
    different input methods derives the same key."""
    if isinstance(passphrase, bytes):
        data = passphrase
    else:
        data = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    if not data:
        raise InvalidInputError("the passphrase is empty")
    return data


def derive_kek(passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
    check_params(params, error=FormatError)
    # Imported here: argon2 loads a C extension that `--help` and `--version` do not need.
    from argon2.low_level import Type, hash_secret_raw

    return hash_secret_raw(passphrase, salt, params.iterations, params.memory_kib,
                           params.parallelism, KEY_SIZE, Type.ID)


def calibrate(target_seconds: float = 1.0, *, memory_kib: int = RECOMMENDED_MEMORY_KIB,
              parallelism: int | None = None,
              clock: Callable[[], float] = time.perf_counter) -> KdfParams:
    """Passes needed for about `target_seconds` at `memory_kib` on this machine.

    Two probes (2 and 4 passes) separate the fixed cost of allocating the memory from the
    cost per pass; one cold probe alone was seen to misjudge by 2x on a busy machine.
    """
    lanes = parallelism or max(1, min(4, os.cpu_count() or 1))
    check_params(KdfParams(memory_kib, FLOOR.iterations, lanes), error=InvalidInputError)
    timings = {}
    for passes in (2, 4):
        start = clock()
        derive_kek(b"calibration", bytes(SALT_SIZE), KdfParams(memory_kib, passes, lanes))
        timings[passes] = clock() - start
    per_pass = (timings[4] - timings[2]) / 2
    if per_pass <= 0:  # noise swamped the difference: charge everything to the passes
        per_pass = timings[4] / 4
    fixed = max(0.0, timings[2] - 2 * per_pass)
    passes = round((target_seconds - fixed) / max(per_pass, 1e-6))
    return KdfParams(memory_kib, max(FLOOR.iterations, min(CEILING.iterations, passes)), lanes)


def subkey(data_key: bytes, purpose: bytes) -> bytes:
    """A key for one purpose, so no key is ever used by two algorithms."""
    return hashlib.blake2b(b"", key=data_key, person=purpose.ljust(16, b"\0"),
                           digest_size=KEY_SIZE).digest()


def mac(key: bytes, data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, key=key, digest_size=MAC_SIZE).digest()


def verify_mac(key: bytes, data: bytes | memoryview, tag: bytes) -> None:
    if not hmac.compare_digest(mac(key, data), tag):
        raise AuthenticationError


class NonceReuseError(RuntimeError):
    """The random source returned a nonce already used under this key. Never expected."""


class Sealer:
    """Seals with fresh random nonces and refuses to use one nonce twice under its key.

    The set of nonces starts from the ones already in the file (`seen`); the random source
    is injectable so tests can show the guard working.
    """

    def __init__(self, key: bytes, *, seen: Iterable[bytes] = (),
                 random: Callable[[int], bytes] = os.urandom) -> None:
        self._key = key
        self._used = set(seen)
        self._random = random

    def note(self, nonce: bytes) -> None:
        self._used.add(nonce)

    def seal(self, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
        nonce = self._random(NONCE_SIZE)
        if len(nonce) != NONCE_SIZE or nonce in self._used:
            raise NonceReuseError("refusing to seal: the random source repeated a nonce")
        self._used.add(nonce)
        return nonce, _sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
            plaintext, aad, nonce, self._key)

    def __repr__(self) -> str:
        return f"Sealer(<key redacted>, {len(self._used)} nonces used)"


def open_sealed(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    if _fast_open is not None:
        return _fast_open(key, nonce, ciphertext, aad)
    try:
        plain: bytes = _sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, aad, nonce, key)
    except _NaclCryptoError:
        raise AuthenticationError from None
    return plain


def _make_fast_open() -> Callable[[bytes, bytes, bytes, bytes], bytes] | None:
    """libsodium's decrypt called directly through PyNaCl's cffi module.

    PyNaCl's wrapper spends 3-4x the cipher's own time on argument checks and message
    formatting; opening 10,000 records went from 37 ms to about 10. `nacl._sodium` is
    private, so when it is missing the public binding is used instead.
    """
    try:
        from nacl._sodium import ffi, lib
    except ImportError:  # pragma: no cover -- depends on the installed PyNaCl
        return None
    decrypt = lib.crypto_aead_xchacha20poly1305_ietf_decrypt

    def fast_open(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        size = len(ciphertext) - TAG_SIZE
        if size < 0 or len(nonce) != NONCE_SIZE or len(key) != KEY_SIZE:
            raise AuthenticationError
        out = ffi.new("unsigned char[]", size or 1)
        out_len = ffi.new("unsigned long long *")
        if decrypt(out, out_len, ffi.NULL, ciphertext, len(ciphertext), aad, len(aad), nonce,
                   key) != 0:
            raise AuthenticationError
        return bytes(ffi.buffer(out, out_len[0]))

    return fast_open


_fast_open = _make_fast_open()
