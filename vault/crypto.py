"""Key derivation, key wrapping and sealing.

passphrase -> Argon2id -> key-encryption key (KEK) -> wraps a random 32-byte data key.
Records are sealed with XChaCha20-Poly1305 under a subkey of the data key; the whole file
is authenticated with keyed BLAKE2b under another subkey. Parameters from a file are checked
against a floor and ceilings *before* any expensive work.
"""

from __future__ import annotations

import hashlib
import hmac
import math
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
    "INIT_MAX_SECONDS",
    "KEY_SIZE",
    "MAX_UNLOCK_SECONDS",
    "NONCE_SIZE",
    "RECOMMENDED_MEMORY_KIB",
    "SALT_SIZE",
    "TAG_SIZE",
    "KdfParams",
    "NonceReuseError",
    "Sealer",
    "calibrate",
    "check_machine",
    "derive_kek",
    "encode_passphrase",
    "estimated_seconds",
    "mac",
    "open_sealed",
    "physical_memory_kib",
    "strengthened",
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


# What this machine is asked to do before the KDF runs. A header's parameters are not
# authenticated before the KDF (they decide it), so a hostile file can ask for anything up
# to the ceiling; these bounds depend on the machine, the ceiling does not.
MAX_UNLOCK_SECONDS = 30.0
# `init` and `passwd` stay at half of that, so that a vault made here on an idle day still
# opens on a busy one (the measured rate was seen to vary by up to 2x under load).
INIT_MAX_SECONDS = MAX_UNLOCK_SECONDS / 2
_PROBE_KIB = 8 * 1024
_measured: dict[str, float] = {}  # "rate": the probe's result, once per process


def physical_memory_kib() -> int | None:
    """This machine's RAM in KiB, or None where the OS does not say."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return pages * page_size // 1024 if pages > 0 and page_size > 0 else None


def kdf_rate() -> float:
    """KiB x passes per second that one lane of Argon2id manages here: the faster of two
    8 MiB one-pass probes (about 10 ms each), measured once per process. The small probe
    runs from cache more than a large KDF does, so it overestimates the speed and the
    estimate errs towards letting a vault open."""
    if "rate" not in _measured:
        from argon2.low_level import Type, hash_secret_raw

        best = math.inf
        for _ in range(2):
            start = time.perf_counter()
            hash_secret_raw(b"probe", bytes(SALT_SIZE), 1, _PROBE_KIB, 1, KEY_SIZE, Type.ID)
            best = min(best, time.perf_counter() - start)
        _measured["rate"] = _PROBE_KIB / max(best, 1e-6)
    return _measured["rate"]


def estimated_seconds(params: KdfParams, rate: float, cpus: int) -> float:
    """Seconds the KDF takes at `rate` (see `kdf_rate`), each lane on its own core at best."""
    lanes = max(1, min(params.parallelism, cpus))
    return params.memory_kib * params.iterations / (rate * lanes)


def check_machine(params: KdfParams, *, error: type[FormatError | InvalidInputError],
                  limit: float = MAX_UNLOCK_SECONDS, memory_kib: int | None = None,
                  rate: float | None = None) -> None:
    """Refuse parameters this machine cannot afford, before running them: memory above half
    the RAM, or an estimated time above `limit`. `memory_kib` and `rate` default to this
    machine's (tests pass their own to reach both branches on any machine)."""
    if params.is_test_only() and _test_kdf_allowed:
        return
    ram = memory_kib if memory_kib is not None else physical_memory_kib()
    if ram is not None and params.memory_kib > ram // 2:
        problem = f"its memory is above half of this machine's {ram // 1024} MiB of RAM"
    else:
        seconds = estimated_seconds(params, rate if rate is not None else kdf_rate(),
                                    os.cpu_count() or 1)
        if seconds <= limit:
            return
        problem = f"it would take about {seconds:.0f} s here, above the limit of {limit:.0f} s"
    if error is FormatError:
        hint = ("a damaged or hostile file can ask for this; if the vault is yours, open it "
                "on a machine with more memory or speed")
    else:
        hint = "choose less memory (--kdf-memory) or fewer passes (--kdf-iterations)"
    raise error(f"key derivation {params.describe()} is refused on this machine: {problem}",
                hint=hint)


def strengthened(current: KdfParams, proposed: KdfParams) -> KdfParams | None:
    """What an upgrade to `proposed` makes of `current`: never less memory, passes or lanes
    than either. None when `current` is already at least as strong in every one."""
    upgraded = KdfParams(max(current.memory_kib, proposed.memory_kib),
                         max(current.iterations, proposed.iterations),
                         max(current.parallelism, proposed.parallelism))
    return None if upgraded == current else upgraded


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
    check_machine(params, error=FormatError)
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
    # Never more than the open-time bound lets through (with init's margin).
    affordable = math.floor(INIT_MAX_SECONDS * kdf_rate() * max(1, min(lanes, os.cpu_count() or 1))
                            / memory_kib)
    return KdfParams(memory_kib, max(FLOOR.iterations, min(CEILING.iterations, passes, affordable)),
                     lanes)


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
        if _fast_seal is not None:
            return nonce, _fast_seal(self._key, nonce, plaintext, aad)
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


def _make_fast_seal() -> Callable[[bytes, bytes, bytes, bytes], bytes] | None:
    """libsodium's encrypt called directly, as `_make_fast_open` does for decrypt: the
    passphrase change re-seals every record, and the wrapper doubled its cost."""
    try:
        from nacl._sodium import ffi, lib
    except ImportError:  # pragma: no cover -- depends on the installed PyNaCl
        return None
    encrypt = lib.crypto_aead_xchacha20poly1305_ietf_encrypt

    def fast_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        if len(nonce) != NONCE_SIZE or len(key) != KEY_SIZE:
            raise ValueError("wrong key or nonce size")
        out = ffi.new("unsigned char[]", len(plaintext) + TAG_SIZE)
        out_len = ffi.new("unsigned long long *")
        if encrypt(out, out_len, plaintext, len(plaintext), aad, len(aad), ffi.NULL, nonce,
                   key) != 0:
            raise RuntimeError("libsodium refused to encrypt")
        return bytes(ffi.buffer(out, out_len[0]))

    return fast_seal


_fast_seal = _make_fast_seal()
