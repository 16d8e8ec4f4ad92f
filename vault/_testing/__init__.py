"""TEST ONLY: helpers that make vaults cheap to open. Never imported by the library or CLI.

`cheap_kdf()` lets vaults use `CHEAPEST_TEST_ONLY` (8 KiB, 1 pass), far below the floor,
inside this process only. A file with those parameters is refused everywhere else, so a
vault made in a test can never pass for a real one, and the CLI has no way to enable it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .. import crypto

if TYPE_CHECKING:
    from ..open_vault import Vault

__all__ = ["CHEAPEST_TEST_ONLY", "FLOOR_CLI_ARGS", "cheap_kdf", "sealer_of"]

CHEAPEST_TEST_ONLY = crypto.CHEAPEST_TEST_ONLY
# The cheapest parameters the CLI accepts (the floor), for tests that run the real binary.
FLOOR_CLI_ARGS = ("--kdf-memory", "19", "--kdf-iterations", "2", "--kdf-parallelism", "1")


@contextlib.contextmanager
def cheap_kdf() -> Iterator[crypto.KdfParams]:
    previous = crypto._test_kdf_allowed
    crypto._test_kdf_allowed = True
    try:
        yield CHEAPEST_TEST_ONLY
    finally:
        crypto._test_kdf_allowed = previous


def sealer_of(vault: Vault) -> crypto.Sealer:
    """The sealer of an open vault, for the tests that make it repeat a nonce (the library
    has no public way to, on purpose)."""
    return vault._file.sealer
