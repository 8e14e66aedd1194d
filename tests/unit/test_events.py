"""fleet.published.events on disk (`fleet events`: read, follow, format) and `fleet status --watch`."""

from __future__ import annotations

import io
import json
from pathlib import Path

from fleet import cli
from fleet.layout import Layout
from fleet.published import status
from fleet.published.events import Event, EventFile, format_event, read_events, tail
from fleet.published.parts import PartStatus


def event(name: str, at: float, old: str | None = None, new: str | None = "starting") -> Event:
    return Event(name, old, new, "new vassal file", at)


def test_read_events_takes_the_rotated_file_first_and_skips_bad_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    write = EventFile(path, max_bytes=150)
    for i in range(4):
        write(event(f"b{i}", float(i)))
    with open(path, "a") as f:
        f.write("not json\n")
    assert (tmp_path / "events.jsonl.1").exists()
    assert [e.name for e in read_events(path)] == ["b0", "b1", "b2", "b3"]
    assert read_events(tmp_path / "none.jsonl") == []


def test_tail_yields_what_is_appended_across_a_rotation(tmp_path):
    path = tmp_path / "events.jsonl"
    write = EventFile(path, max_bytes=100)
    write(event("before", 0.0))  # already there when following starts: not yielded
    script = [
        lambda: write(event("a", 1.0)),
        lambda: None,
        lambda: write(event("b", 2.0)),  # past max_bytes: this one starts a new file
        lambda: _append(path, '{"name": "half'),  # a line still being written
        lambda: None,
    ]

    def stopped() -> bool:  # each look at the file is a step of the script; no threads, no clock
        if script:
            script.pop(0)()
            return False
        return len(seen) >= 2

    seen: list[str] = []
    for e in tail(path, stopped, interval=0):
        seen.append(e.name)
    assert seen == ["a", "b"]
    assert (tmp_path / "events.jsonl.1").exists()


def test_tail_waits_for_a_file_that_does_not_exist_yet(tmp_path):
    path = tmp_path / "events.jsonl"
    calls = []

    def stopped() -> bool:
        calls.append(1)
        if len(calls) == 2:
            EventFile(path)(event("first", 1.0))
        return len(calls) > 4

    assert [e.name for e in tail(path, stopped, interval=0)] == ["first"]


def test_format_event_has_the_time_to_the_millisecond():
    line = format_event(Event("backend-1", "healthy", "reloading", "its file changed", 1_800_000_000.25))
    assert line.endswith(".250  backend-1: healthy -> reloading (its file changed)")


def test_fleet_events_prints_the_last_ones_as_text_or_json(tmp_path, capsys):
    (tmp_path / "emperor.ini").write_text("")
    layout = Layout(tmp_path)
    layout.logs.mkdir(parents=True)
    for i in range(3):
        EventFile(layout.events_file)(event(f"b{i}", float(i)))
    assert cli.main(["--root", str(tmp_path), "events", "-n", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == [
        "b1: new -> starting (new vassal file)",
        "b2: new -> starting (new vassal file)",
    ]
    assert cli.main(["--root", str(tmp_path), "events", "--json"]) == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["name"] for d in docs] == ["b0", "b1", "b2"]
    assert set(docs[0]) == {"name", "old", "new", "reason", "at", "app"}


def test_status_watch_redraws_the_table(tmp_path: Path):
    layout = Layout(tmp_path)
    (tmp_path / "vassals").mkdir()
    (tmp_path / "vassals" / "web.ini").write_text("")
    out, naps = io.StringIO(), []
    parts = [PartStatus("control", True, 7)]
    assert status.watch(layout, lambda: parts, interval=2.0, out=out, sleep=naps.append, frames=3) == 0
    text = out.getvalue()
    assert text.count("fleet status every 2 s") == 3 and text.count("\nweb ") == 3
    assert "control up (pid 7)" in text
    assert naps == [2.0, 2.0]  # between frames, not after the last


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)
