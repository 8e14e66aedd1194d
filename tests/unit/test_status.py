"""fleet.published.status: rendering the rows of `fleet status`."""

from __future__ import annotations

import json
import os

from fleet.layout import Layout
from fleet.published.parts import PartStatus
from fleet.published.status import Row, render_json, render_parts, render_table, want_usage

ROWS = [
    Row("backend-1", "healthy", 100, 2, 15, 50 * 2**20, True, ""),
    Row("backend-2", "healthy", 200, 4, 0, 3 * 2**19, False, ""),
    Row("broken", "failed", None, 0, 0, 0, False, "ModuleNotFoundError: No module named 'x'"),
]


def test_table_has_a_header_and_one_line_per_row():
    lines = render_table(ROWS).splitlines()
    assert lines[0].split() == ["NAME", "STATE", "PID", "WORKERS", "REQUESTS", "MEMORY", "WEIGHT", "ERROR"]
    assert lines[1].split() == ["backend-1", "healthy", "100", "2", "15", "50.0", "MiB", "100", "(0%)"]
    assert lines[2].split() == ["backend-2", "healthy", "(unrouted)", "200", "4", "0", "1.5", "MiB", "100"]
    assert lines[3].split()[:8] == ["broken", "failed", "-", "0", "0", "0.0", "MiB", "100"]
    assert lines[3].endswith("ModuleNotFoundError: No module named 'x'")
    assert len(lines) == 4


def test_table_columns_line_up():
    lines = render_table(ROWS).splitlines()
    column = lines[0].index("PID")
    assert [line[column:].split()[0] for line in lines[1:]] == ["100", "200", "-"]
    assert all(line == line.rstrip() for line in lines)


def test_unrouted_is_only_shown_for_healthy_backends():
    table = render_table([Row("b", "starting", None, 0, 0, 0, False, "")])
    assert "unrouted" not in table


def test_empty_table_says_how_to_add_a_backend():
    assert "fleet add NAME" in render_table([])


def test_json_has_one_object_per_row_with_fixed_keys():
    doc = json.loads(render_json(ROWS))["backends"]
    keys = ["name", "state", "pid", "workers", "requests", "memory", "routed", "error", "weight", "share", "app"]
    assert [list(row) for row in doc] == [keys] * 3
    assert doc[0] == {
        "name": "backend-1",
        "state": "healthy",
        "pid": 100,
        "workers": 2,
        "requests": 15,
        "memory": 50 * 2**20,
        "routed": True,
        "error": "",
        "weight": 100,
        "share": 0.0,
        "app": "default",
    }
    assert doc[2]["pid"] is None
    assert json.loads(render_json([])) == {"parts": [], "backends": []}


def test_parts_come_first_and_a_down_part_says_why():
    parts = [PartStatus("supervisor", True, 10), PartStatus("control", False, 12, "not running")]
    text = render_parts(parts)
    assert text.startswith("fleet: supervisor up (pid 10), control DOWN\n")
    assert "  control: not running\n" in text
    assert "fleet up" in render_parts([])
    doc = json.loads(render_json([], parts))
    assert doc["parts"][1] == {"name": "control", "up": False, "pid": 12, "detail": "not running"}


def test_the_table_has_an_app_column_only_when_there_is_more_than_one_app():
    one = render_table([Row("b", "healthy", 1, 1, 0, 0, True, "")])
    assert "APP" not in one.splitlines()[0]
    two = render_table(
        [Row("a", "healthy", 1, 1, 0, 0, True, ""), Row("b", "healthy", 2, 1, 0, 0, True, "", app="blog")]
    )
    assert two.splitlines()[0].split()[:3] == ["NAME", "APP", "STATE"]
    assert two.splitlines()[2].split()[:3] == ["b", "blog", "healthy"]


def test_every_emperor_is_listed_in_its_place_and_one_from_another_container_by_its_stats_socket(tmp_path):
    import os

    from fleet import processes
    from fleet.layout import Layout
    from fleet.published.parts import statuses

    layout = Layout(tmp_path)
    layout.run.mkdir()
    here = {"nginx": os.getpid(), "emperor-2": os.getpid(), "emperor-1": os.getpid()}
    started = {name: processes.start_time(pid) for name, pid in here.items()}
    doc = {"pids": here, "started": started, "pid_namespace": processes.pid_namespace()}
    (layout.run / "processes-all.json").write_text(json.dumps(doc))
    assert [(p.name, p.up) for p in statuses(layout)] == [("emperor-1", True), ("emperor-2", True), ("nginx", True)]
    # Recorded in another pid namespace (compose): told by its own stats socket, which does not answer here.
    doc = {"pids": {"emperor-1": 7, "emperor-2": 8}, "pid_namespace": "elsewhere"}
    (layout.run / "processes-all.json").write_text(json.dumps(doc))
    found = statuses(layout)
    assert [(p.name, p.up) for p in found] == [("emperor-1", False), ("emperor-2", False)]
    assert all(p.detail == "its stats socket does not answer" for p in found)


def test_fleet_status_asks_for_fresh_usage_by_touching_its_file(tmp_path):
    layout = Layout(tmp_path)
    layout.make_run_dirs()
    want_usage(layout)
    first = layout.usage_wanted.stat().st_mtime_ns
    os.utime(layout.usage_wanted, ns=(first - 10**9, first - 10**9))
    want_usage(layout)
    assert layout.usage_wanted.stat().st_mtime_ns >= first


def test_asking_for_usage_where_run_cannot_be_written_is_no_error(tmp_path):
    want_usage(Layout(tmp_path / "absent"))  # no run/ there: the status is shown all the same
