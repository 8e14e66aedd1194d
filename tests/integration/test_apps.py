"""Several apps in one fleet, by host name and path prefix, with real third-party Flask apps: flaskr (Flask's
tutorial) under /blog, js_example (Flask's JavaScript example) on its own host name, the example app as the
default (harness.thirdparty fetches Flask's examples)."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from harness.cluster import Cluster
from harness.load import Load
from harness.ports import free_port
from harness.thirdparty import flask_examples

pytestmark = pytest.mark.integration

JS_HOST = "js.example.test"


def blog_vassal(root: Path) -> str:
    return (
        f"[uwsgi]\nchdir = {root / 'thirdparty' / 'tutorial'}\nmodule = flaskr:create_app()\nprocesses = 1\n"
        "[fleet]\napp = blog\npath = /blog\n"
    )


def js_vassal(root: Path) -> str:
    return (
        f"[uwsgi]\nchdir = {root / 'thirdparty' / 'javascript'}\nmodule = js_example:app\nprocesses = 1\n"
        f"[fleet]\napp = js\nhost = {JS_HOST}\n"
    )


def with_third_party_apps(c: Cluster) -> None:
    """Copy Flask's examples into the cluster and initialise flaskr's database, writable by the vassals."""
    examples = flask_examples()
    for name in ("tutorial", "javascript"):
        shutil.copytree(examples / name, c.root / "thirdparty" / name)
    tutorial = c.root / "thirdparty" / "tutorial"
    init = "from flaskr import create_app\nfrom flaskr.db import init_db\nwith create_app().app_context(): init_db()\n"
    subprocess.run([sys.executable, "-c", init], cwd=tutorial, check=True, timeout=60)
    if os.geteuid() == 0:  # vassals run as www-data: flaskr writes its SQLite file in its instance folder
        user = pwd.getpwnam("www-data")
        for path in [tutorial / "instance", *(tutorial / "instance").iterdir()]:
            os.chown(path, user.pw_uid, user.pw_gid)


def nginx_master(c: Cluster) -> int:
    return int((c.run_dir / "nginx.pid").read_text())


def reloads(c: Cluster) -> int:
    return c.state()["counters"]["nginx_reloads"]


@pytest.fixture
def three_apps(make_cluster, monkeypatch) -> Cluster:
    monkeypatch.setenv("FLEET_ACCESS_LOG", "json")  # for `fleet up` below: the log with each request's app
    c = make_cluster({})
    with_third_party_apps(c)
    for name, text in {
        "backend-1.ini": "[uwsgi]\nprocesses = 2\n",
        "blog-1.ini": blog_vassal(c.root),
        "js-1.ini": js_vassal(c.root),
    }.items():
        c.write_vassal(name, text)
    c.up_with_admin()
    return c


def test_three_apps_by_path_and_host_and_flaskr_flows_work_under_its_prefix(three_apps):
    c = three_apps
    # The default app: any host, any path no other app takes.
    assert c.get("/").json()["backend"] == "backend-1"
    assert c.get("/healthz").status_code == 200
    blogger = requests.get(c.url + "/blogger", timeout=5)  # not under /blog: the default app's own 404
    assert blogger.status_code == 404 and "no app serves" not in blogger.text, blogger.text[:300]
    # js_example by host name, at every path of that host.
    js = requests.get(c.url + "/", headers={"Host": JS_HOST}, timeout=5)
    assert js.status_code == 200 and ("js_example" in js.text or "JavaScript" in js.text), js.text[:300]
    add = requests.post(c.url + "/add", data={"a": "2", "b": "3"}, headers={"Host": JS_HOST}, timeout=5)
    assert add.json() == {"result": 5}
    # /blog alone is sent to /blog/; flaskr's pages carry the prefix in every url_for link.
    bare = requests.get(c.url + "/blog", allow_redirects=False, timeout=5)
    assert bare.status_code == 308 and bare.headers["Location"].endswith("/blog/")
    s = requests.Session()
    index = s.get(c.url + "/blog", timeout=5)
    assert index.status_code == 200, index.text[:300]
    assert 'href="/blog/static/style.css"' in index.text and 'href="/blog/auth/register"' in index.text
    assert s.get(c.url + "/blog/static/style.css", timeout=5).status_code == 200
    # Register, log in, write a post: forms, redirects and the session cookie, all under /blog.
    r = s.post(c.url + "/blog/auth/register", data={"username": "ann", "password": "pw"}, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/blog/auth/login", r.text[:300]
    r = s.post(c.url + "/blog/auth/login", data={"username": "ann", "password": "pw"}, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/blog/", r.text[:300]
    assert "session=" in r.headers["Set-Cookie"]
    r = s.post(c.url + "/blog/create", data={"title": "Hello apps", "body": "under a prefix"}, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/blog/", r.text[:300]
    page = s.get(c.url + "/blog/", timeout=5).text
    assert "Hello apps" in page and 'href="/blog/auth/logout"' in page and 'href="/blog/1/update"' in page
    # Everything knows the app.
    backends = c.state()["backends"]
    assert {n: b["app"] for n, b in backends.items()} == {"backend-1": "default", "blog-1": "blog", "js-1": "js"}
    status = c.fleet("status").stdout
    shares = {r["name"]: r["share"] for r in json.loads(c.fleet("status", "--json").stdout)["backends"]}
    assert shares == {"backend-1": 100.0, "blog-1": 100.0, "js-1": 100.0}, "each app's slots are its own"
    assert re.search(r"blog-1\s+blog\s+healthy", status), status
    c.wait(
        lambda: (
            'fleet_vassal_routed{app="blog",vassal="blog-1"} 1.0' in requests.get(c.admin + "/metrics", timeout=5).text
        ),
        "metrics",
    )
    api = requests.get(c.admin + "/api/status", timeout=5).json()
    assert {b["name"]: b["app"] for b in api["backends"]} == {"backend-1": "default", "blog-1": "blog", "js-1": "js"}
    log = c.run_dir / "logs" / "nginx-access.jsonl"

    def logged() -> dict[str, str]:
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        apps = {d["uri"]: d["app"] for d in lines if d["uri"] in ("/blog/create", "/add", "/healthz")}
        return apps if len(apps) == 3 else {}

    found = c.wait(logged, "the JSON access log (nginx flushes it every 2 s)", timeout=15)
    assert found == {"/blog/create": "blog", "/add": "js", "/healthz": "default"}


def test_a_backend_added_to_one_app_under_keepalive_load_on_another_loses_nothing_and_reloads_nothing(three_apps):
    c = three_apps
    master, reloads_before = nginx_master(c), reloads(c)
    with Load(c.url, clients=4, keepalive=True) as load:
        load.wait_requests(200)
        c.write_vassal("blog-2.ini", blog_vassal(c.root))
        c.wait(lambda: "blog-2" in c.state()["routed"], "blog-2 routed", 60)
        load.wait_requests(200)
        (c.vassals / "blog-2.ini").unlink()
        c.wait(lambda: "blog-2" not in c.state()["backends"], "blog-2 removed", 60)
        load.wait_requests(100)
    assert load.result.failures == [], load.result.summary()
    assert nginx_master(c) == master
    assert reloads(c) == reloads_before, "a backend of an existing app never reloads nginx"
    assert requests.get(c.url + "/blog/", timeout=5).status_code == 200


def test_a_request_no_app_takes_gets_a_json_404_naming_host_and_path(make_cluster):
    c = make_cluster({})
    with_third_party_apps(c)
    c.write_vassal("blog-1.ini", blog_vassal(c.root))
    c.up()
    r = requests.get(c.url + "/nowhere", headers={"Host": "other.example.test"}, timeout=5)
    assert r.status_code == 404
    assert r.json()["host"] == "other.example.test" and r.json()["path"] == "/nowhere"
    assert requests.get(c.url + "/blog/", timeout=5).status_code == 200


def test_a_rolling_reload_of_all_keeps_every_app_serving_even_an_app_of_one_backend(three_apps):
    c = three_apps
    with (
        Load(c.url, clients=2, keepalive=True) as default_app,
        Load(c.url, clients=2, path="/blog/hello", keepalive=True, raw=True) as blog,
    ):
        default_app.wait_requests(100)
        blog.wait_requests(100)
        c.fleet("reload", "--all", timeout=300)
        default_app.wait_requests(50)
        blog.wait_requests(50)
    for load in (default_app, blog):
        assert load.result.failures == [], load.result.summary()
    assert {n for n, b in c.state()["backends"].items() if b["state"] == "healthy"} == {"backend-1", "blog-1", "js-1"}


def test_creating_an_app_and_moving_it_to_another_path_reload_nginx_once_each(three_apps):
    c = three_apps
    before = reloads(c)
    c.write_vassal("news-1.ini", "[uwsgi]\nprocesses = 1\n[fleet]\napp = news\npath = /news\n")
    c.wait(lambda: "news-1" in c.state()["routed"], "news-1 routed", 60)
    assert requests.get(c.url + "/news/", timeout=5).json()["backend"] == "news-1"
    assert reloads(c) == before + 1, "a new app: its upstream, slots and location in one reload"
    mtime = (
        c.write_vassal("news-1.ini", "[uwsgi]\nprocesses = 1\n[fleet]\napp = news\npath = /press\n").stat().st_mtime_ns
    )
    c.wait(
        lambda: c.state()["backends"]["news-1"]["served_mtime_ns"] >= mtime and "news-1" in c.state()["routed"],
        "news-1 serves its new file",
        60,
    )
    # (Asked only now: while nginx reloads, old workers may still take a new connection for a moment.)
    assert requests.get(c.url + "/press/", timeout=5).json()["backend"] == "news-1"
    assert reloads(c) == before + 2, "an app moved: one reload"
    moved = requests.get(c.url + "/news/", timeout=5)  # now the default app's (its own 404), not news'
    assert moved.status_code == 404 and "no app serves" not in moved.text


def nginx_workers(c: Cluster) -> set[int]:
    master = nginx_master(c)
    return {int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()}


def test_a_restarted_control_plane_keeps_every_app_routed_without_reloading_nginx(three_apps):
    c = three_apps
    workers = nginx_workers(c)
    old = c.pids()["control"]
    with Load(c.url, clients=2, path="/blog/hello", keepalive=True, raw=True) as blog:
        blog.wait_requests(100)
        os.kill(old, signal.SIGKILL)
        c.wait(lambda: c.pids().get("control") not in (None, old), "the control plane restarted", 30)
        c.wait(
            lambda: (
                c.state()["control_pid"] == c.pids()["control"]
                and set(c.state()["routed"]) == {"backend-1", "blog-1", "js-1"}
            ),
            "the new control plane routing every app",
            30,
        )
        blog.wait_requests(100)
    assert blog.result.failures == [], blog.result.summary()
    assert nginx_workers(c) == workers, "the apps read back from run/nginx: nothing to reload"
    assert requests.get(c.url + "/", headers={"Host": JS_HOST}, timeout=5).status_code == 200


def test_the_json_404_stays_valid_json_whatever_the_path(make_cluster):
    c = make_cluster({})
    c.write_vassal("api-1.ini", "[uwsgi]\nprocesses = 1\n[fleet]\napp = api\npath = /api\n")
    c.up()
    for path in ("/x%22y", "/x%5Cy", "/caf%C3%A9"):
        r = requests.get(c.url + path, timeout=5)
        assert r.status_code == 404 and "no app serves" in r.json()["error"], (path, r.text)
    assert requests.get(c.url + "/plain/path", timeout=5).json()["path"] == "/plain/path"


def test_fleet_check_names_each_files_app_and_fails_the_files_that_break_an_app_rule(make_cluster):
    c = make_cluster({})
    files = {
        "blog-1.ini": "[uwsgi]\n[fleet]\napp = blog\npath = /blog\n",
        "blog-2.ini": "[uwsgi]\n[fleet]\napp = blog\npath = /news\n",
        "other-1.ini": "[uwsgi]\n[fleet]\napp = other\npath = /blog\n",
        "bad-1.ini": "[uwsgi]\n[fleet]\npath = blog/\n",
        "plain.ini": "[uwsgi]\nprocesses = 1\n",
    }
    for name, text in files.items():
        c.write_vassal(name, text)
    done = c.fleet("check", check=False)
    out = done.stdout
    assert done.returncode == 1, out
    assert "blog-1.ini: ok (app blog: host any host, path /blog)" in out
    assert "plain.ini: ok\n" in out
    assert "blog-2.ini: app 'blog': its vassals must agree" in out
    assert "other-1.ini: app 'other' claims host any host, path /blog, which app 'blog'" in out
    assert "bad-1.ini:3: path 'blog/' does not start with /" in out


def test_an_apps_static_folder_is_served_by_nginx_under_its_path(make_cluster):
    c = make_cluster({})
    with_third_party_apps(c)
    c.write_vassal("blog-1.ini", blog_vassal(c.root) + "static = /static flaskr/static\n")
    c.up()
    css = requests.get(c.url + "/blog/static/style.css", timeout=5)
    assert css.status_code == 200 and "body" in css.text
    assert css.headers["Cache-Control"].startswith("max-age=") and css.headers["ETag"], css.headers  # nginx's
    before = c.stats("blog-1")["workers"][0]["requests"]
    for _ in range(5):
        assert requests.get(c.url + "/blog/static/style.css", timeout=5).status_code == 200
    assert c.stats("blog-1")["workers"][0]["requests"] == before, "no static request reaches the vassal"
    missing = requests.get(c.url + "/blog/static/nope.css", timeout=5)
    assert missing.status_code == 404 and missing.json()["error"].startswith("no such file")
    assert 'href="/blog/static/style.css"' in requests.get(c.url + "/blog/", timeout=5).text


def test_with_https_an_app_by_host_is_served_over_https_and_its_http_answers_308(make_cluster):
    c = make_cluster({})
    c.write_vassal("backend-1.ini", "[uwsgi]\nprocesses = 1\n")
    c.write_vassal("admin-1.ini", "[uwsgi]\nprocesses = 1\n[fleet]\napp = admin\nhost = admin.example.test\n")
    https_port = free_port()
    c.up("--tls", "local", "--https-port", str(https_port))
    ca = str(c.run_dir / "tls" / "ca.crt")
    host = {"Host": "admin.example.test"}
    r = requests.get(f"https://127.0.0.1:{https_port}/", headers=host, verify=ca, timeout=5)
    assert r.json()["backend"] == "admin-1"
    assert requests.get(f"https://127.0.0.1:{https_port}/", verify=ca, timeout=5).json()["backend"] == "backend-1"
    redirect = requests.get(c.url + "/x?y", headers=host, allow_redirects=False, timeout=5)
    assert (
        redirect.status_code == 308 and redirect.headers["Location"] == f"https://admin.example.test:{https_port}/x?y"
    )
