"""What a vassal uses: its processes' memory (PSS), read from /proc."""

from __future__ import annotations

from pathlib import Path


def pss(pid: int) -> int:
    """Proportional set size of one process in bytes (shared pages split between sharers), 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def memory_of(pids: list[int]) -> int:
    """PSS of several processes, so that rows for different vassals add up honestly."""
    return sum(pss(pid) for pid in pids)
