"""Issue 16, point 1, at a real terminal (a pty): a secret pasted at the hidden prompt as 1, 2
or 3 lines, in one write or in chunks a few milliseconds apart, is kept whole (Kraken: the
line breaks of the wrap removed, with the warning that counts them) or refused (generic);
nothing of a paste reaches the next prompt. The matrix this runs is in docs and CHANGELOG."""

from __future__ import annotations

import base64
import os
import sys
import time
from pathlib import Path

import pytest

from botvault import Vault
from botvault.crypto import KdfParams
from tests.test_cli_tty import Terminal

PASSPHRASE = "a long tty passphrase"
PROMPT = "API secret (private key, hidden): "
pytestmark = pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")),
                                reason="needs a POSIX pty")


@pytest.fixture
def env(vault_path: Path, tmp_path: Path) -> dict[str, str]:
    Vault.create(vault_path, PASSPHRASE, kdf=KdfParams(19 * 1024, 2, 1)).close()
    return {**os.environ, "BOTVAULT_PATH": str(vault_path), "TERM": "dumb",
            "COLUMNS": "200"}


@pytest.fixture
def pass_file(tmp_path: Path) -> Path:
    path = tmp_path / "pass"
    path.write_text(PASSPHRASE + "\n")
    path.chmod(0o600)
    return path


def _wrapped(secret: str, lines: int) -> bytes:
    """The paste as a browser or terminal wraps it: `lines` lines, Enter (CR) after each."""
    width = -(-len(secret) // lines)
    parts = [secret[i:i + width] for i in range(0, len(secret), width)]
    assert len(parts) == lines
    return b"".join(p.encode() + b"\r" for p in parts)


def _paste(term: Terminal, data: bytes, chunked: bool) -> None:
    if not chunked:
        os.write(term.fd, data)
        return
    for i in range(0, len(data), 16):  # cut anywhere, not only at the line breaks
        os.write(term.fd, data[i:i + 16])
        time.sleep(0.005)


def _add(env: dict[str, str], pass_file: Path, exchange: str) -> Terminal:
    return Terminal(["add", "k", "--exchange", exchange, "--general", "read-only",
                     "--withdrawal", "none", "--api-key", "PUBLICKEY7",
                     "--passphrase-file", str(pass_file)], env)


def _stored(vault_path: Path) -> str:
    with Vault.open(vault_path, PASSPHRASE) as v:
        return v.get("k").api_secret.reveal()


@pytest.mark.parametrize("chunked", [False, True], ids=["one-write", "chunks"])
@pytest.mark.parametrize("lines", [1, 2, 3])
def test_a_kraken_paste_over_lines_is_kept_whole(env: dict[str, str], pass_file: Path,
                                                 vault_path: Path, lines: int,
                                                 chunked: bool) -> None:
    secret = base64.b64encode(os.urandom(64)).decode()
    term = _add(env, pass_file, "kraken-spot")
    term.expect(PROMPT)
    _paste(term, _wrapped(secret, lines), chunked)
    term.expect("fingerprint:")
    assert term.wait() == 0
    assert _stored(vault_path) == secret
    removed = lines - 1
    warned = f"removed {removed} whitespace character".encode()
    assert (warned in term.seen) == (removed > 0)
    assert b"Repeat for confirmation" not in term.seen  # asked once: a paste is the same twice
    assert secret[:12].encode() not in term.seen  # never echoed


@pytest.mark.parametrize("chunked", [False, True], ids=["one-write", "chunks"])
@pytest.mark.parametrize("lines", [1, 2, 3])
def test_a_generic_paste_over_lines_is_refused_and_nothing_reaches_the_next_prompt(
        env: dict[str, str], pass_file: Path, vault_path: Path, lines: int,
        chunked: bool) -> None:
    pasted = "generic-secret-" + os.urandom(24).hex()
    term = _add(env, pass_file, "generic")
    term.expect(PROMPT)
    _paste(term, _wrapped(pasted, lines), chunked)
    if lines == 1:
        term.expect("fingerprint:")
        assert term.wait() == 0
        assert _stored(vault_path) == pasted
        return
    term.expect(f"the secret came as {lines} lines")
    term.expect("try again (2 left)")
    term.expect(PROMPT)
    again = "one-line-" + os.urandom(8).hex()
    os.write(term.fd, again.encode() + b"\r")
    term.expect("fingerprint:")
    assert term.wait() == 0
    assert _stored(vault_path) == again  # not the tail of the earlier paste, not a mix


def test_a_kraken_secret_cut_to_one_wrapped_line_is_refused_naming_both_lengths(
        env: dict[str, str], pass_file: Path, vault_path: Path) -> None:
    """The old trap: the first 44 characters of a wrap (33 bytes) were accepted."""
    secret = base64.b64encode(os.urandom(64)).decode()
    term = _add(env, pass_file, "kraken-futures")
    term.expect(PROMPT)
    os.write(term.fd, secret[:44].encode() + b"\r")
    term.expect("the secret decodes to 33 bytes (44 base64 characters); Kraken issues "
                "64-byte secrets (66 in Futures' unpadded form)")
    term.expect(PROMPT)
    os.write(term.fd, secret.encode() + b"\r")
    term.expect("fingerprint:")
    assert term.wait() == 0
    assert _stored(vault_path) == secret


def test_typing_ahead_before_the_prompt_is_not_taken_as_the_secret(
        env: dict[str, str], pass_file: Path, vault_path: Path) -> None:
    secret = base64.b64encode(os.urandom(64)).decode()
    term = _add(env, pass_file, "kraken-spot")
    os.write(term.fd, b"typed-ahead\r")  # before the prompt: dropped, never the answer
    term.expect(PROMPT)
    time.sleep(0.1)
    os.write(term.fd, secret.encode() + b"\r")
    term.expect("fingerprint:")
    assert term.wait() == 0
    assert _stored(vault_path) == secret


def test_edit_secret_at_the_prompt_takes_a_wrapped_paste(env: dict[str, str], pass_file: Path,
                                                         vault_path: Path) -> None:
    with Vault.open(vault_path, PASSPHRASE) as v:
        v.add("k", exchange="kraken-spot", api_key="PUBLICKEY7",
              api_secret=base64.b64encode(os.urandom(64)).decode(), general="read-only",
              withdrawal="none")
    secret = base64.b64encode(os.urandom(64)).decode()
    term = Terminal(["edit", "k", "--secret", "--passphrase-file", str(pass_file)], env)
    term.expect("New API secret (private key, hidden): ")
    _paste(term, _wrapped(secret, 2), chunked=True)
    term.expect("secret replaced; fingerprint:")
    assert term.wait() == 0
    assert _stored(vault_path) == secret


def test_doctor_at_a_terminal_offers_to_remove_only_the_secret_lines(
        env: dict[str, str], pass_file: Path, vault_path: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = base64.b64encode(os.urandom(64)).decode()
    with Vault.open(vault_path, PASSPHRASE) as v:
        v.add("k", exchange="kraken-spot", api_key="PUBLICKEY7", api_secret=secret,
              general="read-only", withdrawal="none")
    home = tmp_path / "home"
    bot = home / "bot"
    bot.mkdir(parents=True)
    dotenv = bot / ".env"
    dotenv.write_text(f"KRAKEN_API_KEY=PUBLICKEY7\nKRAKEN_API_SECRET={secret}\nPAIR=XBTUSD\n")
    monkeypatch.chdir(bot)  # the child starts here
    term = Terminal(["doctor", "--passphrase-file", str(pass_file)], {**env, "HOME": str(home)})
    term.expect(f"Remove line(s) 2 of {dotenv}")
    term.expect("[y/N]: ")
    os.write(term.fd, b"y\r")
    term.expect("removed 1 line(s) holding a secret")
    assert term.wait() == 10  # it reported the copy it then removed
    assert dotenv.read_text() == "KRAKEN_API_KEY=PUBLICKEY7\nPAIR=XBTUSD\n"
    assert secret[:12].encode() not in term.seen
