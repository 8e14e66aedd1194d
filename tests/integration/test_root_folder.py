"""issue 17, "a first run that works as root, anywhere": root starts fleet in a folder others cannot search
(0700, in a 0700 parent, like a clone in root's home); it serves, the app never runs as root, a touch
reloads with nothing failed, and `fleet down` leaves nothing behind. Nothing on disk changes mode."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cluster import Cluster
from harness.load import Load

pytestmark = pytest.mark.integration

# An app whose workers read from the 0700 folder only at request time: a module of the app, a stdlib
# module nothing imported before, and a data file, so it fails if the workers cannot pass through.
LAZY_APP = """
import os
from pathlib import Path

from flask import Flask, jsonify

application = Flask(__name__)


@application.get("/")
def index():
    import colorsys  # noqa: F401
    import lazy_helper

    text = (Path(__file__).parent / "lazy.txt").read_text().strip()
    return jsonify(backend=os.environ["FLEET_VASSAL"], helper=lazy_helper.VALUE, text=text, uid=os.getuid())
"""

VASSALS = {
    "backend-1.ini": "[uwsgi]\n",
    "lazy.ini": "[uwsgi]\nmodule = lazy\n",
}


def mount_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def in_namespace(ns: str) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and mount_namespace(int(p)) == ns]


def uwsgi_workers(c: Cluster) -> dict[int, int]:
    """pid -> real uid of every uWSGI worker of the cluster (by its title; read from /proc)."""
    found = {}
    for pid in c.processes():
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
            uid = int(
                next(
                    line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")
                ).split()[1]
            )
        except (OSError, StopIteration):
            continue
        if b"uWSGI worker" in title:
            found[pid] = uid
    return found


@pytest.fixture
def locked() -> Iterator[Cluster]:
    """A cluster in a 0700 folder inside a 0700 folder, not started."""
    if os.geteuid() != 0:
        pytest.skip("only root runs the app as another user, who then cannot search a 0700 folder")
    outer = Path(tempfile.mkdtemp(prefix="fleet-0700-"))  # mkdtemp: 0700
    c = Cluster.create(outer, VASSALS)
    (c.root / "app" / "lazy.py").write_text(LAZY_APP)
    (c.root / "app" / "lazy_helper.py").write_text("VALUE = 'read lazily'\n")
    (c.root / "app" / "lazy.txt").write_text("read at request time\n")
    c.root.chmod(0o700)
    assert outer.stat().st_mode & 0o777 == 0o700
    try:
        yield c
    finally:
        c.down()
        shutil.rmtree(outer, ignore_errors=True)


def test_root_in_a_0700_folder_serves_unprivileged_reloads_and_leaves_nothing(locked):
    c = locked
    started = c.up()
    assert "mount namespace" in started.stdout, started.stdout
    assert (c.root.stat().st_mode & 0o777, c.root.parent.stat().st_mode & 0o777) == (0o700, 0o700)

    answers = [c.get() for _ in range(30)]
    assert [r.status_code for r in answers] == [200] * 30, [r.text for r in answers if r.status_code != 200]
    lazy = [r.json() for r in answers if r.json()["backend"] == "lazy"]
    assert lazy and all(a["helper"] == "read lazily" and a["text"] == "read at request time" for a in lazy)
    assert all(a["uid"] != 0 for a in lazy)

    workers = uwsgi_workers(c)
    assert len(workers) == 4, workers  # 2 vassals x 2 processes
    assert 0 not in workers.values(), workers

    for name in ("backend-1", "lazy"):
        before = c.worker_pids(name)
        with Load(c.url, clients=4) as load:
            load.wait_requests(50)
            path = c.vassals / f"{name}.ini"
            os.utime(path)
            mtime = path.stat().st_mtime_ns

            def reloaded(name=name, mtime=mtime, before=before) -> bool:
                b = c.state()["backends"].get(name, {})
                fresh = b.get("state") == "healthy" and b.get("served_mtime_ns", 0) >= mtime
                return fresh and name in c.state()["routed"] and not before & c.worker_pids(name)

            c.wait(reloaded, f"{name} reloaded by touch", 30)
            load.wait_requests(50)
        print(f"\ntouch-reload of {name} in a 0700 folder: {load.result.summary()}")
        assert load.result.failures == [], load.result.summary()
        assert {"backend-1", "lazy"} <= set(load.result.backends), load.result.summary()

    workers = uwsgi_workers(c)
    assert len(workers) == 4 and 0 not in workers.values(), workers  # the re-executed vassals too

    namespace = mount_namespace(c.pids()["supervisor"])
    assert namespace and namespace != mount_namespace(os.getpid())
    c.fleet("down")
    c.wait(lambda: not c.processes(), "no process of the cluster left", 30)
    assert in_namespace(namespace) == []  # so its mounts are gone with it
    assert " fleet " not in Path("/proc/self/mountinfo").read_text()  # none ever leaked out here
    assert not list((c.run_dir / "sockets").iterdir())
