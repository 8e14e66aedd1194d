"""HTTPS on a real cluster: HTTP/2 to a client that trusts only the given CA, the 308 from HTTP (or plain
HTTP kept with --http-redirect off), `--tls local` and its CA, certificate rotation under keep-alive and
HTTP/2 load with no failed request and no nginx reload, a bad pair refused (at run time: the old one kept;
at `fleet up`: one line), and a real headless Chromium trusting the local CA.

The test CAs are made with the `openssl` command line (Debian's), in the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from harness.cluster import Cluster
from harness.load import Load
from harness.ports import free_port
from harness.procs import stop_group
from harness.wait import wait_for
from tests import tools
from tests.conftest import TWO_BACKENDS

pytestmark = pytest.mark.integration

if shutil.which("curl") is None or shutil.which("openssl") is None:  # pragma: no cover (Debian has both)
    pytest.skip("curl and openssl are needed: apt-get install -y curl openssl", allow_module_level=True)


# ---- certificates made for the tests


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str = "ca") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    openssl(
        "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN=test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
        cwd=folder,
    )  # fmt: skip
    return folder / f"{name}.crt"


def issue(ca: Path, out: Path, serial: int) -> tuple[Path, Path]:
    """A server certificate for localhost and 127.0.0.1 from `ca`, with `serial`: (cert, key) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
        cwd=out,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", str(ca), "-CAkey", str(ca.with_suffix(".key")),
        "-set_serial", str(serial), "-days", "2", "-extfile", "ext.cnf", "-out", "server.crt",
        cwd=out,
    )  # fmt: skip
    return out / "server.crt", out / "server.key"


def replace_pair(cert: Path, key: Path, new_cert: Path, new_key: Path) -> None:
    """As a renewal tool does: each file replaced by a rename (the certificate first, then the key)."""
    for src, dest in ((new_cert, cert), (new_key, key)):
        tmp = dest.with_name(f".{dest.name}.new")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def served(port: int, ca: Path) -> bytes:
    """The certificate nginx serves at a new handshake to localhost:port (verified against `ca`)."""
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        cert = tls.getpeercert(binary_form=True)
    assert cert is not None
    return cert


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=60)


def nginx_processes(c: Cluster) -> set[int]:
    master = int((c.run_dir / "nginx.pid").read_text())
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {master, *map(int, children)}


def https_state(c: Cluster) -> dict:
    return json.loads(c.fleet("status", "--json", check=False, timeout=30).stdout).get("https") or {}


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA and two server certificates from it (serials 1001 and 1002), and a stranger's pair."""
    ca = make_ca(tmp_path / "ca")
    cert1, key1 = issue(ca, tmp_path / "one", 1001)
    cert2, key2 = issue(ca, tmp_path / "two", 1002)
    other_ca = make_ca(tmp_path / "other", "other")
    cert3, key3 = issue(other_ca, tmp_path / "three", 1003)
    live = tmp_path / "live"  # what fleet is given: the files a renewal tool replaces
    live.mkdir()
    shutil.copy(cert1, live / "site.crt")
    shutil.copy(key1, live / "site.key")
    return {
        "ca": ca,
        "cert": live / "site.crt",
        "key": live / "site.key",
        "cert1": cert1,
        "cert2": cert2,
        "key2": key2,
        "key3": key3,
    }


def up_https(c: Cluster, pki: dict[str, Path], *extra: str) -> int:
    port = free_port()
    c.up("--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]), "--https-port", str(port), *extra)
    return port


# ---- the tests


def test_a_client_trusting_only_the_given_ca_gets_the_page_over_http2_and_http_answers_308(make_cluster, pki):
    c = make_cluster(TWO_BACKENDS)
    port = up_https(c, pki)
    page = curl(
        "--http2", "--cacert", str(pki["ca"]), "-w", "\n%{http_version} %{http_code}", f"https://localhost:{port}/"
    )
    body, _, versions = page.stdout.rpartition("\n")
    assert versions == "2 200", page.stdout + page.stderr
    assert json.loads(body)["backend"] in ("backend-1", "backend-2")
    # Trusting only the system's CAs, curl refuses the certificate.
    assert curl(f"https://localhost:{port}/").returncode != 0
    redirect = curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", f"{c.url}/some/path?q=1")
    assert redirect.stdout == f"308 https://127.0.0.1:{port}/some/path?q=1"
    # TLS 1.3, and 1.2 for older clients (below 1.2, nginx is not configured to offer: see test_tls unit tests).
    for version, name in ((ssl.TLSVersion.TLSv1_3, "TLSv1.3"), (ssl.TLSVersion.TLSv1_2, "TLSv1.2")):
        context = ssl.create_default_context(cafile=str(pki["ca"]))
        context.maximum_version = version
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
            context.wrap_socket(sock, server_hostname="localhost") as tls,
        ):
            assert tls.version() == name


def test_with_http_redirect_off_plain_http_keeps_serving_beside_https(make_cluster, pki):
    c = make_cluster(TWO_BACKENDS)
    port = up_https(c, pki, "--http-redirect", "off")
    assert c.get("/").status_code == 200
    assert requests.get(f"https://localhost:{port}/", verify=str(pki["ca"]), timeout=5).json()["backend"]


SCHEME_APP = """
import json


def application(environ, start_response):
    body = json.dumps({"scheme": environ["wsgi.url_scheme"], "host": environ.get("HTTP_HOST")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
"""


def test_behind_https_the_app_sees_https_as_its_url_scheme(make_cluster, pki):
    """So that Flask's url_for(_external=True) and redirects build https:// URLs."""
    c = make_cluster({"probe.ini": "[uwsgi]\nmodule = scheme_probe\nprocesses = 1\n"})
    (c.root / "app" / "scheme_probe.py").write_text(SCHEME_APP)
    port = up_https(c, pki)
    doc = requests.get(f"https://localhost:{port}/", verify=str(pki["ca"]), timeout=5).json()
    assert doc == {"scheme": "https", "host": f"localhost:{port}"}


def test_fleet_up_with_a_mismatched_pair_fails_at_once_in_one_line_and_starts_nothing(make_cluster, pki):
    c = make_cluster(TWO_BACKENDS)
    shutil.copy(pki["key3"], pki["key"])
    proc = c.up("--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]), check=False, timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "key values mismatch" in lines[0] and "fleet up" in lines[0], proc.stderr
    assert c.processes() == [] and c.pids() == {}


def test_rotation_under_keepalive_and_http2_load_fails_no_request_and_serves_the_new_certificate_within_5s(
    make_cluster, pki
):
    c = make_cluster(TWO_BACKENDS)
    port = up_https(c, pki)
    url = f"https://localhost:{port}"
    assert served(port, pki["ca"]) == der(pki["cert1"])
    before = nginx_processes(c)
    # HTTP/2: one curl, one connection, 20 requests a second across the rotation.
    urls = [arg for i in range(160) for arg in (f"{url}/?n={i}", "-o", "/dev/null")]
    h2 = subprocess.Popen(
        ["curl", "-sS", "--http2", "--cacert", str(pki["ca"]), "--rate", "20/s",
         "-w", "%{http_code} %{http_version} %{num_connects}\n", *urls],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with Load(url, clients=4, keepalive=True, verify=str(pki["ca"]), max_seconds=60) as load:
            load.wait_requests(50)
            replace_pair(pki["cert"], pki["key"], pki["cert2"], pki["key2"])
            rotated = time.monotonic()
            wait_for("the new certificate served", lambda: served(port, pki["ca"]) == der(pki["cert2"]), 5.0, 0.05)
            took = time.monotonic() - rotated
            load.wait_requests(50)
        out, err = h2.communicate(timeout=60)
    finally:
        if h2.poll() is None:
            h2.kill()
            h2.wait()
    result = load.result
    assert result.failures == [] and result.ok > 100, result.summary()
    answers = out.split("\n")[:-1]
    assert len(answers) == 160 and set(answers[1:]) == {"200 2 0"} and answers[0] == "200 2 1", out + err
    assert took < 5.0
    assert nginx_processes(c) == before  # no reload: the same master and workers
    assert https_state(c)["serial"] == format(1002, "X").rjust(4, "0")
    assert "[https]" in (c.run_dir / "logs" / "events.jsonl").read_text()


def test_a_mismatched_pair_at_run_time_is_refused_with_the_reason_and_the_old_one_still_served(make_cluster, pki):
    c = make_cluster(TWO_BACKENDS)
    port = up_https(c, pki)
    shutil.copy(pki["key3"], pki["key"])
    state = c.wait(lambda: (s := https_state(c)).get("refused") and s, "the pair refused", timeout=10)
    assert "key values mismatch" in state["refused"]
    assert served(port, pki["ca"]) == der(pki["cert1"])
    assert "REFUSED" in c.fleet("status").stdout
    events = (c.run_dir / "logs" / "events.jsonl").read_text()
    assert "refused the new pair" in events and "kept the last good one" in events
    # Put right, it is served again, and the refusal is cleared.
    replace_pair(pki["cert"], pki["key"], pki["cert2"], pki["key2"])
    c.wait(lambda: served(port, pki["ca"]) == der(pki["cert2"]), "the good pair served", timeout=10)
    assert c.wait(lambda: not https_state(c).get("refused"), "the refusal cleared", timeout=5)


def test_tls_local_makes_a_private_ca_once_that_curl_trusts_and_keeps_it_across_down_and_up(make_cluster):
    c = make_cluster(TWO_BACKENDS)
    port = free_port()
    first = c.up("--tls", "local", "--https-port", str(port))
    ca = c.run_dir / "tls" / "ca.crt"
    assert f"curl --cacert {ca}" in first.stdout and "update-ca-certificates" in first.stdout
    assert stat.S_IMODE((c.run_dir / "tls" / "ca.key").stat().st_mode) == 0o600
    # Others may read the CA's certificate, never the key nginx serves with.
    assert stat.S_IMODE(ca.stat().st_mode) & 0o004 and stat.S_IMODE((c.run_dir / "tls").stat().st_mode) & 0o001
    assert stat.S_IMODE((c.run_dir / "tls" / "serving.pem").stat().st_mode) & 0o007 == 0
    for host in ("localhost", "127.0.0.1"):
        page = curl("--http2", "--cacert", str(ca), "-w", "\n%{http_version}", f"https://{host}:{port}/")
        assert page.stdout.endswith("\n2") and "backend" in page.stdout, page.stderr
    made = ca.read_bytes()
    c.down()
    c.up("--tls", "local", "--https-port", str(port))
    assert ca.read_bytes() == made
    assert curl("--cacert", str(ca), f"https://localhost:{port}/").returncode == 0


def test_headless_chromium_trusting_the_local_ca_loads_the_page_over_https(make_cluster, tmp_path):
    tools.need("chromium", "chromedriver", "certutil")
    c = make_cluster(TWO_BACKENDS)
    port = free_port()
    c.up("--tls", "local", "--https-port", str(port))
    home = tmp_path / "home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True, timeout=30)
    ca = c.run_dir / "tls" / "ca.crt"
    subprocess.run(
        ["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "fleet-local-ca", "-i", str(ca)],
        check=True,
        timeout=30,
    )
    with tools.chromium(tmp_path, home=home) as driver:
        driver.get(f"{c.url}/")  # plain HTTP: the 308 takes the browser to HTTPS
        assert driver.current_url == f"https://127.0.0.1:{port}/"
        text = driver.find_element("tag name", "body").text
        assert json.loads(text)["backend"] in ("backend-1", "backend-2"), text
        protocol = driver.execute_script("return performance.getEntriesByType('navigation')[0].nextHopProtocol")
        assert protocol == "h2"


def test_the_swarm_edge_terminates_https_with_http2_redirects_http_and_rotates_without_a_reload(make_cluster, pki):
    """`fleet edge` on this machine (no Swarm): with no cell serving it answers its own JSON error, over
    HTTPS and HTTP/2 as a client sees it; the pair is rotated with no nginx reload."""
    c = make_cluster({})
    port, https_port = free_port(), free_port()
    argv = [
        sys.executable, "-m", "fleet", "--root", str(c.root), "edge", "--port", str(port), "--cells", "localhost",
        "--cell-port", str(free_port()), "--health-port", str(free_port()), "--https-port", str(https_port),
        "--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]),
    ]  # fmt: skip
    with open(c.root / "edge.log", "w") as log:
        edge = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=c.root)
    try:
        wait_for("the edge's HTTPS port", lambda: served(https_port, pki["ca"]), 30, ignore=(OSError,))
        page = curl(
            "--http2", "--cacert", str(pki["ca"]), "-w", "\n%{http_version}", f"https://localhost:{https_port}/"
        )
        body, _, version = page.stdout.rpartition("\n")
        assert version == "2" and "error" in json.loads(body), page.stdout + page.stderr
        redirect = curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", f"http://127.0.0.1:{port}/a?b")
        assert redirect.stdout == f"308 https://127.0.0.1:{https_port}/a?b"
        master = int((c.run_dir / "edge" / "nginx.pid").read_text())
        workers = Path(f"/proc/{master}/task/{master}/children").read_text()
        replace_pair(pki["cert"], pki["key"], pki["cert2"], pki["key2"])
        wait_for("the new certificate at the edge", lambda: served(https_port, pki["ca"]) == der(pki["cert2"]), 5.0)
        assert Path(f"/proc/{master}/task/{master}/children").read_text() == workers  # not reloaded
    finally:
        stop_group(edge, signal.SIGTERM, 30)
