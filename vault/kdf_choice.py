"""Which Argon2id cost a new vault gets (`init`), what an upgrade makes of an old one
(`passwd --upgrade-kdf`) and what `doctor` judges: one policy, so that the three never
disagree (doctor once asked for 3 passes that a default `init` on a busy machine, and the
upgrade doctor pointed to, would not give: doctor could never pass).

The policy: at least 256 MiB of memory and Argon2id's floor of passes. The number of passes
above that is the calibration's job (about one second on the machine that unlocks), not a
fixed figure: a machine that affords only 2 passes at 256 MiB in a second gets 2, and a
vault there is as strong as that machine can open in the time a person waits.

Parameters are checked before anything is asked or run: impossible ones, and ones this
machine could not open within the bound every later open applies, are refused first.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import InvalidInputError, VaultWarning

if TYPE_CHECKING:
    from .crypto import KdfParams

__all__ = ["DEFAULT_MEMORY_MIB", "POLICY_MEMORY_KIB", "POLICY_MIN_PASSES", "NewVaultKdf",
           "meets_policy", "new_vault_kdf", "policy_text", "upgraded_kdf"]

DEFAULT_MEMORY_MIB = 256
POLICY_MEMORY_KIB = DEFAULT_MEMORY_MIB * 1024
POLICY_MIN_PASSES = 2  # crypto.FLOOR.iterations: what a calibration never goes below
_MIN_PASSES = 2  # what the checks assume for a cost still to be calibrated


def _quiet(_what: str) -> AbstractContextManager[object]:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class NewVaultKdf:
    """A new vault's cost, checked; `iterations` None: calibrated by `choose`."""

    memory_kib: int
    iterations: int | None
    parallelism: int

    def choose(self, target_seconds: float, *,
               busy: Callable[[str], AbstractContextManager[object]] | None = None
               ) -> KdfParams:
        """The parameters to create with: calibrated to about `target_seconds` on this
        machine (inside `busy("calibrating…")`) unless the passes were given. A VaultWarning
        below the recommended memory."""
        from .crypto import RECOMMENDED_MEMORY_KIB, KdfParams, calibrate

        if self.iterations is None:
            with (busy or _quiet)("calibrating…"):
                params = calibrate(target_seconds, memory_kib=self.memory_kib,
                                   parallelism=self.parallelism)
        else:
            params = KdfParams(self.memory_kib, self.iterations, self.parallelism)
        if params.memory_kib < RECOMMENDED_MEMORY_KIB:
            warnings.warn(VaultWarning(f"{params.describe()} is below the recommended 256 MiB; "
                                       "a stolen vault is cheaper to attack"), stacklevel=2)
        return params


def new_vault_kdf(memory_mib: int | None = None, iterations: int | None = None,
                  parallelism: int | None = None) -> NewVaultKdf:
    """The flags of `init`, checked (InvalidInputError) before any passphrase is asked:
    memory in MiB (default 256), passes (default: calibrated), lanes (default min(4, CPUs))."""
    from .crypto import INIT_MAX_SECONDS, KdfParams, check_machine, check_params

    memory = (memory_mib if memory_mib is not None else DEFAULT_MEMORY_MIB) * 1024
    lanes = parallelism if parallelism is not None else min(4, os.cpu_count() or 1)
    probe = KdfParams(memory, iterations or _MIN_PASSES, lanes)
    check_params(probe, error=InvalidInputError)
    # The same bound every later open applies (with a margin): never make a vault that
    # this machine would refuse to open.
    check_machine(probe, error=InvalidInputError, limit=INIT_MAX_SECONDS)
    return NewVaultKdf(memory, iterations, lanes)


def meets_policy(kdf: KdfParams) -> bool:
    """Whether `kdf` is at least today's policy: what `init` makes by default and what
    `passwd --upgrade-kdf` always reaches (memory never lowered, at least POLICY_MEMORY_KIB;
    passes never lowered, at least the floor)."""
    return kdf.memory_kib >= POLICY_MEMORY_KIB and kdf.iterations >= POLICY_MIN_PASSES


def policy_text() -> str:
    return (f"at least {POLICY_MEMORY_KIB // 1024} MiB, passes calibrated to about one second "
            f"(at least {POLICY_MIN_PASSES})")


def upgraded_kdf(current: KdfParams) -> tuple[KdfParams, KdfParams | None]:
    """Today's policy calibrated here (at least 256 MiB, never less memory than `current`)
    and what an upgrade makes of `current`: never less memory, passes or lanes; None when
    `current` is already at least as strong."""
    from .crypto import calibrate, strengthened

    proposed = calibrate(memory_kib=max(POLICY_MEMORY_KIB, current.memory_kib))
    # Never less than `proposed` (>= POLICY_MEMORY_KIB, >= the floor of passes): after an
    # upgrade, or when none is needed, `meets_policy` holds, which doctor's fix relies on.
    return proposed, strengthened(current, proposed)
