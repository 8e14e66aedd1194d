"""`python -m bench`, for real: a quick run of one section (scale, 1 and 5 vassals) writes its own stamped results
file, leaves another section's file as it was, and generates results.md with both runs' provenance lines."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from harness import evidence
from harness.cluster import REPO

pytestmark = pytest.mark.integration


def test_a_quick_section_run_is_stamped_and_leaves_the_other_sections_alone(tmp_path):
    earlier = {
        "commit": None,
        "dirty": None,
        "started": None,
        "ended": "2026-11-26T14:57Z",
        "seconds": None,
        "machine": None,
        "load_before": None,
        "load_after": None,
    }
    other = evidence.write("throughput", earlier, {"skipped": "an earlier run"}, out=tmp_path)
    before = (other.read_bytes(), other.stat().st_mtime_ns)

    argv = [sys.executable, "-m", "bench", "--quick", "--only", "scale", "--out", str(tmp_path)]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    output = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, output

    [path] = evidence.runs("scale", tmp_path)
    doc = json.loads(path.read_text())
    run = doc["run"]
    assert evidence.missing(run) == [] and doc["quick"] is True, run
    assert re.fullmatch(r"[0-9a-f]{40}", run["commit"]) and isinstance(run["dirty"], bool), run
    assert None not in (run["started"], run["ended"], run["seconds"], *run["machine"].values()), run
    assert len(run["load_before"]) == len(run["load_after"]) == 3, run
    assert [r["vassals"] for r in doc["data"]["rows"]] == [1, 5], doc["data"]
    assert (other.read_bytes(), other.stat().st_mtime_ns) == before

    md = (tmp_path / "results.md").read_text()
    assert f"Run: commit `{run['commit'][:12]}`" in md and f"file `scale/{path.name}`" in md
    assert "**Quick run (smoke test): too short to quote.**" in md
    assert f"file `throughput/{other.name}`" in md and "commit not recorded" in md
