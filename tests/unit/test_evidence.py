"""Results files carry their evidence: every stamp field, a provenance line over every generated table, and a
re-run of one section that writes its own file and leaves every other section's file as it was.

bench's report is run as `python -m bench.report FOLDER` (tests import neither bench nor soak)."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import evidence
from harness.cluster import REPO

FAKE_ADMIN = {
    "config": {"vassals": 3, "idle_seconds": 1.0, "rounds": 1, "scrapes": 5},
    "rows": {"GET /metrics, 40 lines, 2 KiB (ms)": "median 4.25, p95 5.50, max 6.75"},
}


def stamped(**fields) -> dict:
    stamp = {
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "dirty": True,
        "started": "2026-12-06T01:00:00Z",
        "ended": "2026-12-06T01:02:03Z",
        "seconds": 123.0,
        "machine": {"cpu_model": "Test CPU 9000", "cores": 2, "memory_gib": 3.5},
        "load_before": [0.25, 0.5, 0.75],
        "load_after": [1.25, 1.5, 1.75],
    }
    return stamp | fields


def report(out: Path) -> str:
    """results.md as `python -m bench.report` generates it from the results files in `out`."""
    argv = [sys.executable, "-m", "bench.report", str(out)]
    subprocess.run(argv, cwd=REPO, check=True, capture_output=True, timeout=120)
    return (out / "results.md").read_text()


def test_a_stamp_has_every_field_filled_on_this_machine():
    stamp = evidence.finish(evidence.start())
    assert evidence.missing(stamp) == []
    assert set(evidence.FIELDS) <= set(stamp) and set(evidence.MACHINE_FIELDS) <= set(stamp["machine"])
    assert re.fullmatch(r"[0-9a-f]{40}", stamp["commit"]), stamp["commit"]
    assert isinstance(stamp["dirty"], bool)
    started, ended = (dt.datetime.strptime(stamp[k], "%Y-%m-%dT%H:%M:%SZ") for k in ("started", "ended"))
    assert started <= ended and stamp["seconds"] >= 0
    assert stamp["machine"]["cpu_model"] and stamp["machine"]["cores"] >= 1 and stamp["machine"]["memory_gib"] > 0
    assert len(stamp["load_before"]) == len(stamp["load_after"]) == 3
    json.dumps(stamp)  # nothing in it that a results file cannot hold (the monotonic start stays behind)


def test_a_stamp_missing_a_field_is_refused(tmp_path):
    stamp = stamped()
    del stamp["load_after"]
    with pytest.raises(ValueError, match="load_after"):
        evidence.write("admin", stamp, FAKE_ADMIN, out=tmp_path)
    assert not (tmp_path / "admin").exists() or list((tmp_path / "admin").iterdir()) == []


def test_the_markdown_is_generated_from_a_results_file_with_its_provenance_line(tmp_path):
    path = evidence.write("admin", stamped(), FAKE_ADMIN, out=tmp_path)
    assert path == tmp_path / "admin" / "2026-12-06T010203Z.json"
    md = report(tmp_path)
    heading = md.index("## The operator's view")
    line = md[heading:].splitlines()[2]
    assert line == (
        "_Run: commit `0123456789ab` (with uncommitted changes); started 2026-12-06T01:00:00Z, "
        "ended 2026-12-06T01:02:03Z, 123 s (UTC); 2 cores (Test CPU 9000), 3.5 GiB; "
        "load average (1, 5, 15 min) before 0.25, 0.5, 0.75, after 1.25, 1.5, 1.75; "
        "file `admin/2026-12-06T010203Z.json`._"
    )
    assert "| GET /metrics, 40 lines, 2 KiB (ms) | median 4.25, p95 5.50, max 6.75 |" in md[heading:]


def test_what_was_not_recorded_is_said_so_not_guessed(tmp_path):
    unknown = stamped(commit=None, dirty=None, started=None, machine=None, load_after=[2.5, None, None])
    evidence.write("admin", unknown, FAKE_ADMIN, out=tmp_path, notes=["Converted: the commit was not recorded."])
    md = report(tmp_path)
    assert (
        "_Run: commit not recorded; started not recorded, ended 2026-12-06T01:02:03Z, 123 s (UTC); "
        "machine not recorded; load average (1, 5, 15 min) before 0.25, 0.5, 0.75, "
        "after 2.5 (5, 15 min not recorded)"
    ) in md
    assert "_Converted: the commit was not recorded._" in md


def test_a_quick_run_says_so_above_its_table(tmp_path):
    evidence.write("admin", stamped(), FAKE_ADMIN, out=tmp_path, quick=True)
    md = report(tmp_path)
    assert "_**Quick run (smoke test): too short to quote.** Run: commit `0123456789ab`" in md


def test_re_running_one_section_writes_its_own_file_and_leaves_the_others_untouched(tmp_path):
    other = evidence.write("throughput", stamped(), {"skipped": "an earlier run"}, out=tmp_path)
    first = evidence.write("scale", stamped(), {"skipped": "scale, run 1"}, out=tmp_path)
    report(tmp_path)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (other, first)}

    again = stamped(started="2026-12-06T02:00:00Z", ended="2026-12-06T02:00:30Z")
    second = evidence.write("scale", again, {"skipped": "scale, run 2"}, out=tmp_path)
    same_second = evidence.write("scale", again, {"skipped": "scale, run 3"}, out=tmp_path)
    md = report(tmp_path)

    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (other, first)} == before
    assert evidence.runs("scale", tmp_path) == [first, second, same_second]
    assert evidence.runs("throughput", tmp_path) == [other]
    assert evidence.latest("scale", tmp_path)["data"] == {"skipped": "scale, run 3"}
    assert "scale, run 3" in md and "scale, run 1" not in md and "an earlier run" in md
    assert f"file `scale/{same_second.name}`" in md and f"file `throughput/{other.name}`" in md
