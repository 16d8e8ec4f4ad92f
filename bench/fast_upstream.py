"""The strict Kraken stand-in's checks behind an upstream that answers at once.

    python -m bench.fast_upstream    # keys on stdin (one JSON line); prints its URL

`tests/kraken_server.StrictKraken.answer` (signatures, nonces with no window, permissions)
served from a process of its own on a bare asyncio HTTP/1.1 loop (uvloop when installed), so
the benchmarks' baseline is the exchange's checks and no thread-per-connection server.
`GET /__outcomes` answers the counts of every outcome so far.
"""

from __future__ import annotations

import asyncio
import json
import sys

from tests.kraken_server import StrictKraken

__all__ = ["serve"]


async def _client(kraken: StrictKraken, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = dict(line.split(": ", 1) for line in lines if line)
            size = next((int(v) for k, v in headers.items() if k.lower() == "content-length"), 0)
            body = await reader.readexactly(size) if size else b""
            if target == "/__outcomes":
                status, doc = 200, dict(kraken.outcomes)
            else:
                answer = kraken.answer(method, target, headers, body)
                kraken.outcomes[answer.outcome] += 1
                status, doc = answer.status, answer.doc
            data = json.dumps(doc).encode()
            writer.write(f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def serve(keys: dict[str, dict[str, str]]) -> None:
    kraken = StrictKraken(enforce_rate=False)
    for api_key, key in keys.items():
        kraken.add_key(api_key, key["secret"], key["product"])
    server = await asyncio.start_server(lambda r, w: _client(kraken, r, w), "127.0.0.1", 0)
    print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(json.loads(sys.stdin.readline())))
