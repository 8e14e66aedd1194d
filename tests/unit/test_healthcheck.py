"""fleet.healthcheck: `fleet-healthcheck PART`, the one health check of every image."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time

import pytest

from fleet import healthcheck
from harness.ports import free_port
from tests.unit.conftest import sending_once


@pytest.fixture
def http_answer():
    """A loopback HTTP server answering every GET with (status, body); yields a function that starts one."""
    servers = []

    def start(status: int, body: str) -> int:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def state_file(root, age: float) -> None:
    (root / "run").mkdir(exist_ok=True)
    (root / "run" / "state.json").write_text(json.dumps({"written_at": time.time() - age}))


def test_a_cell_is_healthy_when_its_health_port_says_alive(http_answer, tmp_path, capsys):
    port = http_answer(200, '{"alive": "yes"}')
    assert healthcheck.main(["--root", str(tmp_path), "cell", str(port)]) == 0
    assert capsys.readouterr().out == '{"alive": "yes"}\n'


def test_a_cell_that_has_not_served_yet_is_unhealthy(http_answer, tmp_path, capsys):
    port = http_answer(503, '{"alive": "not yet: it has not served"}')
    assert healthcheck.main(["cell", str(port)]) == 1
    assert capsys.readouterr().out.startswith("unhealthy: 503 ")


def test_an_edge_whose_nginx_does_not_answer_is_unhealthy(capsys):
    assert healthcheck.main(["edge", str(free_port())]) == 1
    assert "unhealthy: " in capsys.readouterr().out


@pytest.mark.parametrize("status", [200, 308, 503])
def test_a_gateway_answering_200_its_https_redirect_or_its_own_503_with_a_fresh_state_file_is_healthy(
    http_answer, tmp_path, status
):
    state_file(tmp_path, age=1.0)
    assert healthcheck.main(["--root", str(tmp_path), "gateway", str(http_answer(status, "{}"))]) == 0


def test_a_gateway_answering_502_is_unhealthy(http_answer, tmp_path):
    state_file(tmp_path, age=1.0)
    assert healthcheck.main(["--root", str(tmp_path), "gateway", str(http_answer(502, "bad gateway"))]) == 1


def test_a_gateway_whose_control_plane_stopped_publishing_is_unhealthy(http_answer, tmp_path, capsys):
    state_file(tmp_path, age=healthcheck.STATE_MAX_AGE + 5)
    assert healthcheck.main(["--root", str(tmp_path), "gateway", str(http_answer(200, "{}"))]) == 1
    assert "has not published for" in capsys.readouterr().out


def test_the_emperor_is_healthy_when_its_stats_socket_answers(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "emperor.sock"
    with sending_once(path, b'{"vassals": [{"id": "a.ini"}, {"id": "b.ini"}]}'):
        assert healthcheck.main(["--root", str(tmp_path), "emperor"]) == 0
    assert capsys.readouterr().out == "emperor answers, 2 vassals\n"


def test_every_recorded_emperor_must_answer_on_its_own_stats_socket(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    pids = {"emperor-1": 10, "emperor-2": 11, "supervisor": 9}
    (run / "processes-emperor.json").write_text(json.dumps({"pids": pids}))
    with (
        sending_once(run / "emperor-1.sock", b'{"vassals": [{"id": "a.ini"}]}'),
        sending_once(run / "emperor-2.sock", b'{"vassals": []}'),
    ):
        assert healthcheck.main(["--root", str(tmp_path), "emperor"]) == 0
    assert capsys.readouterr().out == "emperor-1 answers, 1 vassals; emperor-2 answers, 0 vassals\n"


def test_one_emperor_of_several_down_makes_the_container_unhealthy(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "processes-emperor.json").write_text(json.dumps({"pids": {"emperor-1": 10, "emperor-2": 11}}))
    with sending_once(run / "emperor-1.sock", b'{"vassals": []}'):
        assert healthcheck.main(["--root", str(tmp_path), "emperor"]) == 1  # emperor-2 has no socket
    assert "unhealthy" in capsys.readouterr().out


def test_an_emperor_without_its_socket_is_unhealthy(tmp_path):
    assert healthcheck.main(["--root", str(tmp_path), "emperor"]) == 1


@pytest.mark.parametrize("argv", [[], ["nginx"], ["cell", "x"], ["cell", "1", "2"]])
def test_anything_else_is_a_usage_error(argv, capsys):
    assert healthcheck.main(argv) == 2
    assert capsys.readouterr().err.startswith("usage: fleet-healthcheck ")


def test_the_check_imports_nothing_of_fleet_beyond_itself():
    # Docker runs it every 2 s in every container: it must stay a Python start-up and one request.
    code = "import sys, fleet.healthcheck; print(sorted(m for m in sys.modules if m.startswith('fleet')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['fleet', 'fleet.healthcheck']"
