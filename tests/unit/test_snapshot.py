"""fleet.published.snapshot: run/state.json keeps plain strings on disk and gives back States."""

from __future__ import annotations

import json

from fleet.core.states import State
from fleet.published.events import Event
from fleet.published.snapshot import BackendView, Snapshot


def test_a_backends_state_is_a_state_again_once_read_back():
    snap = Snapshot(
        control_pid=7,
        routed=("a",),
        backends={"a": BackendView("a", State.HEALTHY, 5.0), "b": BackendView("b", State.FAILED, 6.0)},
        events=(
            Event("b", None, State.STARTING, "new vassal file", 1.0),
            Event("b", State.STARTING, State.FAILED, "x", 2.0),
        ),
    )
    back = Snapshot.from_json(snap.to_json())
    assert back == snap
    assert type(back.backends["a"].state) is State and back.state_of("b") is State.FAILED
    assert [(type(e.old), type(e.new)) for e in back.events] == [(type(None), State), (State, State)]


def test_the_json_on_disk_holds_the_states_values():
    snap = Snapshot(
        backends={"a": BackendView("a", State.RELOADING, 5.0)},
        events=(Event("a", State.HEALTHY, State.RELOADING, "r", 1.0),),
    )
    doc = json.loads(snap.to_json())
    assert doc["backends"]["a"]["state"] == "reloading"
    assert (doc["events"][0]["old"], doc["events"][0]["new"]) == ("healthy", "reloading")


def test_an_unknown_state_in_the_file_reads_as_no_snapshot(tmp_path):
    from fleet.layout import Layout

    layout = Layout(tmp_path)
    layout.state_file.parent.mkdir(parents=True, exist_ok=True)
    layout.state_file.write_text(
        json.dumps({"control_pid": 3, "backends": {"a": {"name": "a", "state": "sleepy", "since": 1}}})
    )
    assert Snapshot.read(layout) == Snapshot()
