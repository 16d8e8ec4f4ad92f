"""The floor of the gateway's design: the same hops, nothing else (the baseline of bench_floor).

    python -m bench.floor_gateway VAULT UPSTREAM_URL   # prints "listening on http://..."

Per request, as the gateway: parse (httptools), have the real agent check the bot's request
(`grant_verify`: a one-time ticket back), make its `sent` audit line durable through the
real audit child (acknowledged) while taking the key's order (an asyncio lock per key, then
an flock on the key's own lock file, the one `KeyOrder` uses, its descriptor opened once),
have the agent sign with the ticket (`grant_sign`), forward on a kept-alive upstream
connection, answer, and hand the `done` line to the audit child. A grant verified before,
whose key's lock is free, takes the gateway's one step: the lock first, then one
`grant_sign` that checks and signs, the durable line, the forward. No error handling
beyond what keeps it correct for the bench's well-formed requests: it is a yardstick.
Needs the `bench` extra (uvloop, httptools).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httptools  # type: ignore[import-not-found,unused-ignore]

from botvault.agent import socket_path_for
from botvault.request_lock import KeyOrder

_HEADER = struct.Struct(">I")
_WANTED = {b"api-key": "key", b"api-sign": "sign", b"content-type": "ctype"}


class Agent:
    """A few kept-open connections to the agent, one call in flight on each."""

    def __init__(self, path: Path) -> None:
        self.path, self.idle = path, asyncio.Queue[Any]()
        self.opened, self.grants = 0, dict[str, tuple[float, str]]()

    async def call(self, **msg: Any) -> dict[str, Any]:
        if self.idle.empty() and self.opened < 4:
            self.opened += 1
            self.idle.put_nowait(await asyncio.open_unix_connection(str(self.path)))
        reader, writer = await self.idle.get()
        try:
            payload = json.dumps(msg, separators=(",", ":")).encode()
            writer.write(_HEADER.pack(len(payload)) + payload)
            (size,) = _HEADER.unpack(await reader.readexactly(4))
            answer: dict[str, Any] = json.loads(await reader.readexactly(size))
        finally:
            self.idle.put_nowait((reader, writer))
        if answer.get("ok") is not True:
            raise LookupError(answer.get("error", {}).get("message", "refused"))
        return answer

    async def key_id(self, grant_key: str) -> str:
        cached = self.grants.get(grant_key)
        if cached is None or time.monotonic() - cached[0] > 1.0:
            answer = await self.call(op="grant_resolve", grant_key=grant_key)
            cached = self.grants[grant_key] = (time.monotonic(), answer["key_id"])
        return cached[1]


async def _flock(fd: int) -> None:
    """The key's lock file, as KeyOrder takes it on a loop: try, and sleep between tries."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            await asyncio.sleep(0.0002)
        else:
            return


class Floor:
    def __init__(self, vault: Path, upstream: str) -> None:
        self.vault, self.agent = vault, Agent(socket_path_for(vault))
        self.host, self.port = urlsplit(upstream).hostname, urlsplit(upstream).port
        self.idle_upstream: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self.audit: asyncio.subprocess.Process | None = None
        self.acks: dict[str, asyncio.Future[None]] = {}
        self.seq = 0
        self.verified: dict[str, str] = {}  # grant api key -> key id (one_step)

    def key_lock(self, key_id: str) -> tuple[asyncio.Lock, int]:
        if key_id not in self.locks:
            order = KeyOrder.for_key_id(self.vault, key_id)
            self.locks[key_id] = (asyncio.Lock(), order._open())
        return self.locks[key_id]

    async def forward(self, path: str, headers: dict[str, str], body: bytes
                      ) -> tuple[bytes, bytes]:
        conn = self.idle_upstream.pop() if self.idle_upstream else \
            await asyncio.open_connection(self.host, self.port)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        conn[1].write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: "
                      f"{len(body)}\r\n{head}\r\n".encode() + body)
        status_and_headers = await conn[0].readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in status_and_headers.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        answer = await conn[0].readexactly(length)
        self.idle_upstream.append(conn)
        return status_and_headers.split(b" ", 2)[1], answer

    async def audit_sent(self, line: dict[str, Any]) -> None:
        """The request's `sent` line, durable before the request leaves (the child's ack)."""
        assert self.audit is not None
        assert self.audit.stdin is not None
        self.acks[line["seq"]] = done = asyncio.get_running_loop().create_future()
        self.audit.stdin.write(json.dumps({**line, "ack": True}).encode() + b"\n")
        await done

    async def read_acks(self) -> None:
        assert self.audit is not None
        assert self.audit.stdout is not None
        while line := await self.audit.stdout.readline():
            verdict, _, seq = line.decode().strip().partition(" ")
            future = self.acks.pop(seq.split(" ")[0], None)
            if future is not None:
                future.set_result(None) if verdict == "ok" else future.set_exception(
                    OSError("audit line not written"))

    async def one_step(self, request: dict[str, Any], key_id: str, seq: str
                       ) -> tuple[bytes, bytes]:
        """As the gateway's one_step: the key's turn is free and the grant was verified
        before, so the turn is taken first and the agent checks and signs in one call."""
        lock, fd = self.key_lock(key_id)
        async with lock:
            await _flock(fd)
            try:
                signed = await self.agent.call(op="grant_sign", key_id=key_id,
                                               exchange="kraken-spot", window=10.0, **request)
                await self.audit_sent({
                    "time": time.time(), "grant": signed["grant"], "entry": signed["entry"],
                    "exchange": "kraken-spot", "method": "POST", "endpoint": request["path"],
                    "phase": "sent", "seq": seq})
                headers = {"Content-Type": "application/x-www-form-urlencoded",
                           **signed["headers"]}
                return await self.forward(request["path"], headers, signed["body"].encode())
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    async def handle(self, path: str, fields: dict[str, str], body: bytes) -> tuple[bytes, bytes]:
        started, self.seq = time.monotonic(), self.seq + 1
        request = {"grant_key": fields["key"], "path": path, "method": "POST",
                   "body": body.decode(), "signature": fields["sign"], "nonce_header": "",
                   "content_type": "form"}
        seq = f"floor-{self.seq}"
        known = self.verified.get(fields["key"])
        if known is not None and not self.key_lock(known)[0].locked():
            status, answer = await self.one_step(request, known, seq)
            self.done(seq, status, started)
            return status, answer
        # As the gateway: checked first without the key's order (a one-time ticket back),
        # its audit line made durable while it waits for the order, signed last.
        verified = await self.agent.call(op="grant_verify", exchange="kraken-spot",
                                         window=10.0, hold=90.0, **request)
        self.verified[fields["key"]] = verified["key_id"]
        line = {"time": time.time(), "grant": verified["grant"], "entry": verified["entry"],
                "exchange": "kraken-spot", "method": "POST", "endpoint": path}
        audit = asyncio.ensure_future(self.audit_sent({**line, "phase": "sent", "seq": seq}))
        lock, fd = self.key_lock(verified["key_id"])
        async with lock:
            await _flock(fd)
            try:
                await audit
                signed = await self.agent.call(op="grant_sign", key_id=verified["key_id"],
                                               ticket=verified["ticket"], **request)
                headers = {"Content-Type": fields.get("ctype", "application/x-www-form-"
                                                      "urlencoded"), **signed["headers"]}
                status, answer = await self.forward(path, headers, signed["body"].encode())
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        self.done(seq, status, started)
        return status, answer

    def done(self, seq: str, status: bytes, started: float) -> None:
        assert self.audit is not None
        assert self.audit.stdin is not None
        self.audit.stdin.write(json.dumps({
            "time": time.time(), "phase": "done", "seq": seq, "outcome": "forwarded",
            "upstream_status": int(status),
            "duration_ms": round((time.monotonic() - started) * 1000, 3)}).encode() + b"\n")


class Connection(asyncio.Protocol):
    def __init__(self, floor: Floor) -> None:
        self.floor, self.parser = floor, httptools.HttpRequestParser(self)
        self.queue: asyncio.Queue[tuple[str, dict[str, str], bytes]] = asyncio.Queue()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.task = asyncio.get_running_loop().create_task(self.serve())

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url, self.fields, self.body = url.decode(), dict[str, str](), b""

    def on_header(self, name: bytes, value: bytes) -> None:
        if (field := _WANTED.get(name.lower())) is not None:
            self.fields[field] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.queue.put_nowait((self.url, self.fields, self.body))

    def connection_lost(self, _exc: Exception | None) -> None:
        self.task.cancel()

    async def serve(self) -> None:  # one request at a time per connection, in order
        while True:
            status, answer = await self.floor.handle(*await self.queue.get())
            self.transport.write(b"HTTP/1.1 " + status + b" OK\r\nContent-Type: application/"
                                 b"json\r\nContent-Length: " + str(len(answer)).encode() +
                                 b"\r\n\r\n" + answer)


async def main(vault: Path, upstream: str) -> None:
    floor = Floor(vault, upstream)
    floor.audit = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "botvault.gateway.audit_writer", str(vault), "90.0",
        str(100 << 20), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    acks = asyncio.ensure_future(floor.read_acks())
    server = await asyncio.get_running_loop().create_server(
        lambda: Connection(floor), "127.0.0.1", 0)
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    assert floor.audit.stdin is not None
    floor.audit.stdin.close()  # the child writes what it was given, then exits
    await floor.audit.wait()
    await acks


if __name__ == "__main__":
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        uvloop.install()
    except ImportError:
        pass
    os.chdir("/")
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
