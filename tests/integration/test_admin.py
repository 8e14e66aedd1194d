"""The operator's view on a real cluster: /metrics (promtool, a real Prometheus), the API, `fleet events`,
`fleet status --watch`, nginx's JSON access log, and the status page in a real headless Chromium.

Chromium, chromedriver and Prometheus are Debian's packages (`.ci/run` installs them); without them those
tests are skipped with the reason, except under CI=true, where they fail. The page's screenshots are kept
in build/test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness import http
from harness.cluster import REPO, Cluster
from harness.ports import free_port
from tests import tools
from tests.conftest import TWO_BACKENDS
from tests.integration.test_cluster import listening_addresses

pytestmark = pytest.mark.integration

ARTIFACTS = Path(os.environ.get("FLEET_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))


@pytest.fixture(scope="module")
def fleet(cluster_parent: Path) -> Iterator[Cluster]:
    """One cluster for the module, with its admin listener on a free port (`admin` is its URL) and nginx's
    access log in JSON."""
    c = Cluster.create(cluster_parent, TWO_BACKENDS)
    port = free_port()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FLEET_ADMIN_PORT", str(port))  # `fleet up` defaults --admin-port to it
        env.setenv("FLEET_ACCESS_LOG", "json")
        c.up()
    c.admin = f"http://127.0.0.1:{port}"
    c.admin_port = port
    try:
        c.wait(lambda: requests.get(c.admin + "/api/status", timeout=2).ok, "the admin listener answers")
        yield c
    finally:
        c.down()


def scrape(c: Cluster) -> str:
    r = requests.get(c.admin + "/metrics", timeout=5)
    r.raise_for_status()
    return r.text


def series(text: str, name: str) -> dict[str, float]:
    """{labels: value} of one metric in a scrape."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, number = line.rpartition(" ")
            found[key[len(name) :]] = float(number)
    return found


def test_metrics_have_every_per_vassal_series_and_pass_promtool(fleet):
    tools.need("promtool")
    for _ in range(10):
        assert fleet.get().status_code == 200
    fleet.wait(lambda: series(scrape(fleet), "fleet_nginx_responses_total").get('{class="2xx"}', 0) >= 10, "2xx")
    text = scrape(fleet)
    for name in ("backend-1", "backend-2"):
        label = f'vassal="{name}"'
        assert series(text, "fleet_vassal_state")[f'{{state="healthy",{label}}}'] == 1
        assert series(text, "fleet_vassal_routed")[f"{{{label}}}"] == 1
        assert series(text, "fleet_vassal_memory_bytes")[f"{{{label}}}"] > 1 << 20
        assert f'{{status="idle",{label}}}' in series(text, "fleet_vassal_workers")
        for metric in ("requests", "exceptions", "respawns", "reloads"):
            assert f"{{{label}}}" in series(text, f"fleet_vassal_{metric}_total"), metric
        assert f"{{{label}}}" in series(text, "fleet_vassal_seconds_since_transition")
    assert series(text, "fleet_up") == {
        '{part="supervisor"}': 1,
        '{part="emperor-1"}': 1,
        '{part="emperor-2"}': 1,
        '{part="nginx"}': 1,
        '{part="control"}': 1,
    }
    assert set(series(text, "fleet_nginx_connections")) == {f'{{state="{k}"}}' for k in NGINX_CONNECTION_STATES}
    assert series(text, "fleet_hot_add_seconds_count")[""] >= 2
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


NGINX_CONNECTION_STATES = ("active", "reading", "writing", "waiting")


def test_the_nginx_connections_gauge_counts_connections_clients_hold_and_drops_when_they_close(fleet):
    held = 20

    def connections() -> dict[str, float]:
        found = series(scrape(fleet), "fleet_nginx_connections")
        return {k: found[f'{{state="{k}"}}'] for k in NGINX_CONNECTION_STATES}

    clients = [http.KeepAliveClient(fleet.port) for _ in range(held)]
    try:
        for client in clients:
            status, _ = client.get("/")  # then idle: open, waiting for its next request
            assert status == 200
        assert all(client.sock is not None for client in clients), "nginx closed a keep-alive connection"
        holding = connections()
        assert holding["active"] >= held and holding["waiting"] >= held, holding
    finally:
        for client in clients:
            client.close()
    after = fleet.wait(
        lambda: (now := connections())["active"] <= holding["active"] - held and now,
        f"the gauge to drop by the {held} closed connections (it read {holding})",
        10,
    )
    print(f"\nnginx connections holding {held}: {holding}; after closing them: {after}")


def test_a_new_vassal_is_in_the_next_scrape_and_a_removed_one_goes(fleet):
    before = series(scrape(fleet), "fleet_hot_add_seconds_count")[""]
    fleet.write_vassal("metrics-new.ini")
    fleet.wait(lambda: 'vassal="metrics-new"' in scrape(fleet), "the new vassal's series")
    fleet.wait(lambda: series(scrape(fleet), "fleet_vassal_routed").get('{vassal="metrics-new"}') == 1, "routed")
    assert series(scrape(fleet), "fleet_hot_add_seconds_count")[""] == before + 1
    (fleet.vassals / "metrics-new.ini").unlink()
    fleet.wait(lambda: 'vassal="metrics-new"' not in scrape(fleet), "its series gone")


def test_a_reload_is_counted_timed_and_listed_in_events(fleet):
    fleet.fleet("reload", "backend-2")

    def reloaded() -> str | None:
        text = scrape(fleet)
        return text if series(text, "fleet_reload_seconds_count")[""] >= 1 else None

    text = fleet.wait(reloaded, "the reload counted")
    assert series(text, "fleet_vassal_reloads_total")['{vassal="backend-2"}'] >= 1
    moves = [(e["name"], e["old"], e["new"]) for e in requests.get(fleet.admin + "/api/events").json()["events"]]
    assert ("backend-2", "reloading", "healthy") in moves
    lines = fleet.fleet("events").stdout.splitlines()
    assert any("backend-2: reloading -> healthy" in line for line in lines)


def test_admin_is_never_served_through_the_public_port(fleet):
    for path in ("/metrics", "/api/status", "/api/overview", "/app.js", "/stub_status"):
        r = fleet.get(path)
        assert "fleet_vassal" not in r.text and "Active connections" not in r.text and r.status_code == 404, path
    # the status page's port listens on loopback only (0100007F is 127.0.0.1 in /proc/net/tcp)
    assert listening_addresses(fleet.admin_port) == {"0100007F"}
    assert "X-Fleet-Vassal" not in fleet.get("/").headers  # hidden from clients; nginx logs it


def test_api_status_is_what_fleet_status_json_prints(fleet):
    def same() -> bool:
        api = requests.get(fleet.admin + "/api/status").json()
        printed = json.loads(fleet.fleet("status", "--json").stdout)
        keep = ("name", "state", "routed", "workers", "error")
        table = [[{k: b[k] for k in keep} for b in doc["backends"]] for doc in (api, printed)]
        return table[0] == table[1] and [p["name"] for p in api["parts"]] == [p["name"] for p in printed["parts"]]

    fleet.wait(same, "/api/status and `fleet status --json` agree")


def test_fleet_events_follow_and_status_watch_update_by_themselves(fleet, tmp_path):
    out = {name: open(tmp_path / f"{name}.out", "w") for name in ("events", "watch")}  # noqa: SIM115
    argv = [sys.executable, "-m", "fleet", "--root", str(fleet.root)]
    procs = [
        subprocess.Popen([*argv, "events", "--follow", "-n", "0"], stdout=out["events"], start_new_session=True),
        subprocess.Popen(
            [*argv, "status", "--watch", "--interval", "0.2"], stdout=out["watch"], start_new_session=True
        ),
    ]
    try:
        fleet.wait(lambda: "fleet status every" in (tmp_path / "watch.out").read_text(), "a first frame")
        fleet.write_vassal("followed.ini")
        fleet.wait(lambda: "followed: starting -> healthy" in (tmp_path / "events.out").read_text(), "follow")
        shown = re.compile(r"^followed +healthy", re.MULTILINE)
        fleet.wait(lambda: shown.search((tmp_path / "watch.out").read_text()), "watch shows it")
    finally:
        for proc in procs:  # Ctrl-C, as a user would; SIGKILL if that did not end it
            tools.stop_group(proc, signal.SIGINT, 10)
        for f in out.values():
            f.close()
        (fleet.vassals / "followed.ini").unlink(missing_ok=True)
    assert [proc.returncode for proc in procs] == [0, 0]


def test_nginx_counts_answers_by_status_class(fleet):
    base = series(scrape(fleet), "fleet_nginx_responses_total")
    for _ in range(3):
        assert fleet.get("/no-such-page").status_code == 404

    def counted() -> bool:
        now = series(scrape(fleet), "fleet_nginx_responses_total")
        return now['{class="4xx"}'] - base['{class="4xx"}'] >= 3

    fleet.wait(counted, "three more 4xx answers counted")


def test_the_json_access_log_names_the_vassal_that_served(fleet):
    served = {fleet.get("/?json-log").json()["backend"] for _ in range(20)}
    log = fleet.run_dir / "logs" / "nginx-access.jsonl"

    def logged() -> list[dict]:
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        mine = [d for d in lines if d["uri"] == "/?json-log"]
        return mine if len(mine) >= 20 else []

    lines = fleet.wait(logged, "20 JSON lines (nginx flushes its buffer every 2 s)", timeout=15)
    assert {d["vassal"] for d in lines} == served == {"backend-1", "backend-2"}
    first = lines[0]
    assert first["status"] == 200 and first["method"] == "GET" and float(first["upstream_time"]) >= 0
    assert first["upstream"].startswith("unix:") and float(first["request_time"]) >= 0
    assert not (fleet.run_dir / "logs" / "nginx-access.log").exists()  # one access log, the JSON one


# ---- a real browser -------------------------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    with tools.chromium(tmp_path) as driver:
        yield driver


def test_the_status_page_shows_a_backend_added_by_file_without_a_reload(fleet, browser):
    from selenium.webdriver.common.by import By

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.get(fleet.admin + "/")

    def rows(state: str | None = None) -> set[str]:
        """The backends the table shows (read in one script: the page re-renders as it likes)."""
        script = (
            "return [...document.querySelectorAll('#backends tbody tr')].map(r => [r.dataset.backend, r.dataset.state])"
        )
        return {name for name, shown in browser.execute_script(script) if state in (None, shown)}

    fleet.wait(lambda: {"backend-1", "backend-2"} <= rows("healthy"), "the page lists the backends")
    assert browser.find_element(By.ID, "live").get_attribute("data-live") == "live"
    browser.execute_script("window.fleetTestMarker = 42")  # gone if the page reloads
    browser.save_screenshot(str(ARTIFACTS / "status-page-before.png"))

    fleet.write_vassal("page-new.ini")
    fleet.wait(lambda: "page-new" in rows(), "the new backend shows up", timeout=30)
    fleet.wait(lambda: "page-new" in rows("healthy"), "and turns healthy", timeout=30)
    fleet.wait(lambda: "page-new" in browser.find_element(By.ID, "events").text, "its transitions in the timeline")
    assert browser.execute_script("return window.fleetTestMarker") == 42
    assert browser.execute_script("return performance.getEntriesByType('navigation').length") == 1
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(url.startswith(fleet.admin + "/") for url in resources), resources
    browser.save_screenshot(str(ARTIFACTS / "status-page.png"))
    (fleet.vassals / "page-new.ini").unlink()
    fleet.wait(lambda: "page-new" not in rows(), "the removed backend leaves the page")


# ---- a real Prometheus ----------------------------------------------------------------------------------


def test_prometheus_scrapes_fleet_and_queries_per_vassal_series(fleet, tmp_path):
    with tools.prometheus(tmp_path, [f"127.0.0.1:{fleet.admin_port}"]) as api:
        expr = 'fleet_vassal_requests_total{job="fleet"}'
        result = fleet.wait(lambda: tools.query(api, expr), "Prometheus to scrape fleet", timeout=60)
        assert {r["metric"]["vassal"] for r in result} >= {"backend-1", "backend-2"}
        assert tools.query(api, 'up{job="fleet"}')[0]["value"][1] == "1"
        healthy = tools.query(api, 'sum(fleet_vassal_state{state="healthy"})')
        assert float(healthy[0]["value"][1]) >= 2
