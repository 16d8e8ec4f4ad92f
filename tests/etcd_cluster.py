"""A real etcd cluster on loopback for tests and the bench: Debian's `etcd` binary (3.4+),
`size` members on free ports, data in a temporary directory, started and stopped here.

`.ci/run` installs the binary; `ETCD_MISSING` says why a test skips where it is absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ETCD", "ETCD_MISSING", "SKIP_ETCD", "EtcdCluster", "EtcdTls", "Member", "etcd_cluster",
           "make_tls"]

ETCD = shutil.which("etcd") or ("/usr/bin/etcd" if os.path.exists("/usr/bin/etcd") else None)
ETCD_MISSING = "no etcd binary (apt-get install etcd-server; .ci/run installs it)"
# Skip where it is absent, except in CI (CI=true): there .ci/run installs it, and a missing
# binary must fail the etcd tests, not skip them.
SKIP_ETCD = ETCD is None and os.environ.get("CI") != "true"


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Member:
    name: str
    client_url: str
    peer_url: str
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)
    context: ssl.SSLContext | None = None  # a client's, when the member serves TLS

    def status(self) -> dict[str, Any] | None:
        """etcd's maintenance status of this member (None: it does not answer)."""
        url = f"{self.client_url}/v3/maintenance/status"
        try:
            with urllib.request.urlopen(  # noqa: S310 -- our own member
                    urllib.request.Request(url, data=b"{}", method="POST"),  # noqa: S310
                    timeout=2, context=self.context) as answer:
                doc = json.loads(answer.read())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(  # noqa: S310 -- our own member
                    f"{self.client_url}/health", timeout=1, context=self.context) as answer:
                return bool(json.loads(answer.read()).get("health") == "true")
        except (OSError, ValueError):
            return False


@dataclass
class EtcdCluster:
    members: list[Member]

    @property
    def endpoints(self) -> str:
        return ",".join(m.client_url for m in self.members)

    def leader(self) -> int:
        """The index of the member that leads now."""
        statuses = [m.status() for m in self.members]
        ids = [st["header"]["member_id"] if st else None for st in statuses]
        leader = next(st["leader"] for st in statuses if st)
        return ids.index(leader)

    def kill(self, index: int) -> None:
        """SIGKILL one member (no clean leave: as a crash or a pulled cable)."""
        process = self.members[index].process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)

    def stop(self) -> None:
        for member in self.members:
            process = member.process
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(m.healthy() for m in self.members):
                return
            time.sleep(0.1)
        logs = "\n".join(m.log.read_text(errors="replace")[-2000:] for m in self.members)
        raise RuntimeError(f"the etcd cluster did not become healthy:\n{logs}")


@dataclass(frozen=True)
class EtcdTls:
    """Files for a cluster that serves TLS and asks clients for a certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


def make_tls(directory: Path) -> EtcdTls:
    """A test CA (trustme), a server certificate for 127.0.0.1 and a client certificate."""
    import trustme

    directory.mkdir(mode=0o700, exist_ok=True)
    ca = trustme.CA()
    server, client = ca.issue_cert("127.0.0.1"), ca.issue_cert("botvault-gateway")
    tls = EtcdTls(*(directory / n for n in ("ca.pem", "server.pem", "server.key",
                                            "client.pem", "client.key")))
    ca.cert_pem.write_to_path(str(tls.ca))
    server.cert_chain_pems[0].write_to_path(str(tls.server_cert))
    server.private_key_pem.write_to_path(str(tls.server_key))
    client.cert_chain_pems[0].write_to_path(str(tls.client_cert))
    client.private_key_pem.write_to_path(str(tls.client_key))
    for key in (tls.server_key, tls.client_key):
        os.chmod(key, 0o600)
    return tls


@contextlib.contextmanager
def etcd_cluster(tmp: Path, size: int = 3, *, tls: EtcdTls | None = None
                 ) -> Iterator[EtcdCluster]:
    """A `size`-member cluster on loopback; stopped (and its data removed with `tmp`).
    With `tls`, clients must connect over TLS with a certificate from its CA."""
    if ETCD is None:
        raise RuntimeError(ETCD_MISSING)
    ports = _free_ports(2 * size)
    scheme = "https" if tls else "http"
    members = [Member(f"m{i}", f"{scheme}://127.0.0.1:{ports[2 * i]}",
                      f"http://127.0.0.1:{ports[2 * i + 1]}", tmp / f"etcd-m{i}",
                      context=tls.client_context() if tls else None)
               for i in range(size)]
    tls_args = [] if tls is None else [
        "--cert-file", str(tls.server_cert), "--key-file", str(tls.server_key),
        "--trusted-ca-file", str(tls.ca), "--client-cert-auth"]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    cluster = EtcdCluster(members)
    token = f"botvault-test-{os.getpid()}-{ports[0]}"
    try:
        for m in members:
            m.log = tmp / f"etcd-{m.name}.log"
            with m.log.open("wb") as log:
                m.process = subprocess.Popen(
                    [ETCD, "--name", m.name, "--data-dir", str(m.data_dir),
                     "--listen-client-urls", m.client_url, "--advertise-client-urls",
                     m.client_url, "--listen-peer-urls", m.peer_url,
                     "--initial-advertise-peer-urls", m.peer_url,
                     "--initial-cluster", initial, "--initial-cluster-state", "new",
                     "--initial-cluster-token", token,
                     # Loopback: short heartbeats make a lost leader noticed in well under
                     # a second, as a LAN cluster would be tuned.
                     "--heartbeat-interval", "50", "--election-timeout", "500", *tls_args],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        cluster.wait_healthy()
        yield cluster
    finally:
        cluster.stop()
