"""The agent's hot path (bench/bench_agent.py) keeps every guarantee of the slower one.

Waits are bounded by the kernel (SO_RCVTIMEO / SO_SNDTIMEO on a blocking socket) instead of
Python's per-call poll(); the client makes a nonce request's frame once; the agent finds a
grant's entry once per vault generation. Each still refuses, times out and follows changes
as before.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from botvault import InvalidInputError, Vault
from botvault.agent import AgentClient
from botvault.agent.ops import Agent
from botvault.agent.protocol import (
    MAX_ANSWER,
    AgentError,
    FrameReader,
    ProtocolError,
    encode_frame,
    nonce_answer_frame,
    send_frame,
    use_kernel_timeouts,
)
from botvault.agent.socket_location import unix_address
from botvault.errors import GrantError
from botvault.grant_ops import add_grant
from tests.agent_support import SPOT_AND_FUTURES, b64secret, make_vault, running

_TIMEVAL = struct.Struct("@ll")


def _rcvtimeo(sock: socket.socket) -> tuple[int, int]:
    sec, usec = _TIMEVAL.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                                                _TIMEVAL.size))
    return sec, usec


# -- kernel timeouts -------------------------------------------------------------------------


def test_reader_waits_in_the_kernel_and_still_times_out() -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        b.settimeout(30)  # a Python timeout would poll() before every recv
        reader = FrameReader(b, wait=0.2, frame_timeout=5)
        assert b.gettimeout() is None  # blocking: one recv per frame, no poll
        with pytest.raises(TimeoutError):
            reader.read()
        assert _rcvtimeo(b) == (0, 200_000)
        a.sendall(encode_frame({"n": 1}))
        assert reader.read() == {"n": 1}  # a timeout does not spoil the connection


def test_reader_without_a_wait_sets_no_kernel_timeout_but_bounds_a_begun_frame() -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        reader = FrameReader(b, wait=None, frame_timeout=0.2)
        a.sendall(encode_frame({"n": 1}))
        assert reader.read() == {"n": 1}
        assert _rcvtimeo(b) == (0, 0)  # zero: no timeout, the agent's wait for a request
        a.sendall(encode_frame({"n": 2})[:6])
        with pytest.raises(ProtocolError, match="in time"):
            reader.read()  # the rest of a frame that began: frame_timeout, in the kernel


def test_a_send_to_a_peer_that_never_reads_times_out() -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        use_kernel_timeouts(a, send=0.2)
        assert a.gettimeout() is None
        with pytest.raises(TimeoutError):
            send_frame(a, encode_frame({"pad": "x" * (MAX_ANSWER - 100)}, MAX_ANSWER))


# -- the client's nonce requests -------------------------------------------------------------


def test_nonce_frames_made_once_ask_the_agent_each_time(tmp_path: Path) -> None:
    keys = make_vault(tmp_path / "v.bv", SPOT_AND_FUTURES)
    with running(keys) as info, AgentClient(info.socket_path) as client:
        seen = [client.next_nonce("spot") for _ in range(40)]
        seen += [*client.nonces("spot", 3), client.next_nonce("spot")]
        assert seen == sorted(set(seen))  # strictly increasing, through the orjson switch
        with pytest.raises(InvalidInputError):
            client.nonces(["spot"], 1)  # type: ignore[arg-type]  # the agent refuses it
        with pytest.raises(InvalidInputError):
            client.nonces("spot", 0)
        assert client.next_nonce("fut") > 0  # the connection is still good


@contextlib.contextmanager
def _fake_agent(tmp_path: Path, answer: dict[str, Any]) -> Iterator[Path]:
    """A socket that answers every request with `answer` (a broken or hostile agent)."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    path = run / "agent.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen()

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                while conn.recv(65536):
                    conn.sendall(encode_frame(answer))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        listener.close()


@pytest.mark.parametrize("answer", [
    {"ok": True, "start": 5, "stop": 5, "step": 1},  # no nonce at all
    {"ok": True, "start": 5, "stop": 9, "step": 1},  # more than asked for
    {"ok": True, "start": 5, "stop": 6, "step": 0},
    {"ok": True, "start": True, "stop": 2, "step": 1},
    {"ok": True, "start": "5", "stop": 6},
    {"ok": True},
])
def test_malformed_nonce_answers_are_agent_errors(tmp_path: Path, answer: dict[str, Any]
                                                  ) -> None:
    with _fake_agent(tmp_path, answer) as path, AgentClient(path) as client:
        with pytest.raises(AgentError, match="malformed nonces"):
            client.next_nonce("spot")
        with pytest.raises(AgentError, match="malformed nonces"):
            client.nonces("spot", 1)


# -- a grant's entry, found once per generation -------------------------------------------


def test_a_grants_entry_follows_every_save_of_another_process(tmp_path: Path) -> None:
    keys = make_vault(tmp_path / "v.bv", SPOT_AND_FUTURES)
    with Vault.open_with_key(keys.path, keys.data_key) as other:
        grant = add_grant(other, "bot", entry="spot", general="full", withdrawal="none")
    served = Vault.open_with_key(keys.path, keys.data_key)
    agent = Agent(served, ttl=60, idle=60, allow_withdrawal=False)
    try:
        def resolve() -> dict[str, Any]:
            return agent.handle({"op": "grant_resolve", "grant_key": grant.api_key})

        first = resolve()
        assert first["entry"] == "spot"
        assert resolve() == first  # found again without a scan, the same answer
        with Vault.open_with_key(keys.path, keys.data_key) as other:
            other.rename("spot", "spot-main")
        assert resolve()["entry"] == "spot-main"
        with Vault.open_with_key(keys.path, keys.data_key) as other:
            other.rotate("spot-main", api_key="PUBROTATEDKEY", api_secret=b64secret())
        moved = resolve()
        assert moved["entry"] == "spot-main" and moved["key_id"] != first["key_id"]
        with Vault.open_with_key(keys.path, keys.data_key) as other:
            other.remove("spot-main")
        gone = resolve()
        assert gone["ok"] is False and gone["error"]["type"] == GrantError.__name__
        assert gone["error"]["reason"] == "orphaned"
    finally:
        agent.close()


# -- the nonce op's own path through the agent ------------------------------------------------


@pytest.mark.parametrize("orjson", [False, True])
@pytest.mark.parametrize("nonces", [range(1, 2), range(1_765_000_000_000, 1_765_000_000_007),
                                    range(2**63, 2**64 - 1)])
def test_the_nonce_answer_frame_is_encode_frames_bytes(monkeypatch: pytest.MonkeyPatch,
                                                       orjson: bool, nonces: range) -> None:
    from botvault import fast_json

    monkeypatch.setattr(fast_json, "_orjson", None)
    if orjson:
        fast_json.use_orjson()
    expected = encode_frame({"ok": True, "start": nonces.start, "stop": nonces.stop, "step": 1},
                            MAX_ANSWER)
    assert nonce_answer_frame(nonces) == expected


def test_handle_nonce_allocates_and_fails_as_handle(tmp_path: Path) -> None:
    keys = make_vault(tmp_path / "v.bv", SPOT_AND_FUTURES)
    agent = Agent(Vault.open_with_key(keys.path, keys.data_key), ttl=60, idle=60,
                  allow_withdrawal=False)
    sign_only = Agent(Vault.open_with_key(keys.path, keys.data_key), ttl=60, idle=60,
                      allow_withdrawal=False, sign_only=True)
    try:
        got = agent.handle_nonce({"op": "nonce", "name": "spot", "count": 3})
        assert isinstance(got, range) and len(got) == 3 and got.step == 1
        after = agent.handle({"op": "nonce", "name": "spot"})
        assert after["start"] == got.stop  # one counter, whichever path asked
        for request in ({"op": "nonce", "name": "nope"}, {"op": "nonce", "name": 5},
                        {"op": "nonce", "name": "spot", "count": 0},
                        {"op": "nonce", "name": "spot", "count": True}):
            assert agent.handle_nonce(request) == agent.handle(request)
            assert agent.handle(request)["ok"] is False
        refused = sign_only.handle_nonce({"op": "nonce", "name": "spot"})
        assert refused == sign_only.handle({"op": "nonce", "name": "spot"})
        assert isinstance(refused, dict) and refused["error"]["type"] == "ScopeError"
        with Vault.open_with_key(keys.path, keys.data_key) as other:
            other.remove("spot")  # noticed before the next answer, and refused
        gone = agent.handle_nonce({"op": "nonce", "name": "spot"})
        assert isinstance(gone, dict) and gone["error"]["type"] == "NotFoundError"
    finally:
        agent.close()
        sign_only.close()


def test_next_nonce_and_nonces_share_frames_but_never_a_wrong_one(tmp_path: Path) -> None:
    keys = make_vault(tmp_path / "v.bv", SPOT_AND_FUTURES)
    with running(keys) as info, AgentClient(info.socket_path) as client:
        first = client.next_nonce("spot")
        assert client.nonces("spot", 1)[0] > first  # the frame next_nonce made
        with pytest.raises(InvalidInputError):
            client.nonces("spot", True)  # never kept as count 1
        assert client.next_nonce("spot") > first
        with pytest.raises(InvalidInputError):
            client.next_nonce(["spot"])  # type: ignore[arg-type]
        assert list(client._nonce_frames) == ["spot"]


def test_a_reader_keeps_only_what_it_is_told_and_only_so_many() -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        reader = FrameReader(b, wait=5, frame_timeout=5, keep=lambda r: r.get("op") == "nonce")
        nonce = encode_frame({"op": "nonce", "name": "spot", "count": 1})
        a.sendall(nonce)
        first = reader.read()
        a.sendall(nonce)
        assert reader.read() is first  # the same bytes: not decoded again
        a.sendall(encode_frame({"op": "nonce", "name": "spot", "count": 2}))
        assert reader.read() == {"op": "nonce", "name": "spot", "count": 2}
        status = encode_frame({"op": "status"})
        a.sendall(status)
        seen = reader.read()
        a.sendall(status)
        assert reader.read() == seen and reader.read is not None
        for i in range(40):  # only so many kept; the rest decoded each time, as before
            a.sendall(encode_frame({"op": "nonce", "name": f"n{i}"}))
            assert reader.read() == {"op": "nonce", "name": f"n{i}"}
        big = encode_frame({"op": "nonce", "name": "x" * 1000})
        a.sendall(big)
        assert reader.read()["name"] == "x" * 1000
        assert len(reader._kept) == 8 and status not in reader._kept and big not in reader._kept
        a.sendall(nonce[:10])  # a frame in pieces still reads (never kept)
        a.sendall(nonce[10:])
        assert reader.read() == first
        a.sendall(encode_frame({"op": "nonce", "name": "spot", "count": 1})[:-1] + b"x")
        with pytest.raises(ProtocolError):  # bytes that differ are decoded, and refused
            reader.read()


def test_the_same_nonce_frame_sent_raw_gets_a_new_nonce_each_time(tmp_path: Path) -> None:
    keys = make_vault(tmp_path / "v.bv", SPOT_AND_FUTURES)
    frame = encode_frame({"op": "nonce", "name": "spot", "count": 1})
    with running(keys) as info, socket.socket(socket.AF_UNIX) as raw:
        with unix_address(info.socket_path) as address:  # a long tmp path, too
            raw.connect(address)
        reader = FrameReader(raw, wait=5, frame_timeout=5, limit=MAX_ANSWER)
        starts = []
        for _ in range(30):
            raw.sendall(frame)
            answer = reader.read()
            assert answer["ok"] is True and answer["stop"] == answer["start"] + 1
            starts.append(answer["start"])
        assert starts == sorted(set(starts))
        with Vault.open_with_key(keys.path, keys.data_key) as other:
            other.remove("spot")
        raw.sendall(frame)  # a kept request still meets the vault as it is now
        assert reader.read()["error"]["type"] == "NotFoundError"
