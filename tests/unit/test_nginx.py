"""fleet.proxy.nginx: rendering the nginx.conf template (the parts that need no nginx)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.core.apps import DEFAULT
from fleet.errors import FleetError
from fleet.layout import Layout
from fleet.proxy import nginx
from fleet.proxy.apps import render_default

REPO = Path(__file__).resolve().parents[2]


def test_render_template_fills_tokens_with_or_without_spaces():
    out = nginx.render_template("listen {{listen}}:{{ port }}; {{port}}", {"listen": "0.0.0.0", "port": "80"})
    assert out == "listen 0.0.0.0:80; 80"


def test_render_template_leaves_other_braces_alone():
    assert nginx.render_template("location / { return 200; }", {}) == "location / { return 200; }"


def test_unknown_token_raises_naming_it():
    with pytest.raises(FleetError) as info:
        nginx.render_template("pid {{run}}/nginx.pid; {{nope}}", {"run": "/r"})
    assert "{{nope}}" in str(info.value)
    assert "['run']" in str(info.value)


@pytest.mark.parametrize("token", ["{{Port}}", "{{port2}}", "{{ listen-addr }}"])
def test_any_unknown_token_raises(token):
    with pytest.raises(FleetError):
        nginx.render_template(f"listen {token};", {"port": "80", "listen": "::"})


def test_shipped_template_renders_completely(tmp_path):
    layout = Layout(tmp_path)
    values = nginx.template_values(layout, 8080, "127.0.0.1")
    conf = nginx.render_template((REPO / "nginx" / "nginx.conf").read_text(), values)
    # The header comment mentions "{{...}}" itself; what nginx reads must have no token left.
    directives = [line.split("#", 1)[0] for line in conf.splitlines()]
    assert not [d for d in directives if "{{" in d or "}}" in d]
    assert "listen 127.0.0.1:8080;" in conf
    assert "client_max_body_size 100m;" in conf and "large_client_header_buffers 4 16k;" in conf
    assert f"pid {layout.run}/nginx.pid;" in conf
    assert f"include {layout.run}/nginx/upstreams.conf;" in conf
    # The default app's location moved to the generated apps-default.conf (fleet.proxy.apps).
    assert f"include {layout.run}/nginx/apps-default.conf;" in conf
    default = render_default((DEFAULT,), tmp_path)
    assert f"include {tmp_path}/nginx/uwsgi_params;" in default and "uwsgi_pass fleet;" in default


def test_template_values_user_line_is_a_directive_or_a_comment(tmp_path):
    user = nginx.template_values(Layout(tmp_path), 80, "0.0.0.0")["user"]
    assert (user.startswith("user ") and user.endswith(";")) or user.startswith("#")


def test_listen_addresses_are_the_sockets_nginx_would_open():
    conf = """
        listen 127.0.0.1:8080;  # a comment; listen 10.0.0.1:1;
        # listen 10.0.0.2:2;
        server { listen 127.0.0.2:8080; listen 127.0.0.1:8080 default_server; }
        listen [::1]:9000; listen 7000; listen *:7001; listen unix:/run/x.sock; listen 127.0.0.3;
    """
    assert nginx.listen_addresses(conf) == [
        ("127.0.0.1", 8080),
        ("127.0.0.2", 8080),
        ("::1", 9000),
        ("0.0.0.0", 7000),
        ("0.0.0.0", 7001),
        ("127.0.0.3", 80),
    ]


def test_beside_a_wildcard_an_address_has_a_socket_only_when_its_options_ask():
    conf = "listen 0.0.0.0:80; listen 127.0.0.2:80; listen 127.0.0.3:80 bind; listen 127.0.0.4:80 backlog=10;"
    conf += " listen [::]:80; listen [::1]:80; listen 127.0.0.5:81;"
    assert nginx.listen_addresses(conf) == [
        ("0.0.0.0", 80),
        ("127.0.0.3", 80),
        ("127.0.0.4", 80),
        ("::", 80),
        ("127.0.0.5", 81),
    ]


@pytest.mark.parametrize("listen", ["127.0.0.1", "0.0.0.0"])
def test_the_shipped_template_listens_without_reuseport_on_what_the_supervisor_binds(tmp_path, listen):
    values = nginx.template_values(Layout(tmp_path), 8080, listen)
    conf = nginx.render_template((REPO / "nginx" / "nginx.conf").read_text(), values)
    assert "reuseport" not in "".join(line.split("#", 1)[0] for line in conf.splitlines())
    status = [("127.0.0.2", 8080)] if listen == "127.0.0.1" else []  # through the wildcard otherwise
    assert nginx.listen_addresses(conf) == [(listen, 8080), *status]


def test_inherited_sockets_are_named_in_nginx_s_variable():
    assert nginx.inherited([3, 4]) == {"NGINX": "3;4;"}


def test_listeners_follow_the_includes_as_nginx_reads_them(tmp_path):
    # The HTTPS listener lives in an include; a server per host name includes the same listen line again.
    (tmp_path / "tls-server.conf").write_text("listen 127.0.0.1:8443 ssl http2;\n")
    (tmp_path / "hosts").mkdir()
    (tmp_path / "hosts" / "a.conf").write_text("server { include listen.conf; }\n")
    (tmp_path / "listen.conf").write_text("listen 127.0.0.3:8080;\n")  # relative to the main file's folder
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        "http { server { listen 127.0.0.1:8080; include tls-server.conf; }\n"
        f"  include {tmp_path}/hosts/*.conf; include absent.conf;  # include commented.conf;\n"
        "  server { listen 127.0.0.2:8080; } }\n"
    )
    want = [("127.0.0.1", 8080), ("127.0.0.1", 8443), ("127.0.0.2", 8080), ("127.0.0.3", 8080)]
    assert sorted(nginx.listeners(conf)) == want
