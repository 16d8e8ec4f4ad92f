"""vault/audit.py: the gateway's JSON-lines audit log, its rotation and its reader."""

from __future__ import annotations

import contextlib
import errno
import json
import multiprocessing
import os
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botvault.audit import (
    FIELDS,
    UNKNOWN_OUTCOME,
    Retention,
    append_audit,
    append_lines,
    audit_path,
    read_audit,
    segments,
)
from botvault.errors import InsecurePermissionsError, InvalidInputError, VaultWarning

from .small_disk import small_tmpfs


@pytest.fixture
def vpath(tmp_path: Path) -> Path:
    directory = tmp_path / "store"
    directory.mkdir(mode=0o700)
    return directory / "vault.bv"


def _record(n: int, grant: str = "bot") -> dict[str, object]:
    return {"grant": grant, "entry": "spot", "endpoint": "/0/private/Balance",
            "outcome": "ok", "upstream_status": 200, "time": 1_700_000_000.0 + n}


def test_path_is_beside_the_vault(vpath: Path) -> None:
    assert audit_path(vpath) == vpath.with_name("vault.bv.audit.jsonl")


def test_append_then_read_in_order_and_private(vpath: Path) -> None:
    for n in range(5):
        append_audit(vpath, _record(n, "a" if n % 2 else "b"))
    path = audit_path(vpath)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    records = read_audit(vpath)
    assert [r["time"] for r in records] == [
        f"2023-11-14T22:13:{20 + n:02d}.000Z" for n in range(5)]
    assert [r["grant"] for r in read_audit(vpath, grant="a")] == ["a", "a"]
    assert all(set(r) <= FIELDS for r in records)
    # One JSON object per line, nothing else in the file.
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 6
    assert all(isinstance(json.loads(line), dict) for line in lines[:-1])


def test_missing_time_is_filled_in(vpath: Path) -> None:
    append_audit(vpath, {"grant": "bot", "outcome": "ok"})
    (record,) = read_audit(vpath)
    assert isinstance(record["time"], str) and record["time"].endswith("Z")


def test_no_log_reads_empty(vpath: Path) -> None:
    assert read_audit(vpath) == []


@pytest.mark.parametrize("record", [
    {"grant": "bot", "body": "ordertype=limit&price=1"},
    {"grant": "bot", "api_secret": "c2VjcmV0"},
    {"grant": "bot", "headers": {"API-Sign": "x"}},
    {"grant": "bot", "endpoint": ["/0/private/AddOrder"]},
    {"grant": "bot", "endpoint": "x" * 257},
    {"grant": "bot", "duration_ms": float("nan")},
])
def test_refuses_what_could_carry_a_secret_or_a_body(vpath: Path,
                                                     record: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError) as caught:
        append_audit(vpath, record)
    # The refusal names the field, never its value.
    assert "ordertype" not in str(caught.value) and "c2VjcmV0" not in str(caught.value)
    assert not audit_path(vpath).exists()


@settings(max_examples=50, deadline=None)
@given(text=st.text(max_size=200))
def test_any_text_stays_on_one_line(tmp_path_factory: pytest.TempPathFactory,
                                    text: str) -> None:
    directory = tmp_path_factory.mktemp("audit")
    directory.chmod(0o700)
    vpath = directory / "v.bv"
    append_audit(vpath, {"grant": "bot", "endpoint": text})
    append_audit(vpath, {"grant": "bot", "endpoint": "second"})
    records = read_audit(vpath)
    assert [r["endpoint"] for r in records] == [text, "second"]
    assert audit_path(vpath).read_bytes().count(b"\n") == 2


def test_rotates_into_segments_kept_within_the_retentions_size(vpath: Path) -> None:
    limit = 1000
    for n in range(60):
        append_audit(vpath, _record(n), max_bytes=limit,
                     retention=Retention(days=1, max_bytes=3500))
    path = audit_path(vpath)
    kept = segments(vpath)
    assert kept and all(stat.S_IMODE(os.lstat(p).st_mode) == 0o600 for p in kept)
    assert path.stat().st_size <= limit and all(p.stat().st_size <= limit for p in kept)
    assert sum(p.stat().st_size for p in [*kept, path]) <= 3500
    records = read_audit(vpath)
    times = [r["time"] for r in records]
    assert times == sorted(times)  # oldest first across the files
    assert times[-1] == "2023-11-14T22:14:19.000Z"  # the newest line is never lost
    # The oldest records are gone, the rest are contiguous.
    assert 10 < len(records) < 60
    assert times == [_iso_of(n) for n in range(60 - len(records), 60)]


def test_segments_older_than_the_retentions_days_are_removed(vpath: Path) -> None:
    for n in range(30):
        append_audit(vpath, _record(n), max_bytes=1000)
    old = segments(vpath)
    assert len(old) >= 2
    for segment in old:
        os.utime(segment, (1_600_000_000, 1_600_000_000))  # years ago
    append_audit(vpath, _record(30), max_bytes=1000)  # fills the current file ...
    for n in range(31, 40):  # ... and the next rotation applies the retention
        append_audit(vpath, _record(n), max_bytes=1000, retention=Retention(days=30))
    assert not any(p.exists() for p in old)
    assert read_audit(vpath)[-1]["time"] == _iso_of(39)


def test_a_sent_line_without_its_done_line_reads_outcome_unknown(vpath: Path) -> None:
    append_lines(vpath, [
        {"phase": "sent", "seq": "a-1", "grant": "bot", "endpoint": "/0/private/AddOrder"},
        {"phase": "sent", "seq": "a-2", "grant": "bot", "endpoint": "/0/private/AddOrder"},
        {"phase": "done", "seq": "a-1", "outcome": "forwarded", "upstream_status": 200},
        {"phase": "summary", "outcome": "invalid-signature", "count": 12000,
         "interval_s": 60.0}])
    first, second, summary = read_audit(vpath)
    assert (first["seq"], first["outcome"], first["upstream_status"]) == ("a-1", "forwarded",
                                                                         200)
    assert (second["seq"], second["outcome"]) == ("a-2", UNKNOWN_OUTCOME)
    assert summary["outcome"] == "invalid-signature x12000"


def test_torn_line_is_skipped_with_a_warning(vpath: Path) -> None:
    append_audit(vpath, _record(0))
    with open(audit_path(vpath), "ab") as f:
        f.write(b'{"grant": "bot", "outc')  # a crash mid-line
    with pytest.warns(VaultWarning, match="skipped 1 malformed line"):
        records = read_audit(vpath)
    assert len(records) == 1


def test_a_log_readable_by_others_is_refused(vpath: Path) -> None:
    append_audit(vpath, _record(0))
    audit_path(vpath).chmod(0o644)
    with pytest.raises(InsecurePermissionsError):
        read_audit(vpath)
    with pytest.raises(InsecurePermissionsError):
        append_audit(vpath, _record(1))


def test_a_symlinked_log_is_refused(vpath: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    audit_path(vpath).symlink_to(target)
    with pytest.raises(InsecurePermissionsError):
        append_audit(vpath, _record(0))
    assert target.read_text() == ""


def _writer(vpath: str, who: int, count: int, limit: int) -> None:
    for n in range(count):
        append_audit(vpath, {"grant": f"w{who}", "endpoint": f"/0/private/X{n}",
                             "outcome": "ok"}, max_bytes=limit)


@pytest.mark.parametrize("limit", [1024 * 1024, 4000])
def test_concurrent_writers_in_real_processes_lose_and_tear_nothing(vpath: Path,
                                                                    limit: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(vpath), w, 100, limit)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    records = read_audit(vpath)  # would warn (and the test fail under -W error) if torn
    if limit > 100_000:
        assert len(records) == 400
        for w in range(4):
            mine = [r["endpoint"] for r in records if r["grant"] == f"w{w}"]
            assert mine == [f"/0/private/X{n}" for n in range(100)]
    else:
        path = audit_path(vpath)
        assert path.stat().st_size <= limit
        # Each writer's surviving lines are in its own order.
        for w in range(4):
            mine = [int(r["endpoint"].rsplit("X", 1)[1]) for r in records
                    if r["grant"] == f"w{w}"]
            assert mine == sorted(mine)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (root only, as in CI): a disk that really fills up."""
    with small_tmpfs(tmp_path / "small", "64k") as mount:
        yield mount


def _fill(directory: Path) -> None:
    with contextlib.suppress(OSError), open(directory / "filler", "wb", buffering=0) as f:
        while True:
            f.write(b"x" * 512)


def test_disk_full_leaves_only_whole_lines(small_fs: Path) -> None:
    vpath = small_fs / "vault.bv"
    for n in range(3):
        append_audit(vpath, _record(n))
    _fill(small_fs)
    failures: list[int | None] = []
    for n in range(3, 200):  # the file's last page fills, then writes fail
        try:
            append_audit(vpath, _record(n))
        except OSError as exc:
            failures.append(exc.errno)
    assert failures and set(failures) == {errno.ENOSPC}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a torn line would warn
        records = read_audit(vpath)
    assert [r["time"] for r in records] == [
        _iso_of(n) for n in range(len(records))]  # the first ones, whole and in order
    (small_fs / "filler").unlink()
    append_audit(vpath, _record(999))  # room again: appends continue after the whole lines
    assert read_audit(vpath)[-1]["time"] == _iso_of(999)


def _iso_of(n: int) -> str:
    from botvault.audit import _iso  # the module's own formatting of a numeric time

    return _iso(1_700_000_000.0 + n)
