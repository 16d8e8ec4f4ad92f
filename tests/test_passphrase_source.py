"""The one module that reads passphrases from files, commands and stdin, and the one that
reads a secret from stdin: properties of exactly what they keep."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botvault.errors import FormatError, InsecurePermissionsError, InvalidInputError
from botvault.passphrase_source import passphrase_from_stdin, read_passphrase_file
from botvault.secret_input import MAX_STDIN_BYTES, secret_from_stream

one_line = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\n\r\x00"),
                   min_size=1, max_size=100)
endings = st.sampled_from(["", "\n", "\r\n"])


@given(text=one_line, ending=endings)
def test_a_passphrase_file_keeps_exactly_its_line(tmp_path_factory: pytest.TempPathFactory,
                                                  text: str, ending: str) -> None:
    path = tmp_path_factory.mktemp("pf") / "pass"
    path.write_bytes((text + ending).encode())
    path.chmod(0o600)
    assert read_passphrase_file(path) == text  # spaces at either end are kept


@given(text=one_line, extra=st.sampled_from(["\n\n", "\r\n\r\n", "\nmore", "\rmore", "\n\n\n"]))
def test_a_passphrase_file_with_more_lines_is_refused(tmp_path_factory: pytest.TempPathFactory,
                                                      text: str, extra: str) -> None:
    path = tmp_path_factory.mktemp("pf") / "pass"
    path.write_bytes((text + extra).encode())
    path.chmod(0o600)
    with pytest.raises(InvalidInputError, match="more than one line"):
        read_passphrase_file(path)


@pytest.mark.parametrize("mode", [0o604, 0o640, 0o602, 0o620, 0o666])
def test_others_may_neither_read_nor_write_it(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "pass"
    path.write_text("a long passphrase\n")
    path.chmod(mode)
    with pytest.raises(InsecurePermissionsError, match="by other users"):
        read_passphrase_file(path)


def test_a_fifo_or_a_directory_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(FormatError, match="not a regular file"):
        read_passphrase_file(fifo)  # no writer: a blocking open would hang here
    with pytest.raises(FormatError):
        read_passphrase_file(tmp_path)


def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_text("a long passphrase\n")
    real.chmod(0o600)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(InsecurePermissionsError, match="symlink"):
        read_passphrase_file(tmp_path / "link")


@given(first=one_line, rest=st.binary(max_size=50))
def test_stdin_passphrase_is_one_line(first: str, rest: bytes) -> None:
    stream = io.BytesIO(first.encode() + b"\n" + rest)
    assert passphrase_from_stdin(stream) == first
    assert stream.read() == rest  # the next line is left for whoever reads next


@given(text=one_line, ending=endings)
def test_secret_stdin_keeps_exactly_what_was_piped(text: str, ending: str) -> None:
    assert secret_from_stream(io.BytesIO((text + ending).encode())) == text


@given(a=one_line, b=one_line, sep=st.sampled_from(["\n", "\r\n", "\r"]))
def test_secret_stdin_never_keeps_only_a_first_line(a: str, b: str, sep: str) -> None:
    with pytest.raises(InvalidInputError, match="lines"):
        secret_from_stream(io.BytesIO((a + sep + b + "\n").encode()))


def test_secret_stdin_is_bounded() -> None:
    assert len(secret_from_stream(io.BytesIO(b"s" * MAX_STDIN_BYTES))) == MAX_STDIN_BYTES
    with pytest.raises(InvalidInputError, match="more than 64 KiB"):
        secret_from_stream(io.BytesIO(b"s" * (MAX_STDIN_BYTES + 1)))
