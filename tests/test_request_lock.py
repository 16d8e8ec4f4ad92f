"""botvault.request_lock: one key's order across processes, threads and asyncio tasks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from botvault.errors import ConflictError, InsecurePermissionsError
from botvault.nonces import key_id
from botvault.request_lock import KeyOrder, RequestLockTimeout, requests_dir

_HOLDER = r"""
import sys, time
from botvault.request_lock import KeyOrder
order = KeyOrder(sys.argv[1], "kraken-spot", "the-api-key")
with order.hold():
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(vault: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(vault), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_keyed_by_exchange_and_api_key_like_the_nonce_counter(tmp_path: Path) -> None:
    vault = tmp_path / "vault.bv"
    order = KeyOrder(vault, "kraken-spot", "the-api-key")
    assert order.key_id == key_id("kraken-spot", "the-api-key")
    assert order.path == requests_dir(vault) / f"{order.key_id}.lock"
    assert KeyOrder(vault, "kraken-futures", "the-api-key").key_id != order.key_id


def test_another_process_waits_and_times_out(tmp_path: Path) -> None:
    vault = tmp_path / "vault.bv"
    proc = _holder(vault, 30)
    try:
        with pytest.raises(RequestLockTimeout), \
                KeyOrder(vault, "kraken-spot", "the-api-key").hold(timeout=0.2):
            pass
        # A different key is not held up.
        with KeyOrder(vault, "kraken-spot", "another-key").hold(timeout=0.2):
            pass
    finally:
        proc.kill()
        proc.wait()
    # The kernel released the dead holder's lock.
    with KeyOrder(vault, "kraken-spot", "the-api-key").hold(timeout=5):
        pass


def test_threads_exclude_each_other(tmp_path: Path) -> None:
    order = KeyOrder(tmp_path / "vault.bv", "kraken-spot", "k")
    inside = 0
    most = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        for _ in range(30):
            with order.hold():
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.0005)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1


def test_reentry_is_refused_not_deadlocked(tmp_path: Path) -> None:
    order = KeyOrder(tmp_path / "vault.bv", "kraken-spot", "k")
    with order.hold(), pytest.raises(ConflictError, match="already holds"), order.hold():
        pass
    with order.hold():  # released properly after the refusal
        pass


def test_asyncio_tasks_queue_in_order_without_blocking_the_loop(tmp_path: Path) -> None:
    order = KeyOrder(tmp_path / "vault.bv", "kraken-spot", "k")
    finished: list[int] = []
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    async def request(i: int) -> None:
        async with order.hold_async():
            await asyncio.sleep(0.01)
            finished.append(i)

    async def main() -> None:
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        tasks = []
        for i in range(5):
            tasks.append(asyncio.create_task(request(i)))
            await asyncio.sleep(0)  # arrival order 0, 1, 2, ...
        await asyncio.gather(*tasks)
        stop.set()
        await tick

    asyncio.run(main())
    assert finished == [0, 1, 2, 3, 4]
    assert ticks > 10  # the loop kept running while tasks waited


def test_asyncio_timeout_cancellation_and_reentry(tmp_path: Path) -> None:
    vault = tmp_path / "vault.bv"
    order = KeyOrder(vault, "kraken-spot", "the-api-key")
    proc = _holder(vault, 30)

    async def main() -> None:
        with pytest.raises(RequestLockTimeout):
            async with order.hold_async(timeout=0.2):
                pass
        waiter = asyncio.create_task(order.hold_async(timeout=30).__aenter__())
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    try:
        asyncio.run(main())
    finally:
        proc.kill()
        proc.wait()

    async def after() -> None:
        async with order.hold_async(timeout=5):
            with pytest.raises(ConflictError, match="already holds"):
                async with order.hold_async():
                    pass

    asyncio.run(after())


def test_requests_directory_must_be_private(tmp_path: Path) -> None:
    vault = tmp_path / "vault.bv"
    requests_dir(vault).mkdir(mode=0o755)
    requests_dir(vault).chmod(0o755)
    with pytest.raises(InsecurePermissionsError, match="readable by other users") as caught, \
            KeyOrder(vault, "kraken-spot", "k").hold():
        pass
    assert caught.value.hint == f"run: chmod 700 {requests_dir(vault)}"


def test_for_key_id_is_the_same_lock_as_by_api_key(tmp_path: Path) -> None:
    vault = tmp_path / "vault.bv"
    by_key = KeyOrder(vault, "kraken-spot", "the-api-key")
    by_id = KeyOrder.for_key_id(vault, key_id("kraken-spot", "the-api-key"))
    assert by_id.path == by_key.path
    proc = _holder(vault, 5)
    try:
        with pytest.raises(RequestLockTimeout), by_id.hold(timeout=0.2):
            pass
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("bad", ["", "../" + "0" * 29, "A" * 32, "0" * 31, "0" * 33,
                                 "0" * 32 + "\n"])
def test_for_key_id_refuses_anything_but_a_key_id(tmp_path: Path, bad: str) -> None:
    from botvault.errors import InvalidInputError

    with pytest.raises(InvalidInputError):
        KeyOrder.for_key_id(tmp_path / "vault.bv", bad)


def test_the_agent_clients_default_order_timeout_is_the_modules() -> None:
    """The client keeps its own copy (it loads this module only when a lock is taken)."""
    import inspect

    from botvault.agent.client import AgentClient
    from botvault.request_lock import DEFAULT_TIMEOUT

    default = inspect.signature(AgentClient.request_lock).parameters["timeout"].default
    assert default == DEFAULT_TIMEOUT


def test_a_loop_keeps_the_file_open_yet_follows_a_replaced_one(tmp_path: Path) -> None:
    # The asyncio form keeps the lock file open between requests; when the file is removed
    # (or the directory replaced) it must lock the file other processes now lock, never the
    # orphan it still has open.
    vault = tmp_path / "vault.bv"
    order = KeyOrder(vault, "kraken-spot", "the-api-key")

    async def main() -> None:
        async with order.hold_async(timeout=1):
            pass
        order.path.unlink()
        proc = _holder(vault, 30)  # locks the new file at the same path
        try:
            with pytest.raises(RequestLockTimeout):
                async with order.hold_async(timeout=0.3):
                    pass
        finally:
            proc.kill()
            proc.wait()
        async with order.hold_async(timeout=5):  # free again: the holder is gone
            pass

    asyncio.run(main())


def test_a_loop_checks_the_directory_again_when_it_reopens(tmp_path: Path) -> None:
    vault = tmp_path / "vault.bv"
    order = KeyOrder(vault, "kraken-spot", "k")

    async def main() -> None:
        async with order.hold_async(timeout=1):
            pass
        order.path.unlink()
        requests_dir(vault).chmod(0o755)
        with pytest.raises(InsecurePermissionsError):
            async with order.hold_async(timeout=1):
                pass

    asyncio.run(main())


def test_two_event_loops_of_one_process_exclude_each_other(tmp_path: Path) -> None:
    # Each loop has its own descriptor: flock excludes across them as across processes.
    order = KeyOrder(tmp_path / "vault.bv", "kraken-spot", "k")
    inside = threading.Event()
    leave = threading.Event()

    async def first() -> None:
        async with order.hold_async(timeout=5):
            inside.set()
            while not leave.is_set():
                await asyncio.sleep(0.005)

    thread = threading.Thread(target=asyncio.run, args=(first(),))
    thread.start()
    try:
        assert inside.wait(10)

        async def second(timeout: float) -> None:
            async with order.hold_async(timeout=timeout):
                pass

        with pytest.raises(RequestLockTimeout):
            asyncio.run(second(0.2))
    finally:
        leave.set()
        thread.join(10)
    asyncio.run(second(5))
