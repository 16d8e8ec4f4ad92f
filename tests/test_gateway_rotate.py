"""No false refusal on rotate: bots keep calling through the real gateway and agent while the
key pair behind their grants is rotated several times; not one request is refused.

The gateway caches a grant's resolution for a moment; a rotate inside that moment makes the
agent answer "the grant's key changed", and the gateway resolves again and retries once.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from botvault import Vault
from botvault.exchanges.kraken import sign_spot

from .gateway_stack import Credential, gateway_stack
from .gateway_support import b64secret
from .kraken_server import http_json

pytestmark = pytest.mark.slow

ENTRIES = {"spot": {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"}}
BOTS, ROTATIONS = 6, 5


def _balance(url: str, cred: Credential, nonce: int) -> tuple[int, list[str]]:
    path = "/0/private/Balance"
    body = urlencode({"nonce": nonce})
    status, doc = http_json(url, "POST", path, body, {
        "API-Key": cred.api_key, "API-Sign": sign_spot(cred.api_secret, path, nonce, body),
        "Content-Type": "application/x-www-form-urlencoded"})
    return status, list(doc.get("error", []))


def test_rotations_under_load_give_no_false_refusal(vault_path: Path) -> None:
    with gateway_stack(vault_path, entries=ENTRIES, enforce_rate=False) as stack:
        creds = [stack.grant(f"bot{i}", "spot") for i in range(BOTS)]
        stop = threading.Event()
        answers: list[tuple[int, list[str]]] = []
        lock = threading.Lock()

        def bot(cred: Credential) -> None:
            nonce = 0
            while not stop.is_set():
                nonce += 1
                got = _balance(stack.url, cred, nonce)
                with lock:
                    answers.append(got)

        threads = [threading.Thread(target=bot, args=(c,)) for c in creds]
        for t in threads:
            t.start()
        keys = []
        try:
            for n in range(ROTATIONS):
                time.sleep(1.0)  # the agent sees each rotation on its own
                new_key, new_secret = f"PUBSPOTROT{n}KEY", b64secret()
                stack.kraken.add_key(new_key, new_secret, "spot")  # made on Kraken first
                with Vault.open_with_key(stack.keys.path, stack.keys.data_key) as vault:
                    vault.rotate("spot", api_key=new_key, api_secret=new_secret)
                keys.append(new_key)
            time.sleep(0.4)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        refused = [a for a in answers if a != (200, [])]
        assert len(answers) > BOTS * ROTATIONS * 2  # load, throughout
        assert refused == []
        assert stack.kraken.rejected() == {}
        # Every rotated-in key carried traffic: the rotations happened under load.
        used = {k: stack.kraken.keys[k].last_nonce > 0 for k in keys}
        assert sum(used.values()) >= ROTATIONS - 1, used
