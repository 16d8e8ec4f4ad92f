"""The background agent: holds an unlocked vault's data key and serves it on a unix socket.

`start_agent` starts one for a vault (what `botvault unlock` does); `connect` reaches it:

    from botvault import agent

    with agent.connect() as client:
        signed = client.sign("kraken-bot", "/0/private/Balance", {})

The wire format is in `protocol`, the socket's location and checks in `paths`, the
operations in `ops`, the process in `server`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .client import AgentClient, Credentials, GrantSigned, GrantTarget, SignedRequest, connect
from .protocol import AgentError
from .socket_location import socket_path_for

if TYPE_CHECKING:
    from .launcher import AgentInfo, start_agent

__all__ = [
    "AgentClient",
    "AgentError",
    "AgentInfo",
    "Credentials",
    "GrantSigned",
    "GrantTarget",
    "SignedRequest",
    "connect",
    "socket_path_for",
    "start_agent",
]


def __getattr__(name: str) -> Any:
    # The launcher (subprocess, json) is needed by `unlock` only, not by every client.
    if name in ("AgentInfo", "start_agent"):
        from . import launcher

        return getattr(launcher, name)
    raise AttributeError(f"module 'botvault.agent' has no attribute {name!r}")
