"""Apps in the compose cluster: vassal files dropped on the host add an app by path and one by host name
beside the default app; a backend added to one app under keep-alive load on another loses nothing."""

from __future__ import annotations

import pytest
import requests

from harness.load import Load
from harness.wait import wait_for
from tests.e2e.compose import ComposeCluster

pytestmark = pytest.mark.e2e

DEADLINE = 60.0
HOST = "admin.example.test"


def backend_at(stack: ComposeCluster, path: str, host: str | None = None) -> str | None:
    headers = {"Connection": "close", **({"Host": host} if host else {})}
    try:
        r = requests.get(stack.url + path, headers=headers, timeout=10)
    except requests.RequestException:
        return None
    return r.json().get("backend") if r.status_code == 200 and r.headers["Content-Type"] == "application/json" else None


def test_apps_by_path_and_host_beside_the_default_app_and_a_backend_added_to_one_loses_nothing(
    stack: ComposeCluster,
) -> None:
    defaults = {path.stem for path in stack.vassals.glob("*.ini")}
    (stack.vassals / "api-1.ini").write_text("[uwsgi]\nprocesses = 1\n[fleet]\napp = api\npath = /api\n")
    (stack.vassals / "admin-1.ini").write_text(f"[uwsgi]\nprocesses = 1\n[fleet]\napp = admin\nhost = {HOST}\n")
    wait_for("the api app under /api", lambda: backend_at(stack, "/api/") == "api-1", DEADLINE, 0.2)
    wait_for("the admin app by host name", lambda: backend_at(stack, "/", HOST) == "admin-1", DEADLINE, 0.2)
    # The admin app takes its whole host, /api included (the example app has no /api: its own 404, not api-1).
    on_admin = requests.get(stack.url + "/api/", headers={"Host": HOST, "Connection": "close"}, timeout=10)
    assert on_admin.status_code == 404 and "no app serves" not in on_admin.text
    assert backend_at(stack, "/") in defaults
    with Load(stack.url, clients=4, keepalive=True) as load:
        wait_for("the load's first answers", lambda: load.ok >= 100, 30)
        (stack.vassals / "api-2.ini").write_text("[uwsgi]\nprocesses = 1\n[fleet]\napp = api\npath = /api\n")
        wait_for("api-2 answering", lambda: "api-2" in {backend_at(stack, "/api/") for _ in range(8)}, DEADLINE, 0)
        ok = load.ok
        wait_for("more answers", lambda: load.ok >= ok + 100, 30)
    assert load.result.failures == [], load.result.summary()
    assert set(load.result.backends) <= defaults, "the load on the default app stayed on it"
    for name in ("api-1", "api-2", "admin-1"):
        (stack.vassals / f"{name}.ini").unlink()
    wait_for("/api back to the default app", lambda: backend_at(stack, "/api/") is None, DEADLINE, 0.2)
