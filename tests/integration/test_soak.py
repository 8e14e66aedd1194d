"""A 90-second soak (the same command as `make soak`, which runs 10 minutes): churn under keep-alive and
new-connection GET and POST clients loses no request it should not, leaks neither memory nor open files
in fleet's long-lived processes, and leaves no process behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness import evidence
from harness.cluster import REPO

pytestmark = pytest.mark.integration


def test_a_90_second_soak_passes_every_verdict(tmp_path):
    argv = [sys.executable, "-m", "soak", "--minutes", "1.5", "--seed", "1", "--out", str(tmp_path)]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900)
    output = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    files = evidence.runs("soak", folder=tmp_path)
    assert len(files) == 1, output
    results = json.loads(files[0].read_text())
    assert evidence.missing(results["run"]) == [] and results["run"]["commit"], results["run"]
    doc = results["data"]
    failed = [v for v in doc["verdicts"] if not v["ok"]]
    assert not failed and proc.returncode == 0, output + "\n" + (tmp_path / "soak.md").read_text()
    assert {s["kind"] for s in doc["steps"]} == set(doc["config"]["kinds"])
    assert {"emperor-1", "emperor-2", "nginx", "control"} <= set(doc["processes"])
    assert doc["ok"] and doc["leftovers"] == [] and doc["requests"]["ok"] > 1000
