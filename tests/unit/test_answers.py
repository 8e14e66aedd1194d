"""fleet.proxy.answers: each backend's answers from the lines nginx writes, by vassal name or by slot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fleet.layout import Layout
from fleet.proxy import nginx
from fleet.proxy.answers import AnswerLog
from tests.unit.conftest import NginxReopen

REPO = Path(__file__).resolve().parents[2]


def test_answers_are_read_per_backend_by_name_or_by_slot(tmp_path):
    path = tmp_path / "answers.log"
    path.write_text("200 0 a\n")  # written before the reader: not its to count
    log = AnswerLog(path, reopen=lambda: None)
    with open(path, "a") as f:
        f.write("200 0 a\n500 1 b\n504 1 \n502 1 b\n200 9\n")  # a timeout names no vassal: its slot does
    assert log.read(["a", "b", "a", "b"]) == {"a": (200,), "b": (500, 504, 502)}
    assert log.read(["a", "b"]) == {}
    log.close()


def read_once(tmp_path: Path, lines: str, slots) -> dict[str, tuple[int, ...]]:
    """What a reader started on an empty log reads once `lines` are appended."""
    path = tmp_path / "answers.log"
    path.touch()
    log = AnswerLog(path, reopen=lambda: None)
    with open(path, "a") as f:
        f.write(lines)
    try:
        return log.read(slots)
    finally:
        log.close()


def test_a_502_no_vassal_gave_is_not_counted_but_a_vassal_s_own_502_is(tmp_path):
    # nginx's 502 for a refused or cut connection (the backend is dead or restarting) names no vassal.
    assert read_once(tmp_path, "502 1 - 0.000\n502 0\n502 0 a 0.010\n", ["a", "b"]) == {"a": (502,)}


def test_an_apps_slot_is_named_with_its_app(tmp_path):
    found = read_once(tmp_path, "504 blog/1\n504 1\n504 shop/1\n", {"1": "d1", "blog/1": "b1"})
    assert found == {"b1": (504,), "d1": (504,)}


def test_an_unfinished_line_waits_for_its_end(tmp_path):
    path = tmp_path / "answers.log"
    log = AnswerLog(path, reopen=lambda: None)
    path.write_text("500 0 a\n50")
    assert log.read(["a"]) == {"a": (500,)}
    with open(path, "a") as f:
        f.write("3 0 a\n")
    assert log.read(["a"]) == {"a": (503,)}
    log.close()


def test_the_log_rotates_and_drains_the_old_file(tmp_path):
    path = tmp_path / "answers.log"
    path.write_text("")
    reopen = NginxReopen(path)
    log = AnswerLog(path, reopen, max_bytes=16)
    with open(path, "a") as f:
        f.write("200 0 a\n" * 3)
    assert log.read(["a"]) == {"a": (200, 200, 200)} and reopen.calls == 1
    with open(tmp_path / "answers.log.1", "a") as old, open(path, "a") as new:
        old.write("500 0 a\n")  # a worker flushing its buffer to the old file before it reopened
        new.write("502 0 a\n")
    assert log.read(["a"]) == {"a": (500, 502)}
    log.close()


@pytest.mark.parametrize("line", ["", "- 0 a", "200", "200 x"])
def test_lines_without_a_backend_or_a_status_are_skipped(tmp_path, line):
    path = tmp_path / "answers.log"
    log = AnswerLog(path, reopen=lambda: None)
    path.write_text(line + "\n")
    assert log.read(["a"]) == {}
    log.close()


def test_the_shipped_template_writes_the_answers_log_and_nginx_accepts_it(tmp_path):
    shutil.copytree(REPO / "nginx", tmp_path / "nginx")
    layout = Layout(tmp_path)
    nginx.write_config(layout, 18080, "127.0.0.1")
    assert "access_log " + str(layout.nginx_dir / "answers.log") + " fleet_answers" in layout.nginx_conf.read_text()
    ok, output = nginx.test_config(layout)
    assert ok, output


def test_answers_retried_on_another_backend_count_for_the_backend_that_gave_them(tmp_path):
    """With uwsgi_next_upstream http_500, the failing try is in the line's tail: counted for its slot's
    backend; a failed connection (502) is not an answer (the probes see it)."""
    path = tmp_path / "answers.log"
    path.write_bytes(b"")
    log = AnswerLog(path, lambda: None)
    with open(path, "ab") as f:
        f.write(b"200 1 b 0.004 |500|unix:/r/slot-0000.sock|0.012\n")
        f.write(b"200 1 b 0.003 |502, 500|unix:/r/slot-0002.sock, unix:/r/slot-0000.sock|0.000, 0.010\n")
        f.write(b"200 1 b 0.002 |-|-|-\n")
    assert log.read(["a", "b", "c"]) == {"a": (500, 500), "b": (200, 200, 200)}
    assert log.timed["a"] == ((500, 12.0), (500, 10.0))
    log.close()


def test_an_earlier_try_on_an_apps_slot_counts_for_that_apps_backend(tmp_path):
    path = tmp_path / "answers.log"
    path.write_bytes(b"")
    log = AnswerLog(path, lambda: None)
    with open(path, "ab") as f:
        f.write(b"200 blog/1 b2 0.004 |500|unix:/r/nginx/apps/blog/slots/slot-0000.sock|0.012\n")
        f.write(b"200 1 d2 0.004 |500|unix:/r/nginx/slots/slot-0000.sock|0.012\n")
    assert log.read({"0": "d1", "1": "d2", "blog/0": "b1", "blog/1": "b2"}) == {
        "b1": (500,),
        "b2": (200,),
        "d1": (500,),
        "d2": (200,),
    }
    log.close()
