"""Static files: nginx answers a vassal's `[fleet] static` folder itself (real nginx and vassals), one test
per property: no worker sees those requests, ETag and 304, Cache-Control, gzip, precompressed files, no
listing, no way out of the folder, a JSON 404 for a missing file, and nginx reloaded only when the set of
folders changes."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fleet.proxy import nginx
from harness.cluster import Cluster

pytestmark = pytest.mark.integration

STATIC = "[uwsgi]\nprocesses = 1\n\n[fleet]\nstatic = /static static\n"
SECRET = "TOP-SECRET-NOT-STATIC"
PRECOMPRESSED = "this text came from big.txt.gz, not from big.txt\n"


@pytest.fixture(scope="module")
def site(cluster_parent: Path) -> Iterator[Cluster]:
    """One cluster for the module (each test only reads): two backends serving app/static at /static/, a
    short max-age set by its flag, and the JSON access log (it names the upstream of every answer)."""
    c = Cluster.create(cluster_parent, {"backend-1.ini": STATIC, "backend-2.ini": STATIC})
    folder = c.root / "app" / "static"
    (folder / "sub").mkdir()
    (folder / "sub" / "inner.txt").write_text("inner\n")
    (folder / "big.txt").write_text("plain text that nginx compresses on the fly\n" * 40)
    (folder / "big.txt.gz").write_bytes(gzip.compress(PRECOMPRESSED.encode()))
    (c.root / "app" / "secret.txt").write_text(SECRET)  # the folder's parent: never reachable
    (c.root / "secret.txt").write_text(SECRET)
    (folder / "link.txt").symlink_to(c.root / "app" / "secret.txt")  # a symlink leading out
    try:
        c.up("--static-max-age", "120", "--access-log", "json")
        yield c
    finally:
        c.down()


def raw_get(c: Cluster, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET `path` exactly as written (requests and urllib3 would remove `..` before sending)."""
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def access_log(c: Cluster) -> list[dict]:
    path = c.run_dir / "logs" / "nginx-access.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_static_files_are_answered_by_nginx_and_no_backend_sees_them(site):
    marker = "served-by-nginx"
    for i in range(20):
        r = requests.get(f"{site.url}/static/style.css?{marker}={i}", timeout=5)
        assert r.status_code == 200 and "font-family" in r.text
        assert r.headers["Content-Type"] == "text/css"
    requests.get(f"{site.url}/?{marker}=app", timeout=5).raise_for_status()  # this one a backend answers

    def logged() -> list[dict]:
        lines = [e for e in access_log(site) if marker in e["uri"]]
        return lines if len(lines) == 21 else []

    lines = site.wait(logged, "the 21 requests in nginx's access log", 15)
    static = [e for e in lines if e["uri"].startswith("/static/")]
    assert len(static) == 20 and all(e["upstream"] == "" and e["vassal"] == "" for e in static)
    app = [e for e in lines if not e["uri"].startswith("/static/")]
    assert app[0]["vassal"] in ("backend-1", "backend-2")


def test_etag_and_last_modified_and_a_304_for_if_none_match(site):
    for encoding in ("identity", "gzip"):  # gzipped on the fly: a weak ETag (W/"..."), still matched
        headers = {"Accept-Encoding": encoding}
        first = requests.get(f"{site.url}/static/style.css", headers=headers, timeout=5)
        etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
        assert etag.startswith('"' if encoding == "identity" else 'W/"') and modified.endswith("GMT")
        again = requests.get(f"{site.url}/static/style.css", headers=headers | {"If-None-Match": etag}, timeout=5)
        assert again.status_code == 304 and again.content == b""
        assert again.headers["ETag"].removeprefix("W/") == etag.removeprefix("W/")
        since = requests.get(
            f"{site.url}/static/style.css", headers=headers | {"If-Modified-Since": modified}, timeout=5
        )
        assert since.status_code == 304


def test_cache_control_is_the_setting_and_a_year_immutable_for_fingerprinted_names(site):
    short = requests.get(f"{site.url}/static/style.css", timeout=5)
    assert short.headers["Cache-Control"] == "max-age=120"
    long = requests.get(f"{site.url}/static/app.3f9c2b.css", timeout=5)
    assert long.status_code == 200 and "fingerprinted" in long.text
    assert long.headers["Cache-Control"] == "public, max-age=31536000, immutable"


def test_text_types_are_gzipped_for_clients_that_accept_it(site):
    status, headers, body = raw_get(site, "/static/style.css", {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip" and "Accept-Encoding" in headers["vary"]
    assert b"font-family" in gzip.decompress(body)
    status, headers, body = raw_get(site, "/static/style.css")
    assert status == 200 and "content-encoding" not in headers and b"font-family" in body


def test_a_precompressed_gz_beside_a_file_is_sent_as_is(site):
    status, headers, body = raw_get(site, "/static/big.txt", {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert gzip.decompress(body).decode() == PRECOMPRESSED
    plain = requests.get(f"{site.url}/static/big.txt", headers={"Accept-Encoding": "identity"}, timeout=5)
    assert plain.text.startswith("plain text that nginx compresses")


@pytest.mark.parametrize("path", ["/static/", "/static/sub/", "/static/sub", "/static"])
def test_a_folder_is_a_json_404_with_no_listing(site, path):
    status, headers, body = raw_get(site, path)
    assert status == 404 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"].startswith("no such file")
    assert b"inner.txt" not in body and b"style.css" not in body and "location" not in headers


@pytest.mark.parametrize(
    "path",
    [
        "/static../secret.txt",
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/%2e%2e%2fsecret.txt",
        "/static/../../secret.txt",
        "/static/sub/../../secret.txt",
        "/static/link.txt",
    ],
)
def test_no_request_reaches_outside_the_folder(site, path):
    status, _, body = raw_get(site, path)
    assert SECRET.encode() not in body
    assert status in (400, 403, 404)


def test_a_symlink_leading_out_is_refused_with_json(site):
    status, headers, body = raw_get(site, "/static/link.txt")
    assert status == 404 and headers["content-type"] == "application/json" and SECRET.encode() not in body


def test_a_missing_file_is_a_json_404_from_nginx(site):
    r = requests.get(f"{site.url}/static/nothing-here.css?missing-probe=1", timeout=5)
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/json"
    assert r.json() == {"error": "no such file"}

    def logged() -> list[dict]:
        return [e for e in access_log(site) if "missing-probe" in e["uri"]]

    (entry,) = site.wait(logged, "the 404 in nginx's access log", 15)
    assert entry["status"] == 404 and entry["upstream"] == "" and entry["vassal"] == ""


def test_static_files_need_get_or_head(site):
    r = requests.post(f"{site.url}/static/style.css", data=b"x", timeout=5)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD" and "GET and HEAD" in r.json()["error"]


def nginx_reloads(c: Cluster) -> int:
    return c.state()["counters"]["nginx_reloads"]


def nginx_workers(c: Cluster) -> set[int]:
    return nginx.worker_pids(c.pids()["nginx"])


def test_backends_coming_and_going_reload_nothing_and_a_new_folder_reloads_nginx_once(make_cluster):
    c = make_cluster({"backend-1.ini": STATIC})
    c.up()
    c.wait(lambda: requests.get(f"{c.url}/static/style.css", timeout=5).status_code == 200, "static served")
    workers, reloads = nginx_workers(c), nginx_reloads(c)
    c.fleet("add", "backend-2")  # writes the [fleet] static line the others agree on
    assert "static = /static static" in (c.vassals / "backend-2.ini").read_text()
    assert c.backend_state("backend-2") == "healthy"
    c.write_vassal("backend-3.ini", STATIC)
    c.wait(lambda: "backend-3" in c.state()["routed"], "backend-3 routed")
    os.utime(c.vassals / "backend-1.ini")
    c.fleet("rm", "backend-3")
    assert nginx_workers(c) == workers, "adding, touching and removing a backend reloaded nginx"
    assert nginx_reloads(c) == reloads

    (c.root / "app" / "public").mkdir()
    (c.root / "app" / "public" / "p.txt").write_text("public\n")
    moved = STATIC.replace("/static static", "/assets public")
    for name in ("backend-1.ini", "backend-2.ini"):
        c.write_vassal(name, moved)
    c.wait(lambda: requests.get(f"{c.url}/assets/p.txt", timeout=5).text == "public\n", "/assets/ served")
    conf = (c.run_dir / "nginx" / "static.conf").read_text()
    assert "location ^~ /assets/ {" in conf and "/static/" not in conf
    # /static/ is the app's again: Flask's own static route answers it, with Flask's caching headers.
    assert requests.get(f"{c.url}/static/style.css", timeout=5).headers["Cache-Control"] == "no-cache"
    c.wait(lambda: nginx_reloads(c) == reloads + 1, "the reload counted")
    assert (c.run_dir / "logs" / "control.log").read_text().count("(nginx reloaded)") == 2, "at start, and the move"


def test_a_backend_that_disagrees_on_static_is_failed_and_the_others_serve_on(make_cluster):
    c = make_cluster({"backend-1.ini": STATIC, "backend-2.ini": STATIC})
    c.up()
    c.write_vassal("odd.ini", "[uwsgi]\nprocesses = 1\n")
    c.wait(lambda: c.backend_state("odd") == "failed", "odd failed")
    error = c.state()["backends"]["odd"]["error"]
    assert "[fleet] static is 'not set' here but '/static static' for backend-1, backend-2" in error
    assert requests.get(f"{c.url}/static/style.css", timeout=5).status_code == 200
    assert {r["backend"] for r in (requests.get(c.url, timeout=5).json() for _ in range(10))} <= {
        "backend-1",
        "backend-2",
    }


def test_as_root_in_a_0700_folder_the_workers_user_serves_the_static_folder(cluster_parent):
    if os.geteuid() != 0:
        pytest.skip("only as root do nginx's workers run as another user")
    outer = Path(tempfile.mkdtemp(prefix="fleet-0700-"))  # mkdtemp: 0700, like root's home
    c = Cluster.create(outer, {"backend-1.ini": STATIC})
    c.root.chmod(0o700)
    try:
        c.up()
        r = requests.get(f"{c.url}/static/style.css", timeout=5)
        assert r.status_code == 200 and "font-family" in r.text
        assert "cannot" not in (c.run_dir / "logs" / "control.log").read_text()
    finally:
        c.down()
        shutil.rmtree(outer, ignore_errors=True)


def test_a_file_the_workers_cannot_read_is_named_in_the_logs_and_answered_a_json_404(make_cluster):
    if os.geteuid() != 0:
        pytest.skip("only as root do nginx's workers run as another user")
    c = make_cluster({"backend-1.ini": STATIC})
    private = c.root / "app" / "static" / "private.css"
    private.write_text("p{}")
    private.chmod(0o600)
    c.up()
    log = (c.run_dir / "logs" / "control.log").read_text()
    assert f"cannot read {private}" in log and f"chmod o+r {private}" in log
    r = requests.get(f"{c.url}/static/private.css", timeout=5)
    # A JSON 404 for the client (nginx's try_files finds nothing it may open); the reason in nginx's log.
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/json"
    error_log = c.run_dir / "logs" / "nginx-error.log"
    c.wait(lambda: f"{private}" in error_log.read_text() and "Permission denied" in error_log.read_text(), "logged")
    assert requests.get(f"{c.url}/static/style.css", timeout=5).status_code == 200


def test_the_shipped_vassals_serve_the_example_apps_static_folder_from_nginx(make_cluster):
    c = make_cluster()  # vassals/ as shipped
    c.up()
    css = requests.get(f"{c.url}/static/style.css", timeout=5)
    assert css.status_code == 200 and css.headers["Cache-Control"] == "max-age=300"  # the default
    fingerprinted = requests.get(f"{c.url}/static/app.3f9c2b.css", timeout=5)
    assert fingerprinted.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert requests.get(c.url, timeout=5).json()["backend"] in ("backend-1", "backend-2")
