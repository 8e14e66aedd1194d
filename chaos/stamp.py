"""What a chaos run was measured on and when: commit (and whether the tree had uncommitted changes), start
and end time in UTC, CPU model, cores, and the load average before and after.

Small and local on purpose: a shared stamp for every bench result is coming (issue 17); this one is to be
replaced by it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def begin() -> dict:
    """The stamp's first half, taken before anything is measured."""
    return {
        "commit": _git("rev-parse", "HEAD") or "unknown",
        # Uncommitted changes mean the commit alone does not say what ran (results files themselves excepted).
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")),
        "start_utc": utc_now(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "loadavg_before": load_average(),
    }


def end(stamp: dict) -> dict:
    """The stamp completed once the measuring is over."""
    return {**stamp, "end_utc": utc_now(), "loadavg_after": load_average()}
