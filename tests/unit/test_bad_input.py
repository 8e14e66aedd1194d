"""Bad input at the operator's commands and the control plane's scan: names that are paths, a second
`fleet up`, OSErrors, an unlistable vassals/ -- each answered in one line, nothing touched."""

from __future__ import annotations

import errno
import io
import logging
from pathlib import Path

import pytest

from fleet import cli, config
from fleet.control.observe import ClusterObserver
from fleet.core.settings import Settings
from fleet.errors import AlreadyRunning, FleetError, InvalidVassal, describe
from fleet.layout import Layout
from fleet.ops import commands
from fleet.ops.lock import ClusterLock


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    (tmp_path / "emperor.ini").write_text("[uwsgi]\n")
    (tmp_path / "vassals").mkdir()
    (tmp_path / "vassals" / "web-1.ini").write_text("[uwsgi]\n")
    (tmp_path / "x.ini").write_text("[uwsgi]\n")
    return Layout(tmp_path)


# ---- names checked everywhere --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../emperor", "../x", "/etc/passwd", "..", "web-1/../web-1", "", "emperor"])
def test_a_name_that_is_a_path_or_reserved_is_refused_before_anything(layout, name, monkeypatch):
    monkeypatch.setattr(commands, "_require_running", lambda _layout: pytest.fail("got past the name check"))
    for call in (
        lambda: commands.rm(layout, name, 1),
        lambda: commands.reload(layout, [name], False, 1),
        lambda: commands.reload(layout, ["web-1", name], False, 1),
        lambda: commands.add(layout, name, None, 1),
    ):
        with pytest.raises(InvalidVassal) as raised:
            call()
        assert "\n" not in str(raised.value)


def test_a_valid_name_without_a_file_is_no_backend(layout, monkeypatch):
    monkeypatch.setattr(commands, "_require_running", lambda _layout: pytest.fail("got past the name check"))
    with pytest.raises(InvalidVassal, match="there is no backend nosuch"):
        commands.rm(layout, "nosuch", 1)
    (layout.vassals / "dir.ini").mkdir()
    with pytest.raises(InvalidVassal, match="there is no backend dir"):
        commands.reload(layout, ["dir"], False, 1)


def test_cli_gives_one_line_and_a_non_zero_exit(layout, capsys):
    before = layout.emperor_ini.stat().st_mtime_ns
    for argv in (["rm", "../emperor"], ["reload", "../emperor"], ["reload", "../x"]):
        assert cli.main(["--root", str(layout.root), *argv]) != 0
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "not a valid vassal name" in err, err
    assert layout.emperor_ini.stat().st_mtime_ns == before
    assert (layout.root / "x.ini").exists()


# ---- fleet rm that cannot finish leaves no drain request behind ------------------------------------------


def test_rm_that_cannot_delete_the_file_withdraws_its_drain_request(layout, monkeypatch):
    monkeypatch.setattr(commands, "_require_running", lambda _layout: None)
    monkeypatch.setattr(commands, "_wait", lambda *_args: None)
    target = layout.vassal_file("web-1")
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self == target:
            raise PermissionError(errno.EROFS, "Read-only file system", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(FleetError) as raised:
        commands.rm(layout, "web-1", 1, out=io.StringIO())
    message = str(raised.value)
    assert str(target) in message and "read-only" in message and "back into nginx" in message
    assert not (layout.drain_dir / "web-1").exists()
    assert target.exists()


def test_rm_interrupted_while_draining_withdraws_its_drain_request(layout, monkeypatch):
    monkeypatch.setattr(commands, "_require_running", lambda _layout: None)

    def timeout(*_args) -> None:
        raise FleetError("timed out")

    monkeypatch.setattr(commands, "_wait", timeout)
    with pytest.raises(FleetError, match="timed out"):
        commands.rm(layout, "web-1", 1, out=io.StringIO())
    assert not (layout.drain_dir / "web-1").exists()
    assert layout.vassal_file("web-1").exists()


# ---- I/O errors are answers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        (errno.EACCES, "writable"),
        (errno.EROFS, "read-only"),
        (errno.ENOSPC, "disk is full"),
        (errno.ENOTDIR, "not a folder"),
        (errno.EIO, "check the path"),
    ],
)
def test_describe_names_the_path_and_what_to_do(code, fix):
    text = describe(OSError(code, "Some error", "/srv/fleet/vassals/x.ini"))
    assert text.startswith("/srv/fleet/vassals/x.ini: some error: ")
    assert fix in text and "\n" not in text


def test_cli_answers_an_oserror_in_one_line(layout, capsys):
    layout.vassals.rename(layout.root / "vassals.away")
    layout.vassals.write_text("a file where the folder belongs\n")
    assert cli.main(["--root", str(layout.root), "check"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(layout.vassals) in err and "not a folder" in err, err


# ---- one cluster per folder ----------------------------------------------------------------------------


def test_a_second_lock_names_the_holder_and_changes_nothing(layout):
    first = ClusterLock(layout, ("emperor", "nginx", "control"))
    first.acquire()
    first.record(4242, 8080, "127.0.0.1")
    try:
        for parts in (("emperor", "nginx", "control"), ("emperor",), ("nginx", "control")):
            with pytest.raises(AlreadyRunning) as raised:
                ClusterLock(layout, parts).acquire()
            assert "pid 4242, port 8080" in str(raised.value)
        assert "4242" in (layout.run / "up-control.lock").read_text()
    finally:
        first.release()
    again = ClusterLock(layout, ("emperor", "nginx", "control"))
    again.acquire()  # released with its holder's descriptors: no stale lock
    again.release()


def test_compose_components_lock_different_parts(layout):
    emperor, gateway = ClusterLock(layout, ("emperor",)), ClusterLock(layout, ("nginx", "control"))
    emperor.acquire()
    gateway.acquire()
    emperor.release()
    gateway.release()


# ---- the control plane and an unlistable vassals/ ------------------------------------------------------


def test_an_unlistable_vassals_folder_keeps_what_was_wanted_and_is_logged_once(layout, caplog):
    observer = ClusterObserver(layout, Settings(), lambda: frozenset())
    wanted = observer.wanted()
    assert set(wanted.files) == {"web-1"}
    layout.vassals.rename(layout.root / "vassals.away")
    layout.vassals.write_text("not a folder\n")
    with caplog.at_level(logging.INFO, logger="fleet.control"):
        for _ in range(20):
            assert observer.wanted().files == wanted.files
        layout.vassals.unlink()
        (layout.root / "vassals.away").rename(layout.vassals)
        for _ in range(5):
            assert observer.wanted().files == wanted.files
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot list the vassal files" in m for m in messages) == 1, messages
    assert sum("can be listed again" in m for m in messages) == 1, messages
    assert not any(r.exc_info for r in caplog.records)


# ---- the caps setting ----------------------------------------------------------------------------------


def test_the_caps_default_to_the_machine_and_come_from_flag_or_environment():
    chosen = config.resolve("up", {}, env={})
    assert chosen.max_processes == max(16, 4 * config.cores()) and chosen.max_threads == 64
    assert config.resolve("check", {}, env={"FLEET_MAX_PROCESSES": "200"}).max_processes == 200
    assert config.resolve("add", {"max_threads": "8"}, env={"FLEET_MAX_THREADS": "100"}).max_threads == 8
    assert config.resolve("control-plane", {"max_processes": "7"}, env={}).caps == commands.vassals.Caps(7, 64)
    with pytest.raises(FleetError, match="FLEET_MAX_THREADS"):
        config.resolve("check", {}, env={"FLEET_MAX_THREADS": "0"})


def test_up_hands_the_caps_to_the_launcher_and_the_control_plane():
    values = config.resolve("up", {"max_processes": "7", "max_threads": "3"}, env={})
    assert values.caps_environment() == {"FLEET_MAX_PROCESSES": "7", "FLEET_MAX_THREADS": "3"}
    argv = values.argv("control-plane")
    assert argv[argv.index("--max-processes") + 1] == "7" and argv[argv.index("--max-threads") + 1] == "3"


def test_check_applies_the_running_clusters_caps_unless_a_flag_says_otherwise():
    recorded = {"FLEET_MAX_PROCESSES": "5", "FLEET_MAX_THREADS": "2"}
    shell = config.resolve("check", {}, env={"FLEET_MAX_PROCESSES": "500"})
    assert shell.under(recorded).caps == commands.vassals.Caps(5, 2)
    flagged = config.resolve("check", {"max_processes": "9"}, env={})
    assert flagged.under(recorded).caps == commands.vassals.Caps(9, 2)
    assert shell.under({}).caps == commands.vassals.Caps(500, 64)


def test_a_write_that_fails_leaves_no_temp_file(tmp_path, monkeypatch):
    from fleet import layout as layout_module

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(layout_module.os, "fsync", full)
    with pytest.raises(OSError):
        layout_module.write_atomically(tmp_path / "web-3.ini", "[uwsgi]\n")
    assert list(tmp_path.iterdir()) == []


def test_add_refuses_processes_above_the_cap_before_writing(layout, monkeypatch):
    monkeypatch.setattr(commands, "_require_running", lambda _layout: pytest.fail("got past the file check"))
    with pytest.raises(InvalidVassal, match="above the limit of 16 processes"):
        commands.add(layout, "web-3", 100000, 1, caps=commands.vassals.Caps(processes=16, threads=64))
    assert not layout.vassal_file("web-3").exists()
