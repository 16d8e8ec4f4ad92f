"""Code that runs in child processes started by the crash and concurrency tests.

A child does not inherit the in-process cheap-KDF switch by contract (it may be started by
spawn or forkserver), so each one enables `vault._testing.cheap_kdf()` itself.
"""

from __future__ import annotations

import random
import sys
import traceback
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier

from botvault._testing import cheap_kdf
from botvault.open_vault import Vault
from tests.helpers.vaultfiles import add_generic, snapshot

NAMES = tuple(f"n{i}" for i in range(8))

# Messages a crash writer sends, each one small (well under PIPE_BUF, so a write is atomic):
#   ("open", generation, state)    once, after opening
#   ("intent", generation, state)  before a save: what the file holds if the save lands
#   ("done", generation, state)    after the save returned
#   ("error", text)                the child failed on its own (the test then fails)
Message = tuple[str, int, dict[str, str]] | tuple[str, str]


def _next_op(rng: random.Random, state: dict[str, str], step: str) -> tuple[str, ...]:
    free = [n for n in NAMES if n not in state]
    names = sorted(state)
    choices = ["edit"] * 3
    if free:
        choices += ["add", "add"]
        if names:
            choices.append("rename")
    if len(names) > 2:
        choices.append("remove")
    kind = rng.choice(choices) if names else "add"
    if kind == "add":
        return ("add", rng.choice(free), step)
    if kind == "edit":
        return ("edit", rng.choice(names), step)
    if kind == "rename":
        return ("rename", rng.choice(names), rng.choice(free))
    return ("remove", rng.choice(names))


def _expected(state: dict[str, str], op: tuple[str, ...]) -> dict[str, str]:
    after = dict(state)
    if op[0] in ("add", "edit"):
        after[op[1]] = op[2]
    elif op[0] == "rename":
        after[op[2]] = after.pop(op[1])
    else:
        del after[op[1]]
    return after


def _apply(v: Vault, op: tuple[str, ...]) -> None:
    if op[0] == "add":
        # A key of its own (one key, one entry): a renamed entry keeps "key-NAME".
        add_generic(v, op[1], note=op[2], api_key=f"key-{op[1]}-{op[2]}")
    elif op[0] == "edit":
        v.edit(op[1], note=op[2])
    elif op[0] == "rename":
        v.rename(op[1], op[2])
    else:
        v.remove(op[1])


def _checked(state: dict[str, str], expected: dict[str, str], op: tuple[str, ...]
             ) -> dict[str, str]:
    if state != expected:
        raise AssertionError(f"after {op}: {state} != {expected}")
    return state


def crash_writer(path: str, passphrase: str, seed: int, conn: Connection) -> None:
    """Save forever (until SIGKILLed), announcing each save before and after it."""
    try:
        with cheap_kdf(), Vault.open(path, passphrase) as v:
            rng = random.Random(seed)
            state = snapshot(v)
            conn.send(("open", v.generation, state))
            step = 0
            while True:
                step += 1
                op = _next_op(rng, state, f"s{seed}-{step}")
                after = _expected(state, op)
                conn.send(("intent", v.generation + 1, after))
                _apply(v, op)
                state = _checked(snapshot(v), after, op)
                conn.send(("done", v.generation, state))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        sys.exit(1)


def concurrent_adder(path: str, passphrase: str, worker: int, count: int,
                     barrier: Barrier) -> None:
    """Open the vault, wait for the others, then add `count` entries one save each."""
    with cheap_kdf(), Vault.open(path, passphrase) as v:
        barrier.wait()
        last = v.generation
        for i in range(count):
            add_generic(v, f"w{worker}-{i:02d}", note=f"worker {worker}")
            if v.generation <= last:
                raise AssertionError(f"generation went from {last} to {v.generation}")
            last = v.generation
            mine = {n for n in snapshot(v) if n.startswith(f"w{worker}-")}
            if mine != {f"w{worker}-{j:02d}" for j in range(i + 1)}:
                raise AssertionError(f"worker {worker} lost its own entries: {sorted(mine)}")


def die_before_rename(path: str, passphrase: str) -> None:
    """Start a save and die by SIGKILL just before the rename: a complete, fsynced temp
    file is left behind, as after a power cut at that moment."""
    import os
    import signal

    def killed(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    with cheap_kdf(), Vault.open(path, passphrase) as v:
        os.replace = killed
        add_generic(v, "never-saved")
