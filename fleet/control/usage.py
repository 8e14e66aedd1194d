"""What a vassal uses: its processes' memory (PSS), read from /proc."""

from __future__ import annotations

from pathlib import Path


def rss_and_pss(pid: int) -> tuple[int, int]:
    """Resident and proportional set size of one process in bytes, (0, 0) if unknown (it is gone, say)."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0, 0
    return rss, pss


def pss(pid: int) -> int:
    """Proportional set size of one process in bytes (shared pages split between sharers), 0 if unknown."""
    return rss_and_pss(pid)[1]


def memory_of(pids: list[int]) -> int:
    """PSS of several processes, so that rows for different vassals add up honestly."""
    return sum(pss(pid) for pid in pids)
