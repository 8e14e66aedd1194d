"""Outlier ejection (passive health) on a real cluster: a backend whose app turns to 500s while its health
path still answers is taken out of routing within 2 s, the clients' 5xx stop, and it is routed again once
fixed; alone, it is kept (panic threshold) and `fleet status` says why."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from harness.cluster import Cluster

pytestmark = pytest.mark.integration

# 500 on every path but /healthz while its toggle file exists (the test creates and removes it).
FLAKY_APP = """\
import json
import os

TOGGLE = os.environ["FLAKY_TOGGLE"]
NAME = os.environ["FLEET_VASSAL"]


def application(environ, start_response):
    if environ.get("PATH_INFO") != "/healthz" and os.path.exists(TOGGLE):
        start_response("500 Internal Server Error", [("Content-Type", "application/json")])
        return [b'{"error": "broken on purpose"}']
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"backend": NAME, "pid": os.getpid()}).encode()]
"""


def flaky_cluster(make_cluster, *names: str) -> Cluster:
    """A running cluster of `names`, each running FLAKY_APP with its own toggle (run/NAME.broken), and its
    admin listener on a free port (`c.admin`)."""
    c = make_cluster({})
    app = c.root / "flaky_app"
    app.mkdir()
    (app / "flaky.py").write_text(FLAKY_APP)
    for name in names:
        toggle = c.root / f"{name}.broken"
        c.write_vassal(f"{name}.ini", f"[uwsgi]\nchdir = {app}\nmodule = flaky\nenv = FLAKY_TOGGLE={toggle}\n")
    c.up_with_admin()
    c.wait(lambda: set(c.state()["routed"]) == set(names), "every backend routed")
    return c


def toggle(c: Cluster, name: str) -> Path:
    return c.root / f"{name}.broken"


@contextmanager
def load(url: str, clients: int = 4) -> Iterator[list[tuple[float, int, str]]]:
    """Keep-alive GET clients until the block ends; yields the answers as they come: (when, status, backend)."""
    answers: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    r = session.get(url, timeout=5)
                    backend = r.json().get("backend", "") if r.status_code == 200 else ""
                    answers.append((time.monotonic(), r.status_code, backend))
                except requests.RequestException:
                    answers.append((time.monotonic(), 0, ""))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        yield answers
    finally:
        stop.set()
        for t in threads:
            t.join(10)


def test_a_backend_turned_to_500s_is_ejected_within_2_s_and_routed_again_when_fixed(make_cluster):
    c = flaky_cluster(make_cluster, "good", "bad")
    with load(c.url + "/") as answers:
        c.wait(lambda: {b for _, s, b in answers if s == 200} == {"good", "bad"}, "both backends answer")
        switched = time.monotonic()
        toggle(c, "bad").touch()
        c.wait(lambda: "bad" not in c.state()["routed"], "the broken backend out of routing", timeout=10)
        out = time.monotonic()
        assert c.backend_state("bad") == "ejected"
        status = c.fleet("status").stdout  # within its ejection time (10 s)
        # Ejected for 10 s: the clients' 5xx stop half a second after it left routing.
        quiet_from, quiet_to = out + 0.5, out + 2.0
        c.wait(lambda: time.monotonic() > quiet_to, "the quiet window to pass", timeout=5)
        assert c.backend_state("bad") == "ejected"
        failed = [s for at, s, _ in answers if at >= switched and s != 200]
        late = [(at - out, s) for at, s, _ in answers if quiet_from <= at <= quiet_to and s != 200]
        served = sum(1 for at, _, _ in answers if quiet_from <= at <= quiet_to)
        print(f"out of routing {out - switched:.2f} s after the switch; {len(failed)} answers not 200 in between")
        assert out - switched < 2.0
        assert served > 0 and late == []

        state = c.state()["backends"]["bad"]
        assert state["error"].startswith("answers 5xx: ") and "(500)" in state["error"]
        assert "ejected" in status and "answers 5xx" in status
        written = (c.run_dir / "nginx" / "answers.log").read_text().splitlines()
        # STATUS SLOT VASSAL SECONDS |EARLIER TRIES: named by the vassal, timed
        lines = [line.split() for line in written]
        assert any(f[0] == "500" and f[2] == "bad" and float(f[3]) >= 0 for f in lines if len(f) >= 4)
        events = (c.run_dir / "logs" / "events.jsonl").read_text()
        assert '"old": "healthy", "new": "ejected", "reason": "answers 5xx: ' in events
        metrics = requests.get(c.admin + "/metrics", timeout=5).text
        assert 'fleet_ejections_total{reason="5xx"} 1.0' in metrics

        toggle(c, "bad").unlink()
        c.wait(lambda: "bad" in c.state()["routed"], "the fixed backend routed again", timeout=20)
        assert c.backend_state("bad") == "healthy" and c.state()["backends"]["bad"]["error"] == ""
        back = time.monotonic()
        c.wait(lambda: any(b == "bad" for at, _, b in answers if at > back), "the fixed backend answers")
    assert [s for at, s, _ in answers if at > back and s != 200] == []


def test_the_only_backend_answering_500s_is_kept_and_status_says_why(make_cluster):
    c = flaky_cluster(make_cluster, "alone")
    with load(c.url + "/", clients=2) as answers:
        c.wait(lambda: any(s == 200 for _, s, _ in answers), "it answers")
        toggle(c, "alone").touch()
        c.wait(lambda: "panic threshold" in c.state()["backends"]["alone"]["error"], "the panic note", timeout=10)
        assert c.backend_state("alone") == "healthy" and c.state()["routed"] == ["alone"]
        status = c.fleet("status", check=False).stdout
        assert "answers 5xx" in status and "panic threshold" in status
        assert answers[-1][1] == 500  # the app's own answer: nothing is ejected, nginx does not say 503
        toggle(c, "alone").unlink()
        c.wait(lambda: c.state()["backends"]["alone"]["error"] == "", "the note gone once it answers again")
    assert "ejected" not in (c.run_dir / "logs" / "events.jsonl").read_text()
