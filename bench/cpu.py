"""CPU time of the processes a benchmark runs on, from /proc/<pid>/stat (utime + stime, in seconds).

The processes: the services (their pids), the mail sink, the Kafka broker (the process listening on
the bootstrap port), the PostgreSQL server (the postmaster and every child of it: backends, WAL writer,
checkpointer) and the benchmark's own driver. A `Meter` takes a snapshot before and after a phase; the
difference per process, divided by the applications of the phase, is the CPU per application. A process
that exits between the snapshots (a PostgreSQL backend of a short connection) is not counted: the
services keep their pools, so their backends live through a phase.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float | None:
    """utime + stime of `pid` in seconds; None if it is gone (or not ours to read)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of proc(5)


def children(pid: int) -> list[int]:
    """Direct children of `pid` (from every thread's children list)."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "0A":  # LISTEN
                    inodes.add(parts[9])
    return inodes


def listener_pid(port: int) -> int | None:
    """The process listening on `port` on this machine (if we may read its file descriptors)."""
    inodes = {f"socket:[{i}]" for i in _listening_inodes(port)}
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(proc.name)
        except OSError:
            continue
    return None


def port_of(address: str) -> int:
    """The port of `host:port` (the first of a comma-separated bootstrap list)."""
    return int(address.split(",")[0].rsplit(":", 1)[1])


@dataclass
class Meter:
    """Named groups of processes; `snapshot()` reads their CPU, `since(snapshot)` the difference."""

    groups: dict[str, Callable[[], Iterable[int]]] = field(default_factory=dict)

    def add(self, name: str, pids: Callable[[], Iterable[int]]) -> None:
        self.groups[name] = pids

    def snapshot(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for name, pids in self.groups.items():
            out[name] = {pid: t for pid in pids() if (t := cpu_s(pid)) is not None}
        return out

    def since(self, before: dict[str, dict[int, float]]) -> dict[str, float]:
        """CPU seconds per group since `before` (processes started since then count from zero)."""
        now = self.snapshot()
        return {
            name: round(sum(t - before.get(name, {}).get(pid, 0.0) for pid, t in pids.items()), 3) for name, pids in now.items()
        }


def postgres_pids(postmaster: int | None) -> Callable[[], list[int]]:
    def pids() -> list[int]:
        return [] if postmaster is None else [postmaster, *children(postmaster)]

    return pids


def per_application_ms(cpu: dict[str, float], applications: int) -> dict[str, float]:
    return {name: round(1000 * seconds / max(1, applications), 3) for name, seconds in cpu.items()}
