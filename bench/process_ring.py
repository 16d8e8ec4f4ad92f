"""A ring of processes that pass a message on, each doing a little Python work before and
after: the machine's floor for a request that crosses as many processes as the gateway's
(bench_floor's p99 baseline). On a VM with few cores, a process woken while the others still
run may wait for a scheduler tick; the more processes a request crosses, the more often."""

from __future__ import annotations

import os
import socket

__all__ = ["Ring"]

_WORK = 2000  # loop iterations per half-hop: about 40 us of Python here


def _busy(work: int) -> int:
    total = 0
    for i in range(work):
        total += i
    return total


class Ring:
    """`processes` others (forked) between `send`'s write and its read."""

    def __init__(self, processes: int, work: int = _WORK) -> None:
        self._work = work
        links = [socket.socketpair() for _ in range(processes + 1)]
        self._children: list[int] = []
        for k in range(processes):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                rx, tx = links[k][1], links[k + 1][0]
                for a, b in links:  # so that each link ends when its writer closes it
                    for end in (a, b):
                        if end is not rx and end is not tx:
                            end.close()
                self._pass_on(rx, tx)
            self._children.append(pid)
        self._out, self._in = links[0][0], links[processes][1]
        for a, b in links:  # the parent keeps only its two ends
            if a is not self._out:
                a.close()
            if b is not self._in:
                b.close()

    def _pass_on(self, rx: socket.socket, tx: socket.socket) -> None:  # pragma: no cover
        while data := rx.recv(4096):
            _busy(self._work)
            tx.sendall(data)
            _busy(self._work)
        os._exit(0)

    def send(self) -> None:
        self._out.sendall(b"x" * 300)
        self._in.recv(4096)
        _busy(self._work)  # the sender's own work between requests

    def close(self) -> None:
        self._out.close()
        self._in.close()
        for pid in self._children:
            os.waitpid(pid, 0)
