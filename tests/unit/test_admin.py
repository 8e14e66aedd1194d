"""fleet.control.admin: the feed of changes, and the admin listener's routes (in-process, on a free port)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fleet.control.admin import STATIC, AdminServer, Feed
from fleet.control.metrics import Metrics
from fleet.control.subscribers import PassReport
from fleet.layout import Layout
from fleet.proxy.nginxstats import NginxView
from fleet.published.events import Event
from fleet.published.snapshot import BackendView, Counters, Snapshot


def event(name: str, new: str, at: float = 1.0) -> Event:
    return Event(name, None, new, "new vassal file", at)


def test_the_version_moves_once_per_pass_that_brought_news():
    feed = Feed()
    start, snap = feed.version, Snapshot()
    feed.on_pass(PassReport(snap))
    assert feed.version == start + 1
    feed.on_pass(PassReport(snap))  # the same snapshot, no event: nothing new
    assert feed.version == start + 1
    feed.on_event(event("a", "starting"))
    assert feed.version == start + 1  # not before the pass has published the state it led to
    feed.on_pass(PassReport(snap))
    assert feed.version == start + 2


def test_events_have_sequence_numbers_and_are_kept_up_to_a_limit():
    feed = Feed(seed=[event("old", "healthy")], keep=3)
    for name in "abc":
        feed.on_event(event(name, "starting"))
    assert [(seq, e.name) for seq, e in feed.events()] == [(2, "a"), (3, "b"), (4, "c")]
    assert [e.name for _, e in feed.events(after=3)] == ["c"]


def test_a_waiter_is_woken_by_a_change_and_by_close():
    feed = Feed()
    version = feed.version
    woken = threading.Event()

    def wait() -> None:
        feed.wait(lambda: feed.version != version, 30)
        woken.set()

    threading.Thread(target=wait, daemon=True).start()
    feed.on_pass(PassReport(Snapshot()))
    assert woken.wait(10)
    woken.clear()
    threading.Thread(target=wait, daemon=True).start()  # version is unchanged again for this one
    version = feed.version
    feed.close()
    assert woken.wait(10)


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[AdminServer]:
    layout = Layout(tmp_path)
    (tmp_path / "vassals").mkdir()
    (tmp_path / "vassals" / "a.ini").write_text("")
    (tmp_path / "vassals" / "new.ini").write_text("")
    metrics = Metrics(parts=lambda: {"control": True}, nginx_view=NginxView(layout))
    snap = Snapshot(control_pid=1, backends={"a": BackendView("a", "healthy", 5.0, memory=1 << 20)}, routed=("a",))
    feed = Feed()
    metrics.on_pass(PassReport(snap, Counters(passes=3), None, 0.001))
    feed.on_pass(PassReport(snap))
    server = AdminServer(layout, metrics, feed, lambda: snap, "127.0.0.1", 0)
    server.start()
    yield server
    server.stop()


def get(admin: AdminServer, path: str, timeout: float = 10) -> requests.Response:
    return requests.get(admin.url.rstrip("/") + path, timeout=timeout)


def test_the_page_and_its_files_are_served(admin):
    page = get(admin, "/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for path, kind in (("/app.js", "text/javascript"), ("/style.css", "text/css"), ("/favicon.svg", "image/svg")):
        r = get(admin, path)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith(kind), path


def test_the_page_loads_nothing_from_elsewhere():
    html = (STATIC / "index.html").read_text()
    assert all(url.startswith("/") for url in re.findall(r'(?:src|href)="([^"]*)"', html))
    code = (STATIC / "app.js").read_text() + (STATIC / "style.css").read_text()
    assert not [u for u in re.findall(r"https?://[^\s\"')]+", code) if u != "http://www.w3.org/2000/svg"]
    assert "@import" not in code


def test_metrics_are_prometheus_text(admin):
    r = get(admin, "/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'fleet_vassal_state{app="default",state="healthy",vassal="a"} 1.0' in r.text


def test_api_status_is_what_fleet_status_json_prints(admin):
    doc = get(admin, "/api/status").json()
    assert set(doc) == {"parts", "backends"}
    assert [(b["name"], b["state"], b["routed"]) for b in doc["backends"]] == [
        ("a", "healthy", True),
        ("new", "starting", False),  # a file the control plane has not seen yet
    ]


def test_api_events_after_a_sequence_number(admin):
    for name in ("a", "b"):
        admin.feed.on_event(event(name, "starting"))
    doc = get(admin, "/api/events").json()
    assert [e["name"] for e in doc["events"]] == ["a", "b"] and doc["last"] == 2
    assert [e["seq"] for e in get(admin, "/api/events?after=1").json()["events"]] == [2]
    assert get(admin, "/api/events?after=2").json()["events"] == []


def waiting(feed: Feed) -> threading.Event:
    """Set once a request is inside `feed.wait` with its condition found false: from then on it sleeps on the
    feed's condition (the check and the sleep are one step under its lock), so a change made later is one
    it waited for."""
    entered = threading.Event()
    original = feed.wait

    def wait(until, timeout: float) -> None:
        def checked() -> bool:
            done = until()
            if not done:
                entered.set()
            return done

        original(checked, timeout)

    feed.wait = wait  # type: ignore[method-assign]
    return entered


def test_overview_answers_at_once_for_an_old_version_and_waits_for_a_new_one(admin):
    doc = get(admin, "/api/overview?version=0&wait=20").json()
    assert doc["backends"][0]["name"] == "a" and doc["backends"][0]["memory"] == 1 << 20
    assert doc["counters"]["passes"] == 3 and doc["parts"] == {"control": True}
    entered = waiting(admin.feed)
    answered: list[tuple[float, dict]] = []

    def ask() -> None:
        answer = get(admin, f"/api/overview?version={doc['version']}&wait=20", timeout=30).json()
        answered.append((time.monotonic(), answer))

    waiter = threading.Thread(target=ask)
    waiter.start()
    assert entered.wait(10), "the request never waited"
    assert not answered, "answered before anything changed"
    admin.feed.on_event(event("b", "starting"))
    changed = time.monotonic()
    admin.feed.on_pass(PassReport(Snapshot()))
    waiter.join(30)
    assert answered, "no answer within the wait"
    at, new = answered[0]
    assert new["version"] > doc["version"]
    assert [e["name"] for e in new["events"]] == ["b"]
    # Woken by the change, not by the end of its 20 s wait.
    assert changed <= at < changed + 5, f"answered {at - changed:.2f} s after the change"


def test_overview_without_news_answers_after_the_full_wait(admin):
    version = get(admin, "/api/overview").json()["version"]
    entered = waiting(admin.feed)
    began = time.monotonic()
    assert get(admin, f"/api/overview?version={version}&wait=1").json()["version"] == version
    took = time.monotonic() - began
    assert entered.is_set(), "the request never waited"
    assert 1.0 <= took < 3.0, f"answered after {took:.2f} s for wait=1"


def test_unknown_paths_are_a_json_404(admin):
    r = get(admin, "/nope")
    assert r.status_code == 404 and json.loads(r.text)["error"] == "not found"


def test_a_taken_address_is_an_error_at_start(admin, tmp_path):
    other = AdminServer(Layout(tmp_path), admin.metrics, Feed(), Snapshot, "127.0.0.1", admin.port)
    with pytest.raises(OSError):
        other.start()


def test_the_control_plane_takes_its_admin_address_from_flags_or_the_environment():
    from fleet import config

    assert config.resolve("control-plane", {}, {}).admin_port == 0  # no listener
    env = {"FLEET_ADMIN_PORT": "9100", "FLEET_ADMIN_LISTEN": "0.0.0.0"}
    values = config.resolve("control-plane", {}, env)
    assert (values.admin_port, values.admin_listen) == (9100, "0.0.0.0")
    assert config.resolve("control-plane", {"admin_port": "0"}, env).admin_port == 0
    with pytest.raises(config.SettingError):
        config.resolve("control-plane", {"admin_port": "70000"}, {})


def test_fleet_up_gives_the_control_plane_the_public_port_plus_one_on_its_command_line(monkeypatch, tmp_path):
    from fleet import cli
    from fleet.ops import lifecycle

    (tmp_path / "emperor.ini").write_text("")
    seen = []
    monkeypatch.setattr(lifecycle, "up", lambda layout, values, *args: seen.append(values.argv("control-plane")) or 0)
    assert cli.main(["--root", str(tmp_path), "up", "--port", "9000"], env={}) == 0
    assert seen[-1][seen[-1].index("--admin-port") :][:2] == ["--admin-port", "9001"]
    assert seen[-1][seen[-1].index("--admin-listen") :][:2] == ["--admin-listen", "127.0.0.1"]
    assert cli.main(["--root", str(tmp_path), "up", "--admin-port", "0"], env={"FLEET_ADMIN_PORT": "9"}) == 0
    assert seen[-1][seen[-1].index("--admin-port") :][:2] == ["--admin-port", "0"]


def test_each_request_tells_when_someone_last_watched(admin):
    # The control plane reads the usage each second while someone watches (fleet.core.looking).
    assert admin.asked_at == float("-inf")
    before = time.monotonic()
    assert get(admin, "/metrics").status_code == 200
    assert before <= admin.asked_at <= time.monotonic()
