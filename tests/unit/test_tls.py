"""HTTPS, the pure parts: which pair is served after each look (fleet/core/tls.py), the refusal reasons,
the settings that go together, nginx's generated includes, the status line, the local CA's names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fleet import config
from fleet.config import SettingError
from fleet.core.tls import FileId, Loaded, PairId, Watch, judge, needs_loading, reason
from fleet.layout import Layout
from fleet.ops import local_ca
from fleet.proxy import tls

A = PairId(FileId(1, 100, 10), FileId(2, 200, 20))
B = PairId(FileId(3, 100, 30), FileId(4, 200, 40))
HALF = PairId(FileId(3, 100, 30), FileId(2, 200, 20))  # the new cert beside the old key
GOOD = Loaded(None, "f" * 64, 2e9, "03EA")
NOW = 1.8e9


def test_a_changed_pair_is_loaded_only_once_it_stayed_the_same_for_one_look():
    w, load = needs_loading(Watch(seen=A, decided=A), HALF)
    assert not load  # the cert was just replaced: the key may follow
    w, load = needs_loading(w, B)
    assert not load  # the key followed: wait one more look
    w, load = needs_loading(w, B)
    assert load


def test_a_pair_already_decided_upon_is_not_loaded_again():
    w, load = needs_loading(Watch(seen=A, decided=A), A)
    assert not load


def test_the_first_look_waits_and_the_second_loads():
    w, load = needs_loading(Watch(), A)
    assert not load
    assert needs_loading(w, A)[1]


def test_a_good_new_pair_is_installed_and_names_its_serial():
    w, verdict = judge(Watch(seen=B, serving="e" * 64), B, GOOD, NOW)
    assert verdict is not None and verdict.install and "03EA" in verdict.message
    assert w.serving == "f" * 64 and w.decided == B and w.refused == ""


def test_the_pair_already_served_is_neither_installed_nor_announced():
    w, verdict = judge(Watch(seen=B, serving="f" * 64, refused="old", refused_at=1.0), B, GOOD, NOW)
    assert verdict is None and w.refused == "" and w.decided == B


def test_a_bad_pair_is_refused_with_its_reason_and_the_last_good_one_kept():
    w, verdict = judge(Watch(seen=B, serving="e" * 64), B, Loaded("it does not match"), NOW)
    assert verdict is not None and not verdict.install
    assert "it does not match" in verdict.message and "kept the last good one" in verdict.message
    assert w.serving == "e" * 64 and w.refused == "it does not match" and w.refused_at == NOW
    assert not needs_loading(w, B)[1]  # not loaded again until the files change


def test_an_expired_certificate_is_refused_and_one_near_its_end_is_served_with_a_warning():
    _, verdict = judge(Watch(), B, Loaded(None, "f" * 64, NOW - 1, "01"), NOW)
    assert verdict is not None and not verdict.install and "expired" in verdict.message
    _, verdict = judge(Watch(), B, Loaded(None, "f" * 64, NOW + 3 * 86400, "01"), NOW)
    assert verdict is not None and verdict.install and "expires in 3.0 days" in verdict.message


@pytest.mark.parametrize(
    "kind, detail, words",
    [
        ("missing-cert", "", "/c.pem: no such file"),
        ("unreadable-key", "Permission denied", "/k.pem: cannot be read (Permission denied)"),
        ("ssl", "[X509: KEY_VALUES_MISMATCH] key values mismatch (_ssl.c:3926)", "is not the key of /c.pem"),
        ("ssl", "[SSL] PEM lib (_ssl.c:3926)", "is not a PEM certificate"),
        ("ssl", "[SSL: BAD_DECRYPT] bad decrypt", "without a passphrase"),
    ],
)
def test_refusal_reasons_name_the_file_and_what_to_do(kind, detail, words):
    assert words in reason(kind, detail, "/c.pem", "/k.pem")


# ---- settings


def test_the_certificate_needs_its_key_and_the_other_way_round():
    for flags, missing in (({"tls_cert": "/c"}, "--tls-key"), ({"tls_key": "/k"}, "--tls-cert")):
        with pytest.raises(SettingError, match=missing):
            config.check_https(config.resolve("up", flags, {}))


def test_tls_local_with_a_given_certificate_is_refused():
    values = config.resolve("up", {"tls": "local", "tls_cert": "/c", "tls_key": "/k"}, {})
    with pytest.raises(SettingError, match="drop --tls-cert"):
        config.check_https(values)


def test_the_https_port_may_not_be_the_http_or_admin_port():
    with pytest.raises(SettingError, match="FLEET_PORT=9000"):
        config.check_https(config.resolve("up", {"tls": "local", "https_port": "9000"}, {"FLEET_PORT": "9000"}))
    with pytest.raises(SettingError, match="admin"):
        config.check_https(config.resolve("up", {"tls": "local", "https_port": "8081"}, {}))


def test_without_https_the_https_port_is_not_checked_and_an_empty_variable_means_none():
    values = config.resolve("up", {"https_port": "8080"}, {"FLEET_TLS_CERT": "", "FLEET_TLS_KEY": ""})
    config.check_https(values)
    assert values.tls_cert is None and values.https_port == 8080


def test_the_control_plane_is_handed_the_pair_on_its_command_line():
    values = config.resolve("up", {"tls_cert": "/c.pem", "tls_key": "/k.pem"}, {})
    argv = values.argv("control-plane")
    assert argv[argv.index("--tls-cert") + 1] == "/c.pem" and argv[argv.index("--tls-key") + 1] == "/k.pem"


# ---- nginx's includes


def test_without_https_the_includes_are_comments():
    layout = Layout(Path("/srv/fleet"))
    for text in (tls.render_http(layout, None), tls.render_server("127.0.0.1", None)):
        assert all(line.startswith("#") for line in text.splitlines())


def test_the_certificate_path_holds_a_variable_so_nginx_reads_it_per_handshake_and_tls_is_12_and_13_only():
    text = tls.render_http(Layout(Path("/srv/fleet")), tls.Https(8443))
    assert 'default "/srv/fleet/run/tls/serving.pem";' in text
    assert "ssl_certificate $fleet_tls_pem;" in text and "ssl_certificate_key $fleet_tls_pem;" in text
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text
    assert "Strict-Transport-Security" not in text


def test_the_https_listener_has_http2_and_http_answers_308_to_the_same_url():
    text = tls.render_server("127.0.0.1", tls.Https(8443))
    assert "listen 127.0.0.1:8443 ssl http2;" in text and "reuseport" not in text
    assert "return 308 https://$host:8443$request_uri;" in text
    assert "https://$host$request_uri" in tls.render_server("0.0.0.0", tls.Https(443))  # the default port unsaid
    assert "308" not in tls.render_server("127.0.0.1", tls.Https(8443, redirect=False))


# ---- status


def test_the_status_line_names_the_serial_and_a_refusal():
    line = tls.TlsStatus("/c.pem", "03EA", 2e9, "the key does not match").describe()
    assert "serving serial 03EA until 2033-05-18" in line and "REFUSED the new pair: the key does not match" in line


# ---- the local CA's names


def test_the_local_certificate_names_loopback_and_every_app_host_once(tmp_path):
    (tmp_path / "emperor.ini").write_text("")
    (tmp_path / "vassals").mkdir()
    (tmp_path / "vassals" / "blog.ini").write_text(
        "[uwsgi]\nprocesses = 1\n[fleet]\nhost = Blog.example.com *.shop.test\n"
    )
    (tmp_path / "vassals" / "api.ini").write_text("[fleet]\napp = api\nhost = blog.example.com ; the same\n")
    hosts = local_ca.app_hosts(Layout(tmp_path))
    assert hosts == ["*.shop.test", "blog.example.com"]
    assert local_ca.names_for(hosts) == ["localhost", "127.0.0.1", "::1", "*.shop.test", "blog.example.com"]
    assert local_ca._san(["localhost", "127.0.0.1", "::1"]) == "DNS:localhost,IP:127.0.0.1,IP:::1"


# ---- compose


@pytest.mark.parametrize("name", ["docker-compose.tls.yml", "docker-stack.tls.yml"])
def test_the_tls_overrides_set_only_settings_of_the_table_and_publish_https(name):
    text = (Path(__file__).resolve().parents[2] / name).read_text()
    variables = set(re.findall(r"^\s+(FLEET_[A-Z_]+):", text, re.MULTILINE))
    assert variables == {"FLEET_TLS_CERT", "FLEET_TLS_KEY", "FLEET_HTTPS_PORT", "FLEET_HTTP_REDIRECT"}
    assert variables <= {s.env for s in config.SETTINGS}
    if name.startswith("docker-compose"):  # compose: the host's loopback only
        assert '- "127.0.0.1:${FLEET_HTTPS_PORT:-8443}:${FLEET_HTTPS_PORT:-8443}"' in text
    else:  # Swarm: the node's port, host mode (no routing mesh here)
        assert "published: ${FLEET_HTTPS_PORT:-8443}" in text and "mode: host" in text
