"""fleet.control.metrics and fleet.proxy.nginxstats: counters from events, series from the snapshot and the
stats the pass read, nginx's view."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleet.control.metrics import STATES, Metrics, usage_of
from fleet.control.subscribers import PassReport
from fleet.core.stats import EmperorStats, VassalProcess, VassalStats
from fleet.layout import Layout
from fleet.proxy import nginx, nginxstats
from fleet.published.events import Event
from fleet.published.snapshot import BackendView, Counters, Snapshot
from tests.unit.conftest import NginxReopen

REPO = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0


@pytest.fixture
def metrics(tmp_path: Path) -> Metrics:
    return Metrics(parts=lambda: {"control": True}, nginx_view=nginxstats.NginxView(Layout(tmp_path)), wall=lambda: NOW)


def samples(m: Metrics) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape: {(name, sorted labels): value}, parsed as Prometheus would."""
    found = {}
    for family in text_string_to_metric_families(m.scrape().decode()):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return samples(m).get((name, tuple(sorted(labels.items()))))


def view(name: str, state: str = "healthy", since: float = NOW - 30, memory: int = 0) -> BackendView:
    return BackendView(name=name, state=state, since=since, memory=memory, requests=7)


def snapshot(*backends: BackendView, routed: tuple[str, ...] = ()) -> Snapshot:
    return Snapshot(backends={b.name: b for b in backends}, routed=routed)


def event(name: str, old: str | None, new: str | None, at: float) -> Event:
    return Event(name, old, new, "because", at)


def test_transitions_are_counted_by_from_and_to(metrics):
    metrics.on_event(event("a", None, "starting", 1.0))
    metrics.on_event(event("b", None, "starting", 1.0))
    metrics.on_event(event("a", "starting", "healthy", 2.0))
    assert value(metrics, "fleet_transitions_total", **{"from": "new", "to": "starting"}) == 2
    assert value(metrics, "fleet_transitions_total", **{"from": "starting", "to": "healthy"}) == 1
    metrics.on_event(event("a", "removing", None, 3.0))
    assert value(metrics, "fleet_transitions_total", **{"from": "removing", "to": "gone"}) == 1


def test_a_hot_add_is_timed_from_the_new_file_to_healthy(metrics):
    metrics.on_event(event("a", None, "starting", 100.0))
    metrics.on_event(event("a", "starting", "healthy", 100.4))
    assert value(metrics, "fleet_hot_add_seconds_count") == 1
    assert value(metrics, "fleet_hot_add_seconds_sum") == pytest.approx(0.4)
    assert value(metrics, "fleet_hot_add_seconds_bucket", le="0.5") == 1
    assert value(metrics, "fleet_hot_add_seconds_bucket", le="0.3") == 0


def test_a_start_that_is_not_a_new_file_is_not_a_hot_add(metrics):
    metrics.on_event(event("a", None, "starting", 100.0))
    metrics.on_event(event("a", "starting", "failed", 101.0))
    metrics.on_event(event("a", "failed", "starting", 102.0))  # the file was fixed
    metrics.on_event(event("a", "starting", "healthy", 103.0))
    metrics.on_event(event("b", None, "healthy", 103.0))  # adopted by a restarted control plane
    assert value(metrics, "fleet_hot_add_seconds_count") == 0


def test_a_reload_is_timed_from_its_first_reloading_to_healthy(metrics):
    metrics.on_pass(PassReport(snapshot(view("a")), Counters(), None, 0.001))
    metrics.on_event(event("a", "healthy", "reloading", 10.0))
    metrics.on_event(event("a", "reloading", "reloading", 11.0))  # changed again meanwhile
    metrics.on_event(event("a", "reloading", "healthy", 12.5))
    assert value(metrics, "fleet_reload_seconds_count") == 1
    assert value(metrics, "fleet_reload_seconds_sum") == pytest.approx(2.5)
    assert value(metrics, "fleet_vassal_reloads_total", vassal="a") == 2


def test_a_failed_reload_is_not_timed(metrics):
    metrics.on_event(event("a", "healthy", "reloading", 10.0))
    metrics.on_event(event("a", "reloading", "failed", 70.0))
    metrics.on_event(event("a", "failed", "healthy", 71.0))
    assert value(metrics, "fleet_reload_seconds_count") == 0


def test_every_per_vassal_series_is_there_for_each_backend(metrics):
    emperor = EmperorStats({"a": VassalProcess("a", 10, 0, True, True, 3, False)}, {})
    metrics.on_pass(PassReport(snapshot(view("a", memory=5 << 20), view("b", "failed")), Counters(), emperor, 0.002))
    names = {name for name, labels in samples(metrics) if ("vassal", "b") in labels}
    assert names == {
        "fleet_vassal_state",
        "fleet_vassal_routed",
        "fleet_vassal_workers",
        "fleet_vassal_requests_total",
        "fleet_vassal_exceptions_total",
        "fleet_vassal_respawns_total",
        "fleet_vassal_reloads_total",
        "fleet_vassal_memory_bytes",
        "fleet_vassal_weight",
        "fleet_vassal_slots",
        "fleet_vassal_seconds_since_transition",
    }
    assert value(metrics, "fleet_vassal_memory_bytes", vassal="a") == 5 << 20
    assert value(metrics, "fleet_vassal_respawns_total", vassal="a") == 3
    assert value(metrics, "fleet_vassal_seconds_since_transition", vassal="a") == 30
    assert value(metrics, "fleet_vassal_requests_total", vassal="b") == 7  # no stats read yet: the snapshot's


def test_state_is_one_for_the_current_state_only(metrics):
    metrics.on_pass(PassReport(snapshot(view("a", "reloading")), Counters(), None, 0.001))
    assert [s for s in STATES if value(metrics, "fleet_vassal_state", vassal="a", state=s) == 1] == ["reloading"]
    assert sum(value(metrics, "fleet_vassal_state", vassal="a", state=s) for s in STATES) == 1


def test_routed_follows_the_snapshot(metrics):
    metrics.on_pass(PassReport(snapshot(view("a"), view("b"), routed=("a",)), Counters(), None, 0.001))
    assert value(metrics, "fleet_vassal_routed", vassal="a") == 1
    assert value(metrics, "fleet_vassal_routed", vassal="b") == 0


def test_a_removed_backend_leaves_no_series_and_forgets_its_counts(metrics):
    metrics.on_pass(PassReport(snapshot(view("a"), view("b")), Counters(), None, 0.001))
    metrics.on_event(event("b", "healthy", "reloading", 1.0))
    metrics.on_event(event("b", "removing", None, 2.0))
    metrics.on_pass(PassReport(snapshot(view("a")), Counters(), None, 0.001))
    assert not [key for key in samples(metrics) if ("vassal", "b") in key[1]]
    metrics.on_pass(PassReport(snapshot(view("a"), view("b")), Counters(), None, 0.001))  # the same name, a new backend
    assert value(metrics, "fleet_vassal_reloads_total", vassal="b") == 0


def test_fleet_wide_counters_come_from_the_runtime(metrics):
    counters = Counters(passes=9, routing_changes=4, nginx_reloads=2, routing_errors=1)
    metrics.on_pass(PassReport(snapshot(), counters, None, 0.003))
    metrics.on_pass(PassReport(snapshot(), counters, None, 0.2))
    assert value(metrics, "fleet_nginx_reloads_total") == 2
    assert value(metrics, "fleet_routing_changes_total") == 4
    assert value(metrics, "fleet_routing_errors_total") == 1
    assert value(metrics, "fleet_sync_seconds_count") == 2
    assert value(metrics, "fleet_sync_seconds_bucket", le="0.005") == 1
    assert value(metrics, "fleet_up", part="control") == 1


def test_every_family_has_help_and_no_created_series(metrics):
    metrics.on_pass(PassReport(snapshot(view("a")), Counters(), None, 0.001))
    text = metrics.scrape().decode()
    families = list(text_string_to_metric_families(text))
    assert all(f.documentation for f in families)
    assert "_created" not in text
    assert {f.type for f in families} == {"counter", "gauge", "histogram"}


def test_usage_counts_busy_and_idle_workers_and_the_request_rate():
    doc = {
        "pid": 1,
        "workers": [
            {"pid": 2, "status": "busy", "requests": 10, "exceptions": 1},
            {"pid": 3, "status": "idle", "requests": 20, "exceptions": 0},
            {"pid": 5, "status": "sig", "requests": 0},  # running a signal handler: busy too
            {"pid": 0, "status": "cheap", "requests": 0},  # not spawned: not a worker
        ],
    }
    first = usage_of(VassalStats.parse(doc), 100.0, None)
    assert (first.busy, first.idle, first.requests, first.exceptions, first.rps) == (2, 1, 30, 1, 0.0)
    doc["workers"][0]["requests"] = 40
    assert usage_of(VassalStats.parse(doc), 102.0, first).rps == 15.0
    reloaded = {"workers": [{"pid": 4, "status": "idle", "requests": 3}]}
    assert usage_of(VassalStats.parse(reloaded), 103.0, first).rps == 1.0  # counts start again at zero after a reload


def test_the_workers_the_pass_read_are_kept_until_a_read_finds_no_answer(metrics):
    doc = {"pid": 5, "workers": [{"pid": 6, "status": "busy", "requests": 4, "exceptions": 2, "accepting": 1}]}
    metrics.on_pass(PassReport(snapshot(view("a")), stats={"a": VassalStats.parse(doc)}, stats_at=50.0))
    assert value(metrics, "fleet_vassal_workers", vassal="a", status="busy") == 1
    assert value(metrics, "fleet_vassal_exceptions_total", vassal="a") == 2
    assert value(metrics, "fleet_vassal_requests_total", vassal="a") == 4  # the stats', not the snapshot's 7
    metrics.on_pass(PassReport(snapshot(view("a"))))  # a pass that read no stats socket: kept
    assert value(metrics, "fleet_vassal_workers", vassal="a", status="busy") == 1
    metrics.on_pass(PassReport(snapshot(view("a")), stats={"a": None}, stats_at=51.0))  # no answer: forgotten
    assert value(metrics, "fleet_vassal_workers", vassal="a", status="busy") == 0
    assert value(metrics, "fleet_vassal_requests_total", vassal="a") == 7


# ---- nginx's own view ---------------------------------------------------------------------------------

STUB = "Active connections: 3 \nserver accepts handled requests\n 10 9 25 \nReading: 0 Writing: 1 Waiting: 2 \n"


def test_stub_status_is_parsed():
    c = nginxstats.parse_stub_status(STUB)
    assert (c.active, c.reading, c.writing, c.waiting) == (3, 0, 1, 2)
    assert (c.accepted, c.handled, c.requests) == (10, 9, 25)


def test_the_shipped_template_has_a_status_listener_on_loopback(tmp_path):
    values = nginx.template_values(Layout(tmp_path), 8080, "0.0.0.0")
    conf = nginx.render_template((REPO / "nginx" / "nginx.conf").read_text(), values)
    assert nginxstats.status_address(conf) == ("127.0.0.2", 8080)
    assert nginxstats.status_address("listen 127.0.0.1:80;") is None


def test_stub_status_of_nobody_is_none():
    assert nginxstats.stub_status(("127.0.0.2", 1), timeout=0.2) is None


def test_the_tally_counts_classes_appended_since_it_was_made(tmp_path):
    path = tmp_path / "answers.tally"
    path.write_text("2\n5\n")  # before the control plane started: not counted
    tally = nginxstats.Tally(path, reopen=lambda: None)
    with open(path, "a") as f:
        f.write("2\n2\n4\n5\n-\n3")  # "-": no status; the last line still being written counts too
    assert tally.read() == {"1xx": 0, "2xx": 2, "3xx": 1, "4xx": 1, "5xx": 1}
    assert tally.read()["2xx"] == 2  # nothing new: nothing more


def test_the_tally_rotates_and_drains_the_old_file(tmp_path):
    path = tmp_path / "answers.tally"
    path.write_text("")
    reopen = NginxReopen(path)
    tally = nginxstats.Tally(path, reopen, max_bytes=8)
    with open(path, "a") as f:
        f.write("2\n" * 5)
    assert tally.read()["2xx"] == 5 and reopen.calls == 1
    assert (tmp_path / "answers.tally.1").exists()
    with open(tmp_path / "answers.tally.1", "a") as old, open(path, "a") as new:
        old.write("5\n")  # a worker flushing its buffer to the old file before it reopened
        new.write("2\n")
    assert tally.read() == {"1xx": 0, "2xx": 6, "3xx": 0, "4xx": 0, "5xx": 1}
    tally.close()


def test_the_tally_starts_from_nothing_when_nginx_has_not_written_yet(tmp_path):
    path = tmp_path / "answers.tally"
    tally = nginxstats.Tally(path, reopen=lambda: None)
    assert tally.read()["2xx"] == 0
    path.write_text("2\n1\n")
    assert tally.read()["2xx"] == 1 and tally.read()["1xx"] == 1


def test_ejections_are_counted_by_reason(metrics):
    for reason in (
        "answers 5xx: 5 of its last 10 answers 5xx (500)",
        "answers 5xx: 5 of its last 5 answers 5xx (500)",
        "answers 5xx: 6 of its last 10 answers timed out (504)",
        "answers 5xx: 40% 5xx rate in the last 1 s, the others 0%",
        "stopped answering health probes (GET /healthz: connection refused)",
    ):
        metrics.on_event(Event("a", "healthy", "ejected", reason, 1.0))
    metrics.on_event(Event("a", "ejected", "healthy", "answers its health probe again", 2.0))
    assert value(metrics, "fleet_ejections_total", reason="5xx") == 2
    assert value(metrics, "fleet_ejections_total", reason="timeouts") == 1
    assert value(metrics, "fleet_ejections_total", reason="5xx_rate") == 1
    assert value(metrics, "fleet_ejections_total", reason="probes") == 1


def test_a_deploy_in_progress_shows_its_phase_share_and_measures_against_its_bounds(metrics):
    plan = {"app": "default", "version": "v2", "max_error_rate": 5.0, "max_p99": 500.0}
    deploy = {"plan": plan, "phase": "canary", "percent": 20, "window": {"answers": 31}, "error_rate": 3.2, "p99": 12.0}
    snap = replace(snapshot(view("a")), deploy=deploy)
    metrics.on_pass(PassReport(snap, Counters(), None, 0.001))
    assert value(metrics, "fleet_deploy_running", app="default", version="v2", phase="canary") == 1
    assert value(metrics, "fleet_deploy_canary_percent", app="default", version="v2") == 20
    assert value(metrics, "fleet_deploy_canary_answers", app="default", version="v2") == 31
    assert value(metrics, "fleet_deploy_canary_error_rate", app="default", version="v2") == 3.2
    assert value(metrics, "fleet_deploy_max_p99_ms", app="default", version="v2") == 500
