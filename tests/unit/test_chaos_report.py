"""The chaos table is generated from its results file: every row's numbers come from the file."""

from __future__ import annotations

import json

from chaos import report
from tests.unit.test_evidence import stamped


def doc(parts: list[dict]) -> dict:
    return {
        "file": "bench/results/chaos/x.json",
        "mode": "quick",
        "profile": "some load",
        "seconds": 61.2,
        "stamp": stamped(load_before=[1.0, 2.0, 3.0]),  # harness/evidence.py's stamp
        "parts": parts,
    }


ROW = {
    "part": "emperor",
    "label": "the Emperor",
    "kills": 3,
    "gets": 9000,
    "gets_failed": 760,
    "posts": 900,
    "posts_failed": 12,
    "failures": {"GET new-connection: http_502": 760, "POST keep-alive: http_502": 12},
    "routed_again_s": [1.5, 2.25, 1.0],
    "routed_again_max_s": 2.25,
    "not_recovered": 0,
    "recover_timeout_s": 30.0,
    "max_latency_ms": 1234.4,
    "status_exit": 0,
    "note": "",
}


def test_a_row_shows_the_files_numbers_and_the_stamp():
    text = report.table(doc([ROW]))
    assert "| the Emperor | 3 | 760 of 9000 | 12 of 900 | 2.25 s | 1234 ms |  |" in text
    assert "`0123456789ab`" in text and "2 cores" in text and "1.0 / 2.0 / 3.0 before" in text
    assert "GET new-connection: http_502 760" in text


def test_a_part_not_recovered_skipped_or_failed_says_so():
    lost = ROW | {"routed_again_s": [1.0, None], "not_recovered": 1, "kills": 2}
    skipped = {"part": "container", "label": "a compose container", "skipped": "no engine"}
    broken = {"part": "worker", "label": "a worker", "error": "WaitTimeout: x"}
    text = report.table(doc([lost, skipped, broken]))
    assert "**not in 30 s** (1 of 2)" in text
    assert "| a compose container | 0 | skipped: no engine |" in text
    assert "| a worker | 0 | not measured: WaitTimeout: x |" in text


def test_write_names_its_results_file(tmp_path):
    results = tmp_path / "2026-12-06T020000Z.json"
    results.write_text(json.dumps(doc([ROW])))
    report.write(results, tmp_path / "chaos.md")
    assert str(results) in (tmp_path / "chaos.md").read_text()
