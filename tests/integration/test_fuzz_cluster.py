"""Fuzzing with real processes: the vassal launcher on a few hundred generated files, and a running cluster
into which ~20 generated bad and odd files are dropped under load (seeded: a failure names its case)."""

from __future__ import annotations

import json
import threading

import pytest

from fleet.layout import Layout
from fleet.published import records
from harness.cluster import Cluster
from harness.load import Load
from tests import fuzzcases as fc

pytestmark = pytest.mark.integration


def test_the_launcher_on_a_few_hundred_generated_files(tmp_path):
    fc.check_launcher(fc.launcher_root(tmp_path), fc.corpus(seed=7, count=200))


class RoutedRecorder:
    """Every routed set the control plane publishes while the test runs (a bad file must be in none)."""

    def __init__(self, cluster: Cluster):
        self.cluster, self.seen = cluster, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._record, daemon=True)

    def _record(self) -> None:
        while not self._stop.is_set():
            self.seen.update(self.cluster.state()["routed"])
            self._stop.wait(0.01)  # the polling interval of a recorder, not a synchronisation

    def __enter__(self) -> RoutedRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def settled(c: Cluster, cases: list[fc.Case]) -> bool:
    """Each file is failed with its reason, or (a valid one) healthy and routed; ignored ones are absent."""
    state = c.state()
    for case in cases:
        backend = state["backends"].get(case.name)
        if case.ignored:
            continue
        if backend is None:
            return False
        if case.reason and (backend["state"] != "failed" or case.reason not in backend["error"]):
            return False
        if not case.reason and (backend["state"] != "healthy" or case.name not in state["routed"]):
            return False
    return True


def test_bad_and_odd_files_dropped_under_load_fail_alone(cluster):
    cases = fc.corpus(seed=11, count=20)
    outside = cluster.root / "fuzz-targets"  # symlink targets, outside vassals/
    outside.mkdir()
    control_pid = records.running(Layout(cluster.root))["control"]
    with (
        Load(cluster.url, clients=3) as fresh,
        Load(cluster.url, clients=2, keepalive=True) as keepalive,
        Load(cluster.url, clients=2, path="/upload", post=b"x" * 2048, keepalive=True) as posts,
        RoutedRecorder(cluster) as routed,
    ):
        fresh.wait_requests(100)
        paths = [fc.materialize(case, cluster.vassals, outside) for case in cases]
        cluster.wait(lambda: settled(cluster, cases), "every fuzz file failed with its reason, or routed", 60)
        fresh.wait_requests(200)
        keepalive.wait_requests(100)
        posts.wait_requests(50)
        state = cluster.state()
        shown = status_names(cluster)  # `fleet status` shows them all, odd names included
        for path in paths:
            fc.remove(path)
        cluster.wait(lambda: set(cluster.state()["backends"]) == {"backend-1", "backend-2"}, "the fuzz files gone", 60)
        fresh.wait_requests(100)
    for what, load in (("GET, new connections", fresh), ("GET, keep-alive", keepalive), ("POST", posts)):
        assert load.result.failures == [], f"{what}: {load.result.summary()}\n{cluster.logs()}"
    valid = {c.name for c in cases if not c.reason and not c.ignored}
    bad = {c.name for c in cases if c.reason}
    assert {"backend-1", "backend-2"} <= set(fresh.result.backends) <= {"backend-1", "backend-2"} | valid
    assert not routed.seen & bad, f"routed to bad files: {routed.seen & bad}"
    assert not {c.name for c in cases if c.ignored} & set(state["backends"]), "a non-vassal file was looked at"
    for case in cases:
        if case.reason:
            assert state["backends"][case.name]["state"] == "failed" and not state["backends"][case.name]["routed"]
    assert records.running(Layout(cluster.root)).get("control") == control_pid, "the control plane was restarted"
    control_log = (cluster.run_dir / "logs" / "control.log").read_text(errors="replace")
    assert "Traceback" not in control_log, control_log[-3000:]
    assert shown >= {c.name for c in cases if not c.ignored}, shown


def status_names(c: Cluster) -> set[str]:
    table = c.fleet("status", check=False)
    assert "Traceback" not in table.stderr and table.returncode == 0, table
    doc = json.loads(c.fleet("status", "--json").stdout)
    return {row["name"] for row in (doc if isinstance(doc, list) else doc["backends"])}
