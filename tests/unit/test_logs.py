"""fleet.logs: the failure reason in a vassal's log, and following logs with prefixes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from fleet import logs

CLEAN_START = """\
*** Starting uWSGI 2.0.31 (64bit) on [Tue Nov 25 17:00:00 2025] ***
compiled with version: 12.2.0 on 25 November 2025 16:00:00
detected number of CPU cores: 8
current working directory: /c/app
detected binary path: /c/.venv/bin/uwsgi
your memory page size is 4096 bytes
uwsgi socket 0 bound to UNIX address /c/run/sockets/backend-1.sock fd 3
Python version: 3.11.2 (main, Mar 13 2023, 12:18:29) [GCC 12.2.0]
*** Python threads support is disabled. You can enable it with --enable-threads ***
WSGI app 0 (mountpoint='') ready in 0 seconds on interpreter 0x7f00 pid: 100 (default app)
*** uWSGI is running in multiple interpreter mode ***
spawned uWSGI master process (pid: 100)
spawned uWSGI worker 1 (pid: 101, cores: 1)
"""
CLEAN_START += (
    "[pid: 101|app: 0|req: 1/1] 127.0.0.1 () {30 vars in 400 bytes} [Tue Nov 25 17:00:01 2025] "
    "GET /healthz => generated 2 bytes in 0 msecs (HTTP/1.1 200) 2 headers in 79 bytes "
    "(1 switches on core 0)\n"
)

TRACEBACK = """\
Traceback (most recent call last):
  File "/c/app/wsgi.py", line 1, in <module>
    import nosuch
ModuleNotFoundError: No module named 'nosuch'
unable to load app 0 (mountpoint='') (callable not found or import error)
*** no app loaded. GAME OVER ***
"""


@pytest.fixture
def log(tmp_path: Path):
    def write(text: str) -> Path:
        path = tmp_path / "backend-1.log"
        path.write_text(text)
        return path

    return write


def test_clean_log_has_no_failure_reason(log):
    assert logs.failure_reason(log(CLEAN_START)) == ""


def test_missing_log_has_no_failure_reason(tmp_path):
    assert logs.failure_reason(tmp_path / "missing.log") == ""


def test_unable_to_load_app_is_the_least_specific_reason(log):
    assert logs.failure_reason(log(CLEAN_START + "unable to load app 0 (mountpoint='')\n")) == (
        "unable to load app 0 (mountpoint='')"
    )


def test_python_exception_beats_unable_to_load_app(log):
    assert logs.failure_reason(log(CLEAN_START + TRACEBACK)) == "ModuleNotFoundError: No module named 'nosuch'"


def test_strict_mode_directive_beats_python_exception(log):
    text = TRACEBACK + "[strict-mode] unknown config directive: proceses\n" + TRACEBACK
    assert logs.failure_reason(log(text)) == "[strict-mode] unknown config directive: proceses"


def test_fleet_vassal_refusal_beats_everything(log):
    refusal = "fleet-vassal: vassals/x.ini:2: `socket` is managed by fleet"
    text = refusal + "\n[strict-mode] unknown config directive: x\n" + TRACEBACK
    assert logs.failure_reason(log(text)) == refusal


def test_the_latest_line_of_a_kind_wins(log):
    text = "KeyError: 'old'\n" + CLEAN_START + "ValueError: new\n"
    assert logs.failure_reason(log(text)) == "ValueError: new"


def test_failure_reason_is_bounded(log):
    assert len(logs.failure_reason(log("RuntimeError: " + "x" * 1000 + "\n"))) == 300


def test_tail_reads_only_the_end(tmp_path):
    path = tmp_path / "big.log"
    path.write_text("a" * 100 + "b" * 10)
    assert logs.tail(path, limit=10) == "b" * 10


# ---- Follower ---------------------------------------------------------------------------------------


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def test_follower_prints_new_complete_lines_with_a_prefix(tmp_path):
    emperor, b1 = tmp_path / "emperor.log", tmp_path / "backend-1.log"
    emperor.write_text("old line\n")
    b1.write_text("")
    out = io.StringIO()
    follower = logs.Follower(out)
    assert follower.poll([emperor, b1]) == 1  # what is there already, once
    assert follower.poll([emperor, b1]) == 0

    append(emperor, "one\ntwo\n")
    append(b1, "three\n")
    assert follower.poll([emperor, b1]) == 3
    assert out.getvalue() == "emperor   | old line\nemperor   | one\nemperor   | two\nbackend-1 | three\n"


def test_follower_holds_back_a_partial_line(tmp_path):
    path = tmp_path / "nginx.log"
    path.write_text("")
    out = io.StringIO()
    follower = logs.Follower(out)

    append(path, "done\nhalf")
    assert follower.poll([path]) == 1
    assert out.getvalue() == "nginx | done\n"
    assert follower.poll([path]) == 0

    append(path, " and the rest\n")
    assert follower.poll([path]) == 1
    assert out.getvalue() == "nginx | done\nnginx | half and the rest\n"


def test_follower_starts_over_after_truncation(tmp_path):
    path = tmp_path / "c.log"
    path.write_text("a long first line\n")
    out = io.StringIO()
    follower = logs.Follower(out)
    assert follower.poll([path]) == 1
    path.write_text("new\n")
    assert follower.poll([path]) == 1
    assert out.getvalue() == "c | a long first line\nc | new\n"


def test_follower_skips_missing_files(tmp_path):
    follower = logs.Follower(io.StringIO())
    assert follower.poll([tmp_path / "missing.log"]) == 0
