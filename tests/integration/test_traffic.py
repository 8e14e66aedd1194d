"""The traffic users send: keep-alive clients and POSTs across transitions, browser-sized headers,
uploads, errors fleet answers itself, and a Flask app that is not ours (factory, no /healthz)."""

from __future__ import annotations

import os
import re

import pytest
import requests

from harness.cluster import Cluster
from harness.load import Load

pytestmark = pytest.mark.integration

UPSTREAM_ERRORS = re.compile(r"connect\(\) .*failed|reset by peer|prematurely closed|no live upstreams")


def nginx_errors_since(c: Cluster, offset: int) -> list[str]:
    text = (c.run_dir / "logs" / "nginx-error.log").read_text(errors="replace")[offset:]
    return [line for line in text.splitlines() if UPSTREAM_ERRORS.search(line)]


def error_log_size(c: Cluster) -> int:
    path = c.run_dir / "logs" / "nginx-error.log"
    return len(path.read_text(errors="replace")) if path.exists() else 0


def reloads(c: Cluster) -> int:
    return c.state()["counters"]["nginx_reloads"]


def test_keepalive_and_post_clients_lose_nothing_across_add_touch_and_rm(cluster):
    offset, reloads_before = error_log_size(cluster), reloads(cluster)
    with (
        Load(cluster.url, clients=6, keepalive=True) as keepalive,
        Load(cluster.url, clients=2, path="/upload", post=b"x" * 2048, keepalive=True) as posts,
        Load(cluster.url, clients=2, path="/slow?seconds=0.2", keepalive=True) as slow,
    ):
        keepalive.wait_requests(200)
        posts.wait_requests(20)
        for round_ in range(3):
            cluster.write_vassal("extra.ini", "[uwsgi]\nprocesses = 2\n")
            cluster.wait(lambda: "extra" in cluster.state()["routed"], "extra routed", 30)
            keepalive.wait_requests(100)
            path = cluster.vassals / "backend-1.ini"
            os.utime(path)
            mtime = path.stat().st_mtime_ns
            cluster.wait(
                lambda m=mtime: (
                    cluster.state()["backends"]["backend-1"]["served_mtime_ns"] >= m
                    and "backend-1" in cluster.state()["routed"]
                ),
                "backend-1 reloaded",
                30,
            )
            keepalive.wait_requests(100)
            (cluster.vassals / "extra.ini").unlink()
            cluster.wait(lambda: "extra" not in cluster.state()["backends"], f"extra removed ({round_})", 30)
            keepalive.wait_requests(100)
        posts.wait_requests(20)
    for load in (keepalive, posts, slow):
        assert load.result.failures == [], load.result.summary()
    assert keepalive.result.backends.get("extra", 0) > 0, "extra served while it was there"
    assert nginx_errors_since(cluster, offset) == [], cluster.logs()
    assert reloads(cluster) == reloads_before, "routing changes must not reload nginx (keep-alive survives)"


def test_browser_sized_headers_reach_the_app_and_oversized_ones_get_a_json_431_or_414(cluster):
    with Load(cluster.url, clients=4) as ordinary:
        ordinary.wait_requests(50)
        for _ in range(10):
            r = cluster.get("/?" + "q=" + "x" * 7000)
            assert r.status_code == 200, r.text
            r = requests.get(cluster.url + "/", cookies={"session": "c" * 6000}, timeout=5)
            assert r.status_code == 200 and r.json()["backend"].startswith("backend-"), r.text
            r = requests.get(cluster.url + "/", headers={"X-Huge": "h" * 65536}, timeout=5)
            assert r.status_code == 431 and r.headers["Content-Type"] == "application/json", r.text
            assert r.json() == {
                "error": "request header too large",
                "limit": "16k per header line (FLEET_HEADER_BUFFER)",
            }
            r = cluster.get("/?" + "q=" + "x" * 70000)
            assert r.status_code == 414 and r.headers["Content-Type"] == "application/json", r.text
            assert r.json() == {"error": "request line too long", "limit": "16k (FLEET_HEADER_BUFFER)"}
        ordinary.wait_requests(50)
    assert ordinary.result.failures == [], ordinary.result.summary()
    assert set(cluster.state()["routed"]) == {"backend-1", "backend-2"}, "a bad request must not eject a backend"


def test_an_8_mb_upload_reaches_the_app_and_one_over_the_limit_gets_a_json_413(make_cluster):
    c = make_cluster({"b1.ini": "[uwsgi]\nprocesses = 1\n"})
    c.up("--max-body", "10m")
    r = requests.post(c.url + "/upload", data=os.urandom(8 << 20), timeout=30)
    assert r.status_code == 200 and r.json()["bytes"] == 8 << 20, r.text
    r = requests.post(c.url + "/upload", data=b"x" * (11 << 20), timeout=30)
    assert r.status_code == 413 and r.json()["limit"] == "10m (FLEET_MAX_BODY)"


def test_a_slow_backend_gets_a_json_504_and_no_backend_a_json_503(make_cluster):
    c = make_cluster({"b1.ini": "[uwsgi]\nprocesses = 2\n"})
    c.up("--read-timeout", "1")
    r = c.get("/slow?seconds=3", timeout=20)
    assert r.status_code == 504 and r.headers["Content-Type"] == "application/json", r.text
    assert "did not answer in time" in r.json()["error"]
    assert c.get("/").status_code == 200, "the timed-out request did not take the backend out"
    (c.vassals / "b1.ini").unlink()
    c.wait(lambda: c.state()["routed"] == [], "nothing routed", 30)
    r = c.get("/")
    assert r.status_code == 503 and r.json()["error"] == "no healthy backend"


SHOP = """
from flask import Blueprint, Flask, session, request, jsonify
import sqlite3, os

shop = Blueprint("shop", __name__)

def db():
    conn = sqlite3.connect(os.environ["SHOP_DB"], timeout=10)
    conn.execute("create table if not exists posts (user text, body text)")
    return conn

@shop.post("/login")
def login():
    session["user"] = request.form["user"]
    return jsonify(user=session["user"])

@shop.post("/posts")
def post():
    if "user" not in session:
        return jsonify(error="log in first"), 401
    with db() as conn:
        conn.execute("insert into posts values (?, ?)", (session["user"], request.form["body"]))
    return jsonify(ok=True, served_by=os.environ.get("FLEET_VASSAL"))

@shop.get("/posts")
def posts():
    with db() as conn:
        rows = conn.execute("select user, body from posts").fetchall()
    return jsonify(posts=rows)

def create_app():
    app = Flask(__name__)
    app.secret_key = "test-only"
    app.register_blueprint(shop)
    return app
"""


def test_a_third_party_app_with_a_factory_and_no_healthz_is_served_across_two_backends(make_cluster):
    c = make_cluster({})
    pkg = c.root / "shop_app" / "shop"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(SHOP)
    (c.root / "shop_app").chmod(0o755)
    data = c.root / "shop_data"  # writable by the vassals' unprivileged user (www-data when run as root)
    data.mkdir(mode=0o1777)
    data.chmod(0o1777)
    vassal = f"[uwsgi]\nchdir = {c.root / 'shop_app'}\nmodule = shop:create_app()\nenv = SHOP_DB={data}/shop.db\n"
    for name in ("shop-1", "shop-2"):
        (c.vassals / f"{name}.ini").write_text(vassal)
    c.up()
    assert set(c.state()["routed"]) == {"shop-1", "shop-2"}
    user = requests.Session()
    assert user.post(c.url + "/posts", data={"body": "anonymous"}, timeout=5).status_code == 401
    assert user.post(c.url + "/login", data={"user": "ada"}, timeout=5).json() == {"user": "ada"}
    served_by = {
        user.post(c.url + "/posts", data={"body": f"post {i}"}, timeout=5).json()["served_by"] for i in range(20)
    }
    assert served_by == {"shop-1", "shop-2"}, "one session across both backends"
    assert len(user.get(c.url + "/posts", timeout=5).json()["posts"]) == 20
