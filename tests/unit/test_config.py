"""fleet.config: every setting declared once; flag, then environment, then default; one line and exit 2 for a
bad value, for every command; the README's table generated from it; nothing else in fleet/ reads os.environ."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from fleet import cli, config
from fleet.config import SETTINGS, Limits
from fleet.core.settings import Settings
from fleet.swarm import edge

REPO = Path(__file__).resolve().parents[2]

# Every command of `fleet`, with the arguments it needs to get as far as its settings.
COMMANDS = {
    "up": [],
    "down": [],
    "status": [],
    "events": [],
    "add": ["x"],
    "rm": ["x"],
    "reload": ["--all"],
    "check": [],
    "supervise": [],
    "edge": [],
    "cell": [],
    "control-plane": [],
}

# A good value of every setting that is not its default, and what it parses to.
GOOD = {
    "port": ("9000", 9000),
    "listen": ("0.0.0.0", "0.0.0.0"),
    "admin_port": ("9100", 9100),
    "admin_listen": ("::1", "::1"),
    "max_body": ("10m", 10 << 20),
    "header_buffer": ("4k", 4 << 10),
    "read_timeout": ("5", 5),
    "max_processes": ("200", 200),
    "max_threads": ("8", 8),
    "user": ("nobody", "nobody"),
    "access_log": ("json", "json"),
    "file_watch": ("poll", "poll"),
    "static_max_age": ("0", 0),
    "uwsgi": (sys.executable, sys.executable),
    "up_timeout": ("30", 30.0),
    "timeout": ("2.5", 2.5),
    "start_timeout": ("90", 90.0),
    "reload_timeout": ("45", 45.0),
    "drain_wait": ("0", 0.0),
    "health_interval": ("0.5", 0.5),
    "emperors": ("3", 3),
    "cells": ("tasks.web", "tasks.web"),
    "cell_port": ("8000", 8000),
    "health_port": ("9090", 9090),
    "drain": ("1.5", 1.5),
    "https_port": ("9443", 9443),
    "tls_cert": ("/etc/ssl/site.crt", "/etc/ssl/site.crt"),
    "tls_key": ("/etc/ssl/site.key", "/etc/ssl/site.key"),
    "tls": ("local", "local"),
    "http_redirect": ("off", "off"),
}

# A bad value of every setting.
BAD = {
    "port": "abc",
    "listen": "not an address",
    "admin_port": "70000",
    "admin_listen": "",
    "max_body": "lots",
    "header_buffer": "64k",
    "read_timeout": "0",
    "max_processes": "many",
    "max_threads": "0",
    "user": "no body",
    "access_log": "xml",
    "file_watch": "fsevents",
    "static_max_age": "5m",
    "uwsgi": "/nonexistent/uwsgi",
    "up_timeout": "-1",
    "timeout": "soon",
    "start_timeout": "0",
    "reload_timeout": "nan",
    "drain_wait": "-2",
    "health_interval": "inf",
    "emperors": "9",
    "cells": "tasks..cell",
    "cell_port": "0",
    "health_port": "65536",
    "drain": "x",
    "https_port": "0",
    "tls_cert": "/etc/ssl/",
    "tls_key": "/etc/ssl/private/",
    "tls": "acme",
    "http_redirect": "yes",
}

PAIRS = [(s, c) for s in SETTINGS for c in s.commands]


def ids(pairs) -> list[str]:
    return [f"{s.name}-{c}" for s, c in pairs]


def test_every_setting_has_a_good_and_a_bad_example_here():
    assert set(GOOD) == set(BAD) == {s.name for s in SETTINGS}


def test_names_and_variables_are_declared_once_and_every_command_is_a_real_one():
    assert len({s.name for s in SETTINGS}) == len({s.env for s in SETTINGS}) == len(SETTINGS)
    assert all(s.env.startswith("FLEET_") and s.flag.startswith("--") for s in SETTINGS)
    assert set(config.COMMANDS) <= set(COMMANDS)
    for command in COMMANDS:  # no command takes one flag twice
        flags = [s.flag for s in config.of(command)]
        assert len(flags) == len(set(flags)), command


@pytest.mark.parametrize("setting, command", PAIRS, ids=ids(PAIRS))
def test_a_setting_comes_from_its_flag_then_the_environment_then_the_default(setting, command):
    text, value = GOOD[setting.name]
    assert getattr(config.resolve(command, {setting.name: text}, {}), setting.name) == value
    assert getattr(config.resolve(command, {}, {setting.env: text}), setting.name) == value
    flag_wins = config.resolve(command, {setting.name: text}, {setting.env: OTHER[setting.name]})
    assert getattr(flag_wins, setting.name) == value
    default = setting.default_for(command)
    resolved = getattr(config.resolve(command, {}, {}), setting.name)
    if default is not None:
        assert resolved == setting.parse(default)
    elif setting.derive is not None:
        assert resolved == setting.derive(vars(config.resolve(command, {}, {}))["_values"])
    else:
        assert resolved is None


# A second good value, different from GOOD's, to show the flag beats the environment.
OTHER = {name: text for name, (text, _) in GOOD.items()} | {
    "port": "9001",
    "static_max_age": "60",
    "listen": "127.0.0.2",
    "admin_port": "0",
    "admin_listen": "0.0.0.0",
    "max_body": "0",
    "header_buffer": "1k",
    "read_timeout": "7",
    "max_processes": "201",
    "max_threads": "9",
    "user": "root",
    "access_log": "combined",
    "file_watch": "inotify",
    "uwsgi": "/bin/sh",
    "up_timeout": "31",
    "timeout": "3",
    "start_timeout": "91",
    "reload_timeout": "46",
    "drain_wait": "1",
    "health_interval": "2",
    "emperors": "1",
    "cells": "tasks.other",
    "cell_port": "8001",
    "health_port": "9091",
    "drain": "2",
    "https_port": "9444",
    "tls_cert": "/srv/other.crt",
    "tls_key": "/srv/other.key",
    "tls": "off",
    "http_redirect": "on",
}


def test_the_other_values_differ_from_the_good_ones():
    assert all(OTHER[name] != text for name, (text, _) in GOOD.items())


def test_the_admin_port_of_fleet_up_is_the_port_plus_one_unless_set():
    assert config.resolve("up", {}, {}).admin_port == 8081
    assert config.resolve("up", {"port": "9000"}, {}).admin_port == 9001
    assert config.resolve("up", {}, {"FLEET_PORT": "65535"}).admin_port == 0  # no room for it
    assert config.resolve("up", {"port": "9000"}, {"FLEET_ADMIN_PORT": "7000"}).admin_port == 7000


def run(argv: list[str], env: dict[str, str], capsys) -> tuple[int, list[str]]:
    code = cli.main(argv, env=env)
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err.splitlines()


BAD_ENV = [(s, c) for s in SETTINGS for c in COMMANDS]


@pytest.mark.parametrize("setting, command", BAD_ENV, ids=ids(BAD_ENV))
def test_a_bad_variable_stops_every_command_with_one_line_naming_it(setting, command, capsys, tmp_path):
    bad = BAD[setting.name]
    argv = ["--root", str(tmp_path), command, *COMMANDS[command]]
    code, lines = run(argv, {setting.env: bad}, capsys)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith(f"fleet: {setting.env}={bad}: "), lines


@pytest.mark.parametrize("setting, command", PAIRS, ids=ids(PAIRS))
def test_a_bad_flag_stops_its_command_with_one_line_naming_it(setting, command, capsys, tmp_path):
    bad = BAD[setting.name]
    argv = ["--root", str(tmp_path), command, *COMMANDS[command], f"{setting.flag}={bad}"]
    code, lines = run(argv, {}, capsys)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith(f"fleet: {setting.flag}={bad}: "), lines


def test_the_message_says_what_is_wrong(capsys, tmp_path):
    code, lines = run(["--root", str(tmp_path), "status"], {"FLEET_PORT": "abc"}, capsys)
    assert (code, lines) == (2, ["fleet: FLEET_PORT=abc: not a TCP port (1-65535)"])


def test_the_parser_is_built_without_reading_the_environment(monkeypatch):
    for setting in SETTINGS:
        monkeypatch.setenv(setting.env, BAD[setting.name])
    for command, rest in COMMANDS.items():
        args = cli.parser().parse_args([command, *rest])  # no exception: the values are parsed later
        assert all(getattr(args, s.name) is None for s in config.of(command))


def test_a_flag_the_command_does_not_take_is_argparse_usage_error_exit_2():
    with pytest.raises(SystemExit) as stopped:
        cli.parser().parse_args(["status", "--port", "9000"])
    assert stopped.value.code == 2


def test_the_defaults_are_the_ones_the_code_declares():
    limits = config.resolve("up", {}, {}).limits
    assert limits == Limits()
    assert config.resolve("control-plane", {}, {}).control == Settings()
    cells = edge.EdgeSettings()
    values = config.resolve("edge", {}, {})
    assert (values.cells, values.cell_port, values.health_port) == (
        cells.cells_name,
        cells.cell_port,
        cells.health_port,
    )
    assert config.resolve("cell", {}, {}).drain == edge.default_drain_wait()
    from fleet.proxy import nginx

    assert set(config.BY_NAME["access_log"].parse.choices) == set(nginx.ACCESS_LOGS)  # type: ignore[attr-defined]


def test_the_control_plane_settings_are_built_from_the_values():
    env = {"FLEET_START_TIMEOUT": "90", "FLEET_DRAIN_WAIT": "0", "FLEET_HEALTH_INTERVAL": "0.5"}
    settings = config.resolve("control-plane", {"reload_timeout": "45"}, env).control
    assert (settings.start_timeout, settings.reload_timeout, settings.drain_wait) == (90.0, 45.0, 0.0)
    assert settings.health_interval == 0.5 and settings.tick == Settings().tick


def test_fleet_up_hands_the_control_plane_its_settings_on_its_command_line():
    values = config.resolve("up", {"port": "9000", "file_watch": "poll"}, {"FLEET_START_TIMEOUT": "90"})
    argv = values.argv("control-plane")
    pairs = dict(zip(argv[::2], argv[1::2], strict=True))
    assert pairs == {
        "--admin-port": "9001",
        "--admin-listen": "127.0.0.1",
        "--file-watch": "poll",
        "--start-timeout": "90",
        "--reload-timeout": "60",
        "--drain-wait": "2",
        "--health-interval": "1",
        "--emperors": "2",
        "--max-processes": "auto",
        "--max-threads": "64",
        "--static-max-age": "300",
    }
    assert config.resolve("control-plane", pairs_to_flags(pairs), {}).control.start_timeout == 90.0


def pairs_to_flags(pairs: dict[str, str]) -> dict[str, str]:
    by_flag = {s.flag: s.name for s in config.of("control-plane")}
    return {by_flag[flag]: text for flag, text in pairs.items()}


def test_a_cell_runs_fleet_up_with_every_setting_of_up_on_its_command_line(monkeypatch, tmp_path):
    from fleet.swarm import cell as edge_cell

    (tmp_path / "emperor.ini").write_text("")
    seen: list[list[str]] = []
    monkeypatch.setattr(edge_cell, "run", lambda layout, port, health, drain, up: seen.append(up) or 0)
    env = {"FLEET_MAX_BODY": "10m", "FLEET_CELL_DRAIN": "1"}
    assert cli.main(["--root", str(tmp_path), "cell", "--port", "9000"], env=env) == 0
    up = seen[0]
    assert up[:3] == ["up", "--component", "all"]
    pairs = dict(zip(up[3::2], up[4::2], strict=True))
    assert pairs["--port"] == "9000" and pairs["--max-body"] == "10m"
    assert pairs["--listen"] == "0.0.0.0" and pairs["--admin-port"] == "0"  # a cell's own defaults
    assert "--drain" not in pairs and "--health-port" not in pairs  # the cell's, not up's
    args = cli.parser().parse_args(up)  # `fleet up` takes every one of them
    assert config.resolve("up", vars(args), {}).max_body == 10 << 20


def test_the_readme_holds_the_generated_settings_table():
    readme = (REPO / "README.md").read_text()
    begin, end = "<!-- settings:begin -->\n", "\n<!-- settings:end -->"
    assert begin in readme and end in readme, "README.md lacks the settings markers"
    pasted = readme[readme.index(begin) + len(begin) : readme.index(end)]
    assert pasted.strip() == config.table(), "paste the output of `python -m fleet.config` between the markers"


def _reads_the_environment(tree: ast.AST) -> list[int]:
    """Lines that read os.environ or getenv, except copying it whole for a child (`dict(os.environ)`, `**`)."""
    copies: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
            copies.update(id(arg) for arg in node.args)
        if isinstance(node, ast.Dict):
            copies.update(id(value) for key, value in zip(node.keys, node.values, strict=True) if key is None)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "environb", "getenv", "getenvb"):
            if id(node) not in copies:
                found.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(a.name in ("environ", "environb", "getenv", "getenvb") for a in node.names):
                found.append(node.lineno)
    return found


def test_no_module_of_fleet_but_config_reads_the_environment():
    readers = {}
    for path in sorted((REPO / "fleet").rglob("*.py")):
        lines = _reads_the_environment(ast.parse(path.read_text(), str(path)))
        if lines and path != REPO / "fleet" / "config.py":
            readers[str(path.relative_to(REPO))] = lines
    assert readers == {}


def test_the_environment_check_catches_the_ways_of_reading_it():
    for source in (
        "os.environ.get('X')",
        "os.environ['X']",
        "os.getenv('X')",
        "from os import environ",
        "x = os.environ",
    ):
        assert _reads_the_environment(ast.parse(source)), source
    for source in ("env = dict(os.environ) | extra", "env = {**os.environ, 'A': 'b'}"):
        assert not _reads_the_environment(ast.parse(source)), source


def test_each_value_remembers_where_it_came_from():
    values = config.resolve("up", {"port": "9000"}, {"FLEET_USER": "nobody"})
    assert values.sources["port"] == "--port=9000"
    assert values.sources["user"] == "FLEET_USER=nobody"
    assert values.sources["max_body"] == "--max-body=100m (the default)"


def test_a_user_that_does_not_exist_is_named_with_its_source(monkeypatch):
    from fleet.errors import FleetError
    from fleet.ops import privileges

    monkeypatch.setattr(privileges.os, "geteuid", lambda: 0)
    monkeypatch.setattr(privileges.nginx, "worker_user", lambda: None)
    with pytest.raises(FleetError) as raised:
        privileges.drop_for("no-such-user-here", "FLEET_USER=no-such-user-here")
    assert str(raised.value).startswith("FLEET_USER=no-such-user-here: there is no such user")
    assert raised.value.exit_code == 2


def test_the_emperors_are_two_by_default_and_reach_the_control_planes_settings():
    assert config.resolve("up", {}, {}).emperors == 2
    assert config.resolve("up", {}, {"FLEET_EMPERORS": "1"}).control.emperors == 1
    assert "--emperors" in config.resolve("up", {}, {}).argv("control-plane")


@pytest.mark.parametrize("text", ["0", "9", "two"])
def test_a_count_of_emperors_out_of_1_to_8_is_refused(text):
    with pytest.raises(config.SettingError, match="FLEET_EMPERORS"):
        config.resolve("up", {}, {"FLEET_EMPERORS": text})
