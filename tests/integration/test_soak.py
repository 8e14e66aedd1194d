"""A 90-second soak (the same code as `make soak`, which runs 10 minutes): churn under keep-alive and
new-connection GET and POST clients loses no request it should not, leaks neither memory nor open files
in fleet's long-lived processes, and leaves no process behind."""

from __future__ import annotations

import json

import pytest

from soak.churn import KINDS
from soak.run import soak

pytestmark = pytest.mark.integration


def test_a_90_second_soak_passes_every_verdict(tmp_path):
    report = soak(minutes=1.5, seed=1, out=tmp_path, log=lambda line: None)
    failed = [v for v in report.verdicts if not v.ok]
    assert not failed, report.summary() + "\n" + (tmp_path / "soak.md").read_text()
    assert {s.kind for s in report.steps} == set(KINDS)
    assert {"emperor", "nginx", "control"} <= set(report.figures)
    doc = json.loads((tmp_path / "soak.json").read_text())
    assert doc["ok"] and doc["leftovers"] == [] and doc["requests"]["ok"] > 1000
