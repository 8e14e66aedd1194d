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
    assert "listen 127.0.0.1:8080 reuseport;" in conf
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
