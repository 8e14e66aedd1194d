"""The control-plane process's wiring: the loop reads each vassal's stats socket once per usage read, publishes
from it and hands the same reads to the subscribers it was given; it imports neither the operator side
(fleet.ops) nor the subscribers it is given."""

from __future__ import annotations

import json
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.control.metrics import Metrics
from fleet.control.runtime import Runtime
from fleet.control.subscribers import PassReport
from fleet.layout import Layout
from fleet.proxy.nginxstats import NginxView
from fleet.published.events import Event
from fleet.published.snapshot import Counters, Snapshot


def modules_after_importing(module: str) -> set[str]:
    """The fleet modules a fresh interpreter holds after importing `module`."""
    code = f"import sys, {module}; print('\\n'.join(m for m in sys.modules if m.startswith('fleet')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", ["fleet.control.runtime", "fleet.control.main"])
def test_the_control_plane_imports_nothing_of_the_operator_side(module):
    loaded = modules_after_importing(module)
    assert module in loaded
    assert not [m for m in loaded if m == "fleet.ops" or m.startswith("fleet.ops.")]


def test_the_loop_imports_neither_the_admin_listener_nor_the_metrics():
    loaded = modules_after_importing("fleet.control.runtime")
    assert not loaded & {"fleet.control.admin", "fleet.control.metrics"}


class _Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.reports: list[PassReport] = []

    def on_event(self, event: Event) -> None:
        self.events.append(event)

    def on_pass(self, report: PassReport) -> None:
        self.reports.append(report)


class _StatsServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Layout, list[int]]]:
    """A cluster folder with one vassal file, `a`, whose stats socket answers (a thread); the list counts
    the connections to it."""
    (tmp_path / "emperor.ini").write_text("")
    (tmp_path / "vassals").mkdir()
    (tmp_path / "vassals" / "a.ini").write_text("")
    layout = Layout(tmp_path)
    layout.make_run_dirs()
    doc = {"pid": 5, "workers": [{"pid": 6, "status": "busy", "requests": 4, "exceptions": 2, "accepting": 1}]}
    reads: list[int] = []

    class Handle(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            reads.append(1)
            self.request.sendall(json.dumps(doc).encode())

    path = layout.stats_socket("a")
    path.parent.mkdir(parents=True, exist_ok=True)
    server = _StatsServer(str(path), Handle)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield layout, reads
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_pass_hands_its_stats_reads_to_every_subscriber_and_publishes_from_the_same_read(cluster):
    layout, reads = cluster
    recorder = _Recorder()
    metrics = Metrics(parts=lambda: {"control": True}, nginx_view=NginxView(layout))
    runtime = Runtime(layout, subscribers=(recorder, metrics))
    runtime.cluster.known_options = lambda: frozenset()  # no uWSGI binary asked in the unit tier
    runtime.step()
    assert [e.name for e in recorder.events] == ["a"]  # the bus reaches the subscribers too
    report = recorder.reports[-1]
    assert report.snapshot is runtime.snapshot() and report.counters.passes == 1
    assert report.stats["a"] is not None and report.stats["a"].pid == 5
    published = Snapshot.read(layout).backend("a")
    assert published is not None and (published.pid, published.workers, published.requests) == (5, 1, 4)
    usage = metrics.usage("a")
    assert usage is not None and (usage.busy, usage.requests, usage.exceptions) == (1, 4, 2)
    read_once = len(reads)
    runtime.step()  # within the usage interval: no new read, and none by the subscribers either
    assert len(reads) == read_once and recorder.reports[-1].stats == {}
    assert metrics.usage("a") == usage


def test_between_usage_rounds_the_publisher_reads_only_a_backend_whose_state_moved(tmp_path):
    from fleet.control.publish import Publisher
    from fleet.core.model import Backend, Model
    from fleet.core.settings import Settings
    from fleet.core.states import State
    from fleet.core.stats import VassalStats, Worker

    layout = Layout(tmp_path)
    layout.make_run_dirs()
    stats = VassalStats(0, (Worker(0, True, "idle", 3),))  # no pids: no memory read from /proc
    reads: list[str] = []
    publisher = Publisher(layout, Settings(), lambda name: reads.append(name) or stats, clock=lambda: 10.0)
    m = Model(
        {
            "a": Backend("a", State.HEALTHY, since=1.0, mtime_ns=1),
            "b": Backend("b", State.STARTING, since=1.0, mtime_ns=1),
        }
    )
    publisher.publish(m, frozenset(), Counters(), "", 1, read={"a": stats, "b": None})  # a usage round
    publisher.publish(m, frozenset(), Counters(), "", 1)  # nothing moved: nothing read
    assert reads == []
    m = Model({**m.backends, "b": Backend("b", State.HEALTHY, since=2.0, mtime_ns=1)})
    publisher.publish(m, frozenset(), Counters(), "", 1)  # b just became healthy: read at once
    assert reads == ["b"]
    assert publisher.usage["a"][1:3] == (1, 3) and publisher.usage["b"][1:3] == (1, 3)
    publisher.publish(m, frozenset(), Counters(), "", 1, read={"a": None, "b": None})  # a usage round again
    assert publisher.usage["a"] == publisher.usage["b"] == (None, 0, 0, 0)
