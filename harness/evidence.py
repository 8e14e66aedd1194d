"""Results files with their provenance: what was measured, on which commit, when, on what machine, how busy.

Every measurement (a section of `make bench`, the soak, the operator's view) writes its own dated file,
`bench/results/<section>/<ended, UTC>.json` (a run converted from before this module, whose end was not
recorded, is named after the commit that added it):

    {"section": "scale", "quick": false, "run": {the stamp}, "notes": [...], "data": {what was measured}}

and never touches another run's file. The markdown tables are generated from the latest file of each
section (`latest`), each under a line that says which run it comes from (`provenance_md`). A stamp field
that was not recorded is null, and the line says so: nothing here guesses a stamp.

Standard library only: bench, soak and the unit tests import it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
# Every stamp has these fields (null when unknown); `machine` has MACHINE_FIELDS, loads are [1, 5, 15] min.
FIELDS = ("commit", "dirty", "started", "ended", "seconds", "machine", "load_before", "load_after")
MACHINE_FIELDS = ("cpu_model", "cores", "memory_gib")


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def commit(root: Path = REPO) -> tuple[str | None, bool | None]:
    """HEAD of the tree measured and whether it had uncommitted changes (None, None outside git)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=20, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head or None, bool(status.strip())


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def machine() -> dict:
    return {"cpu_model": cpu_model(), "cores": os.cpu_count(), "memory_gib": memory_gib()}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def start(root: Path = REPO) -> dict:
    """The stamp of a measurement about to begin: commit, start time, machine, load before."""
    head, dirty = commit(root)
    return {
        "commit": head,
        "dirty": dirty,
        "started": _iso(_utc_now()),
        "ended": None,
        "seconds": None,
        "machine": machine(),
        "load_before": load(),
        "load_after": None,
        "_t0": time.monotonic(),
    }


def finish(stamp: dict) -> dict:
    """The stamp completed when the measurement has ended: end time, duration, load after."""
    done = {k: v for k, v in stamp.items() if k != "_t0"}
    done["ended"] = _iso(_utc_now())
    done["seconds"] = round(time.monotonic() - stamp["_t0"], 1)
    done["load_after"] = load()
    return done


def missing(stamp: dict) -> list[str]:
    """The stamp's fields that are absent (not merely null): a results file must have them all."""
    out = [f for f in FIELDS if f not in stamp]
    if isinstance(stamp.get("machine"), dict):
        out += [f"machine.{f}" for f in MACHINE_FIELDS if f not in stamp["machine"]]
    return out


def _name(ended: str) -> str:
    """`2026-12-06T021530Z` from when the run ended (a converted run ended to the minute: `2026-11-26T1457Z`)."""
    date, _, clock = ended.rstrip("Z").partition("T")
    return f"{date}T{clock.replace(':', '')}Z"


def write(
    section: str,
    stamp: dict,
    data: dict,
    *,
    quick: bool = False,
    out: Path = RESULTS,
    notes: tuple[str, ...] | list[str] = (),
    folder: Path | None = None,
) -> Path:
    """Write one run of one section to `out/<section>/<ended>.json` (or `folder/<ended>.json`); nothing else
    is touched."""
    if missing(stamp):
        raise ValueError(f"the stamp lacks {', '.join(missing(stamp))}")
    folder = folder or out / section
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_name(stamp['ended'])}.json"
    n = 1
    while path.exists():  # two runs ended in the same second: neither overwrites the other
        n += 1
        path = folder / f"{_name(stamp['ended'])}-{n}.json"
    doc = {"section": section, "quick": quick, "run": stamp, "notes": list(notes), "data": data}
    tmp = folder / f".{path.name}.tmp"
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    return path


def _ended(path: Path) -> str:
    """When the run of a results file ended, sortable (a minutes-only time as second 00; unknown first)."""
    try:
        ended = json.loads(path.read_text())["run"]["ended"] or ""
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return ended.replace("Z", ":00Z") if len(ended) == len("2026-11-26T14:57Z") else ended


def runs(section: str, out: Path = RESULTS, folder: Path | None = None) -> list[Path]:
    """The results files of a section, oldest first (by when they ended; unknown ends first)."""
    folder = folder or out / section
    # `<name>.json` only: a reload run keeps its bulky timelines beside it in `<name>.timelines.json`.
    found = [p for p in folder.glob("*.json") if "." not in p.stem] if folder.is_dir() else []
    return sorted(found, key=lambda p: (_ended(p), _nth(p), p.name))


def _nth(path: Path) -> int:
    """2 for `<ended>-2.json` (the second run that ended in that second), 1 otherwise."""
    head, _, n = path.stem.rpartition("Z-")
    return int(n) if head and n.isdigit() else 1


def latest(section: str, out: Path = RESULTS) -> dict | None:
    """The latest run of a section (the whole file: section, quick, run, notes, data), or None."""
    found = runs(section, out)
    return json.loads(found[-1].read_text()) if found else None


def _or(value: object, unknown: str) -> str:
    return unknown if value is None else str(value)


def _load_md(values: list | None) -> str:
    if not values or all(v is None for v in values):
        return "not recorded"
    known = ", ".join(f"{v:g}" for v in values if v is not None)
    gaps = [m for v, m in zip(values, ("1", "5", "15"), strict=False) if v is None]
    return known + (f" ({', '.join(gaps)} min not recorded)" if gaps else "")


def provenance_md(doc: dict, path: str | None = None) -> str:
    """One line: which run a table comes from (commit, when, machine, load), unknowns said as such."""
    run = doc["run"]
    m = run.get("machine") or {}
    head = run.get("commit")
    commit_s = (
        f"commit `{head[:12]}`" + (" (with uncommitted changes)" if run.get("dirty") else "")
        if head
        else "commit not recorded"
    )
    if m:
        machine_s = (
            f"{_or(m.get('cores'), '?')} cores ({_or(m.get('cpu_model'), 'CPU model not recorded')}), "
            f"{_or(m.get('memory_gib'), '?')} GiB"
        )
    else:
        machine_s = "machine not recorded"
    took = f", {run['seconds']:g} s" if run.get("seconds") is not None else ""
    line = (
        f"_{'**Quick run (smoke test): too short to quote.** ' if doc.get('quick') else ''}"
        f"Run: {commit_s}; started {_or(run.get('started'), 'not recorded')}, "
        f"ended {_or(run.get('ended'), 'not recorded')}{took} (UTC); {machine_s}; "
        f"load average (1, 5, 15 min) before {_load_md(run.get('load_before'))}, "
        f"after {_load_md(run.get('load_after'))}" + (f"; file `{path}`" if path else "") + "._"
    )
    notes = doc.get("notes") or []
    return line + ("\n\n" + " ".join(f"_{n}_" for n in notes) if notes else "")
