"""Issue 16, point 4: every hint (and doctor fix) that prints a shell command, checked against
one rule: it only ever changes what is the user's alone. A directory others may write (sticky
1777, /tmp's kind) or one owned by someone else is never chmod'ed or chown'ed; the hint
proposes a private location instead. The table below is the one in docs/ (the hints checked).

Situations are given as stat results (any owner, any mode, as any user would see them) to the
same functions the commands and doctor use, so the rows hold without root or a second user.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from botvault import private
from botvault.doctor import files as doctor_files

ME = os.geteuid()
OTHER = ME + 4242  # someone else (no such account needed: only the number is compared)


def _st(kind: int, mode: int, uid: int) -> os.stat_result:
    return os.stat_result((kind | mode, 1, 1, 1, uid, 0, 0, 0, 0, 0))


@dataclass(frozen=True)
class Row:
    what: str
    kind: int
    mode: int
    uid: int
    check: str  # "dir-parent", "dir-closed", "file", "socket"
    parent: str  # "own" (0700, ours) or "shared" (1777, ours: root's /tmp seen as root)
    command: str | None  # the shell command the hint proposes (None: none but a location)


DIR, REG, SOCK, FIFO = stat.S_IFDIR, stat.S_IFREG, stat.S_IFSOCK, stat.S_IFIFO
TABLE = [
    Row("vault dir, sticky 1777, ours (root's /tmp as root)", DIR, 0o1777, ME, "dir-parent",
        "own", None),
    Row("vault dir, sticky 1777, someone else's (/tmp as a user)", DIR, 0o1777, OTHER,
        "dir-parent", "own", None),
    Row("vault dir, 0777, someone else's", DIR, 0o777, OTHER, "dir-parent", "own", None),
    Row("vault dir, 0777, ours", DIR, 0o777, ME, "dir-parent", "own", "chmod 700 {path}"),
    Row("vault dir, 0775, ours", DIR, 0o775, ME, "dir-parent", "own", "chmod 700 {path}"),
    Row("agent dir, 0755, ours", DIR, 0o755, ME, "dir-closed", "own", "chmod 700 {path}"),
    Row("agent dir, sticky 1777, ours", DIR, 0o1777, ME, "dir-closed", "own", None),
    Row("agent dir, 0700, someone else's", DIR, 0o700, OTHER, "dir-closed", "own", None),
    Row("vault file, 0644, ours", REG, 0o644, ME, "file", "own", "chmod 600 {path}"),
    Row("vault file, someone else's, in our own dir (made with sudo)", REG, 0o600, OTHER,
        "file", "own", "sudo chown {me} {path}"),
    Row("vault file, someone else's, in a shared dir", REG, 0o600, OTHER, "file", "shared",
        None),
    Row("vault path is a FIFO, ours", FIFO, 0o600, ME, "file", "own",
        "mv {path} {path}.old"),
    Row("vault path is a FIFO, someone else's", FIFO, 0o600, OTHER, "file", "shared", None),
    Row("agent socket, 0666, ours", SOCK, 0o666, ME, "socket", "own", "chmod 600 {path}"),
    Row("agent socket, someone else's", SOCK, 0o600, OTHER, "socket", "own", None),
]

_COMMAND = re.compile(r"\b(chmod|chown|mv|rm|mkdir)\b[^;,)`]*")


def _problem(row: Row, path: Path) -> private.Problem | None:
    st = _st(row.kind, row.mode, row.uid)
    if row.check == "dir-parent":
        return private.dir_problem(path, st, "the vault's directory", private.DirRule.PARENT)
    if row.check == "dir-closed":
        return private.dir_problem(path, st, "the agent's directory", private.DirRule.CLOSED)
    if row.check == "socket":
        return private.socket_problem(path, st, "the agent socket")
    return private.file_problem(path, st, "the vault")


def _place(tmp_path: Path, row: Row) -> Path:
    parent = tmp_path / row.parent
    parent.mkdir()
    os.chmod(parent, 0o1777 if row.parent == "shared" else 0o700)
    return parent / "thing"


def _commands(text: str) -> list[str]:
    return [m.group(0).strip() for m in _COMMAND.finditer(text)]


@pytest.mark.parametrize("row", TABLE, ids=[r.what for r in TABLE])
def test_every_hint_that_prints_a_command_touches_only_what_is_the_users_alone(
        tmp_path: Path, row: Row) -> None:
    path = _place(tmp_path, row)
    problem = _problem(row, path)
    assert problem is not None
    texts = [problem.hint or "", problem.fix or ""]
    rules: dict[str, private.FileRule | private.DirRule] = {
        "dir-parent": private.DirRule.PARENT, "dir-closed": private.DirRule.CLOSED,
        "file": private.FileRule.PRIVATE, "socket": private.FileRule.PRIVATE}
    finding = doctor_files._mode_problem(path, _st(row.kind, row.mode, row.uid),
                                         rules[row.check])
    if finding is not None and row.check != "socket":
        texts.append(finding.fix or "")
    commands = [c for text in texts for c in _commands(text)]
    if row.command is None:
        assert not [c for c in commands if not c.startswith("mkdir -m 700 ~/botvault")], \
            commands
        assert any("mkdir -m 700" in t or "someone else controls it" in t for t in texts), texts
        return
    want = row.command.format(path=path, me=ME)
    assert problem.fix == want or want in (problem.hint or ""), (problem, want)
    for command in commands:  # each touches the user's own path, or makes a private dir
        assert command.split()[-1] in (str(path), f"{path}.old", "~/botvault"), command


@pytest.mark.parametrize(("mode", "uid", "chmod"), [
    (0o755, ME, True),  # the user's own directory: theirs to close
    (0o755, OTHER, False),  # a root-owned /srv or /opt: not theirs
    (0o1755, ME, False),
])
def test_doctors_listable_advice_chmods_only_the_users_own_dir(tmp_path: Path, mode: int,
                                                               uid: int, chmod: bool) -> None:
    finding = doctor_files._listable(tmp_path, _st(DIR, mode, uid))
    assert finding is not None
    fix = finding.fix or ""
    assert ("chmod 700" in fix) == chmod
    if not chmod:
        assert "mkdir -m 700" in fix


def test_the_private_location_names_the_default_and_a_private_directory() -> None:
    hint = private.private_location_hint()
    assert "no --vault and no BOTVAULT_PATH" in hint and "mkdir -m 700 ~/botvault" in hint
