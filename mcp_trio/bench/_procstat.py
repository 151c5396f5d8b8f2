"""CPU time and memory of processes, read from ``/proc`` (Linux).

The harness measures the server it spawned (stdio) or the one it was pointed at
(``--server-pid``), optionally with its descendants (a server with worker processes), and
its own client processes. Where ``/proc`` is missing every reading is None, never a zero.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PROC = "/proc"


def available() -> bool:
    return os.path.isdir(f"{_PROC}/self")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process has used so far."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def memory(pid: int) -> tuple[int, int] | None:
    """(resident set size, its peak so far), in bytes."""
    try:
        with open(f"{_PROC}/{pid}/status", "rb") as f:
            status = f.read()
    except OSError:
        return None
    rss = hwm = 0
    for line in status.splitlines():
        if line.startswith(b"VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith(b"VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return rss, hwm


def descendants(pids: Iterable[int]) -> list[int]:
    """``pids`` and every process below them, found by walking parent links in /proc."""
    roots = list(dict.fromkeys(pids))
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir(_PROC)
    except OSError:
        return roots
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"{_PROC}/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    seen: set[int] = set()
    stack = list(reversed(roots))
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


class ProcessGroup:
    """Some processes (and, if asked, their descendants) measured together.

    ``mark()`` takes a CPU reading and ``cpu_since_mark()`` the CPU used since; ``sample()``
    reads resident memory and keeps the largest sum seen; processes that exit keep their
    last CPU reading so the total does not go backwards.
    """

    def __init__(self, pids: Iterable[int], *, include_descendants: bool) -> None:
        self.roots = list(dict.fromkeys(pids))
        self.include_descendants = include_descendants
        self._cpu_mark: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self.rss_peak: int | None = None
        self.rss_last: int | None = None
        self.rss_hwm: int | None = None

    def pids(self) -> list[int]:
        return descendants(self.roots) if self.include_descendants else list(self.roots)

    def _cpu(self) -> dict[int, float]:
        for pid in self.pids():
            value = cpu_seconds(pid)
            if value is not None:
                self._cpu_last[pid] = value
        return dict(self._cpu_last)

    def mark(self) -> None:
        self._cpu_mark = self._cpu()

    def cpu_since_mark(self) -> float | None:
        if not self.roots or not available():
            return None
        now = self._cpu()
        return sum(value - self._cpu_mark.get(pid, 0.0) for pid, value in now.items())

    def rss(self) -> int | None:
        """Resident memory of the group now (sum), or None when unreadable."""
        readings = [memory(pid) for pid in self.pids()]
        values = [r[0] for r in readings if r is not None]
        return sum(values) if values else None

    def sample(self) -> None:
        """Read resident memory now; keep the peak of the sum and of the kernel's own peaks."""
        readings = [r for r in (memory(pid) for pid in self.pids()) if r is not None]
        if not readings:
            return
        rss = sum(r[0] for r in readings)
        hwm = sum(r[1] for r in readings)
        self.rss_last = rss
        self.rss_peak = rss if self.rss_peak is None else max(self.rss_peak, rss)
        self.rss_hwm = hwm if self.rss_hwm is None else max(self.rss_hwm, hwm)
