"""The durable daily budget: concurrent processes add up, a restart reads what was spent, a
new UTC day starts at 0, and a file that is not ours or not well formed is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from botvault.errors import FormatError, InsecurePermissionsError
from botvault.trading_budget import DailyBudget, budget_path
from botvault.trading_policy import Refused

DAY = 1_765_065_600.0  # 2025-12-07T00:00:00Z

_WORKER = r"""
import sys
from decimal import Decimal
from pathlib import Path
from botvault.trading_policy import Refused
from botvault.trading_budget import DailyBudget
budget = DailyBudget(Path(sys.argv[1]))
ok = 0
for _ in range(int(sys.argv[2])):
    try:
        budget.charge("bot", Decimal("1.5"), Decimal("30"))
        ok += 1
    except Refused:
        pass
print(ok)
"""


def test_concurrent_processes_never_exceed_the_cap(tmp_path: Path) -> None:
    vault = tmp_path / "v.bv"
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(vault), "10"],
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    accepted = sum(int(p.communicate(timeout=60)[0]) for p in procs)
    assert accepted == 20  # 20 x 1.5 = 30: exactly the cap, from 40 attempts
    assert DailyBudget(vault).spent("bot")[1] == Decimal(30)


def test_a_restart_reads_the_day_and_a_new_day_starts_at_zero(tmp_path: Path) -> None:
    now = [DAY + 3600]
    vault = tmp_path / "v.bv"
    DailyBudget(vault, clock=lambda: now[0]).charge("bot", Decimal(20), Decimal(25))
    again = DailyBudget(vault, clock=lambda: now[0])  # another process, or after a restart
    with pytest.raises(Refused) as caught:
        again.charge("bot", Decimal(10), Decimal(25))
    assert caught.value.rule == "daily-notional"
    assert again.charge("other", Decimal(10), Decimal(25)) == 10  # per grant
    now[0] = DAY + 86400 + 1  # the next UTC day
    assert again.spent("bot") == ("2025-12-08", Decimal(0))
    assert again.charge("bot", Decimal(25), Decimal(25)) == 25
    assert oct(os.stat(budget_path(vault)).st_mode & 0o777) == "0o600"


def test_an_unreadable_budget_refuses(tmp_path: Path) -> None:
    vault = tmp_path / "v.bv"
    path = budget_path(vault)
    for text in ("{not json", '{"v": 1, "day": "2025-12-07"}\n{"bot": "bot", "add": "1e3"}\n',
                 '{"v": 1, "day": "2025-12-07"}\nnot json\n{"bot": "bot", "add": "1"}\n'):
        path.write_text(text)
        path.chmod(0o600)
        with pytest.raises(FormatError):
            DailyBudget(vault, clock=lambda: DAY).charge("bot", Decimal(1), Decimal(25))
    path.chmod(0o666)  # anyone could reset what the bots spent
    with pytest.raises(InsecurePermissionsError):
        DailyBudget(vault).charge("bot", Decimal(1), Decimal(25))
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InsecurePermissionsError):
        DailyBudget(vault).spent("bot")


def test_a_line_torn_by_a_crash_is_not_counted_and_is_cut_off(tmp_path: Path) -> None:
    vault = tmp_path / "v.bv"
    budget = DailyBudget(vault, clock=lambda: DAY)
    budget.charge("bot", Decimal(5), Decimal(25))
    with budget_path(vault).open("ab") as f:  # a crash in the middle of an append
        f.write(b'{"add": "900", "bo')
    other = DailyBudget(vault, clock=lambda: DAY)  # a restarted agent
    assert other.spent("bot")[1] == 5
    assert other.charge("bot", Decimal(5), Decimal(25)) == 10
    assert budget.charge("bot", Decimal(1), Decimal(25)) == 11  # the first one reads on
    lines = budget_path(vault).read_text().splitlines()
    assert len(lines) == 4 and all(line.endswith("}") for line in lines)
