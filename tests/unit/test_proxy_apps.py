"""fleet.proxy.apps: nginx's config for the apps (which server and location each app gets, and how)."""

from __future__ import annotations

import re
from pathlib import Path

from fleet.core.apps import DEFAULT, App
from fleet.proxy import apps

ROOT = Path("/c")
NGINX_DIR = ROOT / "run" / "nginx"
BLOG = App("blog", (), "/blog")
SHOP = App("shop", ("shop.example.com",), "/")
API = App("api", ("*.example.com",), "/api")
WIDE = App("wide", ("*.com",), "/")


def http(*a: App) -> str:
    return apps.render_http(a, lambda n: NGINX_DIR / "apps" / n / "upstreams.conf", NGINX_DIR, ROOT)


def servers(conf: str) -> dict[str, str]:
    """{server_name: body} of the servers in an apps.conf."""
    return {m.group(1): m.group(0) for m in re.finditer(r"server \{\n.*?server_name (\S+);.*?\n\}\n", conf, re.S)}


def test_the_default_app_alone_is_served_as_before_apps_on_every_host_at_the_root():
    default = apps.render_default((DEFAULT,), ROOT)
    assert "location / {" in default and "uwsgi_pass fleet;" in default
    assert "uwsgi_param PATH_INFO $document_uri;" in default and "SCRIPT_NAME" not in default
    assert "server {" not in http(DEFAULT) and "upstream" not in http(DEFAULT)


def test_an_app_under_a_path_gets_script_name_and_the_rest_as_path_info_and_a_redirect_for_the_bare_prefix():
    default = apps.render_default((DEFAULT, BLOG), ROOT)
    assert "location = /blog {\n    absolute_redirect off;\n    return 308 /blog/$is_args$args;" in default
    assert "uwsgi_param SCRIPT_NAME /blog;" in default and "uwsgi_param PATH_INFO $fleet_path_info_1;" in default
    assert '"~^/blog(?<fleet_rest_1>/.*)$" $fleet_rest_1;' in http(DEFAULT, BLOG)
    assert "upstream fleet_app_blog {\n    include /c/run/nginx/apps/blog/upstreams.conf;" in http(DEFAULT, BLOG)


def test_dots_in_a_path_are_literal_in_its_regex():
    assert r'"~^/v1\.0(?<fleet_rest_0>/.*)$"' in http(App("v1", (), "/v1.0"))


def test_locations_come_longest_path_first():
    conf = apps.render_default((DEFAULT, BLOG, App("deep", (), "/blog/admin")), ROOT)
    assert conf.index("location /blog/admin/ {") < conf.index("location /blog/ {") < conf.index("location / {")


def test_without_an_app_at_the_root_a_request_gets_a_json_404_naming_host_and_path():
    conf = apps.render_default((BLOG,), ROOT)
    assert re.search(
        r"location / \{\n.*return 404 '\{\"error\": \"no app serves this host and path\", "
        r"\"host\": \"\$fleet_json_host\", \"path\": \"\$fleet_json_path\"",
        conf,
        re.S,
    )
    # Shown only when it needs no escaping in JSON (a `"` in the URL must not break the document).
    assert '"~^[A-Za-z0-9/._~%!&\'()*+,;=:@-]*$" $uri;' in http(BLOG)


def test_a_host_names_server_holds_its_apps_then_the_wildcards_then_the_any_host_apps():
    conf = http(DEFAULT, BLOG, SHOP, API)
    found = servers(conf)
    assert set(found) == {"shop.example.com", "*.example.com"}
    # shop.example.com: shop takes / and so every path: /blog and /api are its, not the wider apps'.
    shop = found["shop.example.com"]
    assert "uwsgi_pass fleet_app_shop;" in shop and "fleet_app_blog" not in shop and "fleet_app_api" not in shop
    # *.example.com: api at /api, then the any-host apps for the rest.
    wild = found["*.example.com"]
    assert "location /api/" in wild and "location /blog/" in wild and "uwsgi_pass fleet;" in wild
    assert (
        f"include {NGINX_DIR}/listen.conf;" in wild
        and f"include {NGINX_DIR}/tls-server.conf;" in wild
        and f"include {NGINX_DIR}/server-errors.conf;" in wild
    )


def test_a_narrower_wildcard_falls_back_to_a_wider_one_before_any_host():
    chosen = apps.locations_for("*.example.com", (DEFAULT, API, WIDE))
    assert chosen == [API, WIDE]  # WIDE at / shadows the default app at /
    assert apps.locations_for("www.example.com", (DEFAULT, API, WIDE)) == [API, WIDE]
    assert apps.locations_for(None, (DEFAULT, API, WIDE)) == [DEFAULT]


def test_the_apps_rendered_are_read_back_from_the_file():
    table = (DEFAULT, BLOG, SHOP, App("s", (), "/s", "/static static"))
    assert apps.read_table(apps.render_default(table, ROOT)) == table
    assert apps.read_table("location / {}\n") is None
