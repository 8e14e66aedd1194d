"""The cluster runs end to end: every vassal answers through nginx; clusters coexist; down cleans up."""

from __future__ import annotations

import stat

import pytest

from tests.conftest import TWO_BACKENDS

pytestmark = pytest.mark.integration


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                address, port_hex = fields[1].rsplit(":", 1)
                if fields[3] == "0A" and int(port_hex, 16) == port:
                    found.add(address)
    return found


def test_every_vassal_answers_through_nginx_in_turn(cluster):
    assert cluster.backends_answering() == {"backend-1", "backend-2"}
    body = cluster.get().json()
    assert isinstance(body["pid"], int)
    assert cluster.get("/healthz").status_code == 200


def test_each_vassal_has_its_own_private_socket(cluster):
    for name in ("backend-1", "backend-2"):
        sock = cluster.run_dir / "sockets" / f"{name}.socket"
        mode = sock.stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert mode & 0o007 == 0, f"{sock} is accessible to others: {oct(mode)}"
        assert cluster.stats(name)["pid"] > 0
    # a copied file is a new backend with its own socket: the name comes from the file, not the content
    (cluster.vassals / "backend-3.ini").write_text((cluster.vassals / "backend-1.ini").read_text())
    cluster.wait(lambda: "backend-3" in cluster.state()["routed"], "backend-3 routed")
    assert (cluster.run_dir / "sockets" / "backend-3.socket").exists()
    assert "backend-3" in cluster.backends_answering(40)


def test_nothing_listens_beyond_loopback(cluster):
    # /proc/net/tcp writes 127.0.0.1 as 0100007F: the last two hex digits are the first octet. The
    # public listener is 127.0.0.1; nginx's own status (stub_status, for the metrics) is on 127.0.0.2.
    addresses = listening_addresses(cluster.port) | listening_addresses(cluster.port + 1)
    assert "0100007F" in listening_addresses(cluster.port)
    assert addresses and all(a.endswith("7F") and len(a) == 8 for a in addresses), addresses


def test_two_clusters_side_by_side_then_down_leaves_nothing(make_cluster, cluster):
    other = make_cluster(TWO_BACKENDS)
    other.up()
    assert other.port != cluster.port
    assert cluster.backends_answering() == {"backend-1", "backend-2"}
    assert other.backends_answering() == {"backend-1", "backend-2"}
    first_pids = cluster.processes()
    assert len(first_pids) >= 8  # Emperor, nginx master + workers, control plane, 2 x (master + 2 workers)

    other.fleet("down")
    assert other.processes() == []
    assert not (other.run_dir / "sockets" / "backend-1.socket").exists()
    # the first cluster did not notice
    assert cluster.backends_answering() == {"backend-1", "backend-2"}
    assert set(first_pids) <= set(cluster.processes())


def test_up_twice_is_refused_and_down_twice_says_so(cluster):
    again = cluster.up(check=False)
    assert again.returncode == 4
    assert "already up" in again.stderr
    cluster.fleet("down")
    assert cluster.processes() == []
    second = cluster.fleet("down", check=False)
    assert second.returncode == 5
    assert "not running" in second.stderr


def test_no_backend_gives_json_503(make_cluster):
    c = make_cluster({})
    c.up()
    r = c.get()
    assert r.status_code == 503
    assert r.headers["Content-Type"] == "application/json"
    assert r.json()["error"] == "no healthy backend"


def test_port_in_use_is_a_clear_error(make_cluster, cluster):
    other = make_cluster(TWO_BACKENDS)
    other.port = cluster.port
    proc = other.up(check=False)
    assert proc.returncode != 0
    assert f"127.0.0.1:{cluster.port}" in proc.stderr and "--port" in proc.stderr
    assert other.processes() == []
