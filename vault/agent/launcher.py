"""Starting the agent: `start_agent(vault_path, data_key, ttl=..., idle=..., allow_withdrawal=...)`.

The agent runs as `python -m botvault.agent.server` in a session of its own (closing the
terminal does not stop it). The data key travels through its stdin pipe, in one JSON line
that the launcher writes and then closes: never on argv, in the environment or in a file,
where other processes or logs could see it. The agent answers one JSON line on its stdout
when it is serving (or why it could not start), and the launcher waits for that line.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, VaultError
from ..vault_path import resolve_vault_path
from . import socket_location
from .protocol import AgentError, raise_for_error

__all__ = ["START_TIMEOUT", "AgentInfo", "start_agent"]

START_TIMEOUT = 10.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class AgentInfo:
    """A started agent: its pid, socket, and when it locks at the latest (wall clock)."""

    pid: int
    socket_path: Path
    vault_path: Path
    expires_at: float
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)


def _agent_env() -> dict[str, str]:
    """Our environment, with this package importable from the agent's cwd (/)."""
    env = dict(os.environ)
    parts = [_PACKAGE_ROOT, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    return env


def _read_answer(process: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The agent's one line, or b"" if it exited or did not answer in time."""
    if process.stdout is None:
        return b""
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return b""
        chunk = os.read(fd, 4096)
        if not chunk:
            return data
        data += chunk
    return data


def start_agent(vault_path: str | os.PathLike[str] | None, data_key: bytes, *, ttl: float,
                idle: float, allow_withdrawal: bool, socket_path: Path | None = None,
                timeout: float = START_TIMEOUT, sign_only: bool = False) -> AgentInfo:
    """Start an agent for the vault and return once it serves its socket.

    Raises AlreadyExistsError when an agent already serves this vault, the agent's own error
    when it could not start (AuthenticationError for a key that does not open the vault),
    and AgentError when it did not answer within `timeout` seconds. A `sign_only` agent
    hands out no secret and no data key and signs only grant-authenticated requests.
    """
    if not (0 < ttl < math.inf and 0 < idle < math.inf):
        raise InvalidInputError("the agent's ttl and idle time must be positive and finite")
    target = resolve_vault_path(vault_path)
    sock = socket_path or socket_location.socket_path_for(target)
    # Checked here too (the agent checks again), so an insecure dir fails fast and plainly.
    socket_location.check_socket_dir(sock, create=True)
    config = {"vault": str(target), "socket": str(sock), "ttl": ttl, "idle": idle,
              "allow_withdrawal": bool(allow_withdrawal), "sign_only": bool(sign_only),
              "data_key": base64.b64encode(bytes(data_key)).decode("ascii")}
    process = subprocess.Popen(
        [sys.executable, "-m", "botvault.agent.server"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        close_fds=True, start_new_session=True, cwd="/", env=_agent_env())
    try:
        answer = _handshake(process, json.dumps(config).encode("ascii") + b"\n", timeout)
    except BaseException:
        _abandon(process)
        raise
    finally:
        del config
    pid = answer.get("pid")
    if not isinstance(pid, int):
        _abandon(process)
        raise AgentError("the agent answered something unexpected at start")
    # The agent outlives this call by design. A daemon thread collects its exit status
    # whenever it ends, so a long-lived caller keeps no zombie, and the Popen object is never
    # finalised while the agent runs (which would warn "subprocess ... is still running").
    threading.Thread(target=process.wait, daemon=True, name="botvault-agent-reaper").start()
    return AgentInfo(pid=pid, socket_path=Path(str(answer.get("socket", sock))),
                     vault_path=target, expires_at=time.time() + ttl, process=process)


def _handshake(process: subprocess.Popen[bytes], line: bytes, timeout: float
               ) -> dict[str, Any]:
    if process.stdin is None or process.stdout is None:
        raise AgentError("the agent's pipes could not be opened")
    try:
        process.stdin.write(line)
        process.stdin.close()
    except BrokenPipeError:
        pass  # it died before reading: reported below from its (missing) answer
    raw = _read_answer(process, timeout)
    process.stdout.close()
    if not raw:
        code = process.poll()
        if code is None:
            raise AgentError(f"the agent did not become ready within {timeout:g} s")
        raise AgentError(f"the agent exited during start (exit code {code})")
    try:
        answer = json.loads(raw)
    except ValueError:
        raise AgentError("the agent answered something unexpected at start") from None
    if not isinstance(answer, dict):
        raise AgentError("the agent answered something unexpected at start")
    try:
        raise_for_error(answer)
    except VaultError:
        process.wait(timeout)
        raise
    return answer


def _abandon(process: subprocess.Popen[bytes]) -> None:
    """A start that failed leaves no process behind."""
    if process.poll() is None:
        with contextlib.suppress(OSError):
            process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)
