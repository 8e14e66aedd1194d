"""fleet.vassalfile.vassals: which files are vassals, and what is wrong with one."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import pytest

from fleet.vassalfile import vassals
from fleet.vassalfile.vassals import Option, Problem, VassalFile

KNOWN = frozenset({"processes", "workers", "threads", "listen", "module", "master", "harakiri", "chdir"})


def parse(text: str | bytes, name: str = "backend-1.ini", **kwargs) -> VassalFile:
    content = text.encode() if isinstance(text, str) else text
    return vassals.parse(Path("vassals") / name, content, **kwargs)


def only_problem(vf: VassalFile) -> Problem:
    assert len(vf.problems) == 1, vf.problems
    return vf.problems[0]


# ---- file names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filename", [".x.ini", "x.ini~", ".x.ini.swp", "x.ini.tmp", "x.conf", ".ini", "x.ini.bak", "ini"]
)
def test_editor_backup_and_temp_files_are_not_vassals(filename):
    assert not vassals.is_vassal_filename(filename)


@pytest.mark.parametrize("filename", ["backend-1.ini", "a.ini", "api_v2.ini"])
def test_visible_ini_files_are_vassals(filename):
    assert vassals.is_vassal_filename(filename)


def test_the_atomic_write_temp_name_is_not_a_vassal():
    # layout.write_atomically names its temp file `.NAME.PID.tmp`; the Emperor must never see it.
    assert not vassals.is_vassal_filename(".backend-1.ini.1234.tmp")


# ---- names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["backend-1", "a", "0", "api_v2", "b--_x"])
def test_valid_names(name):
    assert vassals.is_valid_name(name)
    assert vassals.name_problem(name) is None


@pytest.mark.parametrize("name", ["", "Backend", "-x", "_x", "a b", "a.b", "x/y", "ümlaut", "a\n"])
def test_invalid_names(name):
    assert not vassals.is_valid_name(name)
    assert vassals.name_problem(name) is not None


@pytest.mark.parametrize(
    "name, suggestion",
    [("Backend 1", "backend-1"), ("my.api", "my-api"), ("-x-", "x"), ("___", "backend"), ("A_B", "a_b")],
)
def test_name_problem_suggests_a_valid_name(name, suggestion):
    problem = vassals.name_problem(name)
    assert problem is not None
    assert vassals.NAME_PATTERN in problem.message
    assert problem.fix == f"rename the file to {suggestion}.ini"
    assert vassals.is_valid_name(suggestion)


def test_parse_reports_a_bad_file_name():
    vf = parse("[uwsgi]\n", name="My Backend.ini")
    assert vf.name == "My Backend"
    assert "rename the file to my-backend.ini" in only_problem(vf).fix


# ---- syntax -----------------------------------------------------------------------------------------


def test_empty_file_is_a_valid_backend_with_every_default():
    vf = parse("")
    assert vf.valid
    assert vf.options == ()
    assert vf.name == "backend-1"


def test_comment_only_file_is_valid():
    vf = parse("; nothing here\n# nor here\n\n   ; indented comment\n")
    assert vf.valid
    assert vf.options == ()


def test_options_are_read_in_order_with_line_numbers():
    vf = parse("; c\n[uwsgi]\nprocesses = 4\n  threads=2  \n")
    assert vf.valid
    assert vf.options == (Option("processes", "4", 3), Option("threads", "2", 4))


def test_crlf_line_endings_are_accepted():
    vf = parse("[uwsgi]\r\nprocesses = 3\r\n")
    assert vf.valid
    assert vf.get("processes") == "3"


def test_non_utf8_content_is_a_problem():
    problem = only_problem(parse(b"[uwsgi]\nprocesses = \xff\xfe\n"))
    assert "not a text file" in problem.message
    assert "byte 20 is not UTF-8" in problem.message  # len("[uwsgi]\nprocesses = ")


@pytest.mark.parametrize(
    "content",
    [bytes(range(256)), b"\x7fELF\x02\x01\x01\x00\x00\x00", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"],
)
def test_binary_content_is_a_problem(content):
    assert not parse(content).valid


def test_control_characters_are_a_problem_with_the_line():
    problem = only_problem(parse("[uwsgi]\nprocesses = 2\x00\n"))
    assert problem.line == 2
    assert "control characters" in problem.message


def test_oversized_file_is_a_problem():
    problem = only_problem(parse(b"; x\n" * 20_000))
    assert "bytes" in problem.message


def test_line_without_equals_is_a_problem_with_its_line_number():
    problem = only_problem(parse("[uwsgi]\nprocesses = 2\nmaster\n"))
    assert problem.line == 3
    assert "'master' is not a `key = value` line" in problem.message
    assert "master = true" in problem.fix


def test_garbage_text_is_a_problem():
    vf = parse("hello world\nthis is not ini\n")
    assert not vf.valid
    assert [p.line for p in vf.problems] == [1, 2]


def test_bad_section_header_is_a_problem():
    vf = parse("[uwsgi\nprocesses = 2\n")
    assert vf.problems[0].line == 1
    assert "bad section header '[uwsgi'" in vf.problems[0].message
    assert vf.problems[0].fix == "write [uwsgi]"


def test_bad_option_name_is_a_problem():
    problem = only_problem(parse("[uwsgi]\n-x = 1\n"))
    assert problem.line == 2


def test_option_outside_a_section_is_a_problem():
    problem = only_problem(parse("processes = 2\n[uwsgi]\n"))
    assert problem.line == 1
    assert "outside any section" in problem.message
    assert "[uwsgi]" in problem.fix


def test_file_with_only_another_section_is_a_problem():
    problem = only_problem(parse("[other]\nprocesses = 2\n"))
    assert "no [uwsgi] section (found [other])" in problem.message
    assert problem.line is None
    assert problem.fix == "rename the section to [uwsgi]"


def test_options_of_other_sections_are_ignored():
    vf = parse("[uwsgi]\nprocesses = 2\n[other]\nsocket = /tmp/x.sock\n")
    assert vf.valid
    assert vf.options == (Option("processes", "2", 2),)


# ---- option checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["socket", "uwsgi-socket", "uwsgi_socket", "http", "http-socket", "stats", "stats-server", "logto"]
)
def test_fleet_owned_options_are_a_problem_with_the_line(key):
    problem = only_problem(parse(f"[uwsgi]\nprocesses = 2\n{key} = /tmp/x\n"))
    assert problem.line == 3
    assert "managed by fleet" in problem.message
    assert f"`{key}`" in problem.message
    assert problem.fix == "remove this line"


@pytest.mark.parametrize(
    "key",
    [
        "https-socket",
        "ssl-socket",
        "raw-socket",
        "puwsgi-socket",
        "suwsgi-socket",
        "fastcgi-nph-socket",
        "scgi-nph-socket",
        "logto2",
        "daemonize",
    ],
)
def test_other_socket_and_log_options_are_managed_by_fleet(key):
    vf = parse(f"[uwsgi]\n{key} = /tmp/x\n")
    assert any("managed by fleet" in p.message for p in vf.problems)


def test_unknown_option_suggests_the_closest_known_one():
    problem = only_problem(parse("[uwsgi]\nproceses = 2\n", known_options=KNOWN))
    assert problem.line == 2
    assert "unknown uWSGI option `proceses`" in problem.message
    assert problem.fix == "did you mean `processes`?"


def test_unknown_option_without_a_close_match_points_at_the_help():
    problem = only_problem(parse("[uwsgi]\nzzzzzz = 1\n", known_options=KNOWN))
    assert "uwsgi --help" in problem.fix


def test_unknown_options_are_not_checked_without_known_options():
    assert parse("[uwsgi]\nproceses = 2\n").valid


def test_underscores_in_option_names_count_as_dashes():
    assert parse("[uwsgi]\nmax_requests = 100\n", known_options={"max-requests"}).valid


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5", "", "2 workers"])
@pytest.mark.parametrize("key", ["processes", "workers", "threads", "listen"])
def test_counts_must_be_positive_whole_numbers(key, value):
    problem = only_problem(parse(f"[uwsgi]\n{key} = {value}\n"))
    assert problem.line == 2
    assert "positive whole number" in problem.message
    assert repr(value) in problem.message


@pytest.mark.parametrize("value", ["²", "١"])
def test_non_ascii_digits_are_not_a_count(value):
    vf = parse(f"[uwsgi]\nprocesses = {value}\n")
    assert not vf.valid


def test_a_positive_count_is_valid():
    assert parse("[uwsgi]\nprocesses = 8\nthreads = 1\n", known_options=KNOWN).valid


def test_line_numbers_count_newlines_only():
    vf = parse("[uwsgi]\n; form feed \x0c here\nsocket = /tmp/x\n")
    assert [p.line for p in vf.problems] == [3]


# ---- module check -----------------------------------------------------------------------------------


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    return app


def test_default_module_must_exist(app_dir):
    problem = only_problem(parse("", app_dir=app_dir))
    assert "module `wsgi` not found: there is no app/wsgi.py" in problem.message
    assert problem.line is None


def test_missing_module_is_a_problem_on_its_line(app_dir):
    problem = only_problem(parse("[uwsgi]\nmodule = nosuch:app\n", app_dir=app_dir))
    assert "module `nosuch` not found" in problem.message
    assert problem.line == 2


def test_module_present_is_valid(app_dir):
    (app_dir / "wsgi.py").write_text("app = None\n")
    assert parse("[uwsgi]\nmodule = wsgi\n", app_dir=app_dir).valid
    assert parse("[uwsgi]\nmodule = wsgi:app\n", app_dir=app_dir).valid
    assert parse("", app_dir=app_dir).valid


def test_package_module_is_valid(app_dir):
    (app_dir / "pkg" / "sub").mkdir(parents=True)
    (app_dir / "pkg" / "__init__.py").write_text("")
    (app_dir / "pkg" / "sub" / "__init__.py").write_text("")
    (app_dir / "pkg" / "web.py").write_text("")
    assert parse("[uwsgi]\nmodule = pkg\n", app_dir=app_dir).valid
    assert parse("[uwsgi]\nmodule = pkg.web:app\n", app_dir=app_dir).valid
    assert parse("[uwsgi]\nmodule = pkg.sub\n", app_dir=app_dir).valid
    assert not parse("[uwsgi]\nmodule = pkg.missing\n", app_dir=app_dir).valid


def test_module_that_is_not_a_python_name_is_a_problem(app_dir):
    problem = only_problem(parse("[uwsgi]\nmodule = my-app\n", app_dir=app_dir))
    assert "not a Python module name" in problem.message


def test_module_check_is_skipped_when_the_vassal_points_elsewhere(app_dir):
    assert parse("[uwsgi]\nchdir = /srv/other\n", app_dir=app_dir).valid
    assert parse("[uwsgi]\nwsgi-file = /srv/other/app.py\n", app_dir=app_dir).valid


# ---- values -----------------------------------------------------------------------------------------


def test_get_returns_the_last_value_like_uwsgi():
    vf = parse("[uwsgi]\nprocesses = 2\nthreads = 4\nprocesses = 3\n")
    assert vf.get("processes") == "3"
    assert vf.get("threads") == "4"
    assert vf.get("harakiri") is None
    assert vf.get("harakiri", "30") == "30"


def test_values_keep_inner_equals_signs():
    vf = parse("[uwsgi]\nenv = KEY=value\n")
    assert vf.get("env") == "KEY=value"


def test_problem_format_includes_file_line_and_fix():
    problem = Problem("bad thing", "do this", 7)
    assert problem.format("vassals/b.ini") == "vassals/b.ini:7: bad thing\n    fix: do this"
    assert Problem("bad", "fix it").format(Path("v/b.ini")) == "v/b.ini: bad\n    fix: fix it"


def test_reason_is_the_first_problem_on_one_line():
    vf = parse("[uwsgi]\nprocesses = 0\nsocket = x\n")
    assert len(vf.problems) == 2
    assert vf.reason().startswith("line 2: `processes` must be a positive whole number")
    assert "\n" not in vf.reason()
    assert parse("").reason() == ""


def test_read_reports_an_unreadable_file(tmp_path):
    vf = vassals.read(tmp_path / "missing.ini")
    assert vf.name == "missing"
    assert "cannot read the file" in only_problem(vf).message


def test_read_parses_the_file(tmp_path):
    path = tmp_path / "b.ini"
    path.write_text("[uwsgi]\nprocesses = 5\n")
    assert vassals.read(path).get("processes") == "5"


@pytest.mark.parametrize("processes", [None, 1, 16])
def test_new_vassal_text_parses_back_valid(app_dir, processes):
    (app_dir / "wsgi.py").write_text("")
    text = vassals.new_vassal_text("backend-9", processes)
    vf = parse(text, name="backend-9.ini", known_options=KNOWN, app_dir=app_dir)
    assert vf.valid, vf.problems
    assert text.startswith("; backend-9:")
    assert vf.get("processes") == (str(processes) if processes is not None else None)


# ---- the one listing of vassal files ------------------------------------------------------------------


def test_present_lists_visible_ini_files_by_name_with_their_mtime(tmp_path):
    folder = tmp_path / "vassals"
    folder.mkdir()
    for filename in ("b.ini", "a.ini", ".a.ini.swp", "c.ini~", "d.ini.tmp", "notes.txt", ".ini"):
        (folder / filename).write_text("")
    (folder / "gone.ini").symlink_to(tmp_path / "nowhere")  # dangling: still a vassal, reading it says why
    found = vassals.present(folder)
    assert list(found) == ["a", "b", "gone"]
    assert found["a"] == (folder / "a.ini").stat().st_mtime_ns
    assert found["gone"] == (folder / "gone.ini").lstat().st_mtime_ns


def test_present_of_no_folder_is_no_vassals(tmp_path):
    assert vassals.present(tmp_path / "missing") == {}


def test_present_can_say_the_folder_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        vassals.present(tmp_path / "missing", missing_ok=False)


def test_present_leaves_no_descriptor_open(tmp_path):
    before = open_fds()
    for _ in range(40):
        vassals.present(tmp_path)
    assert open_fds() == before


# ---- whatever is in vassals/: each kind its reason, no descriptor left open -------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def make_odd(kind: str, path: Path) -> socket.socket | None:
    """Put a thing of `kind` at `path`; a socket must stay bound while it is read, so it is returned."""
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        return sock
    elif kind == "symlink-loop":
        path.symlink_to(path.name)
    elif kind == "dangling":
        path.symlink_to("nowhere.ini")
    elif kind == "huge":
        path.write_bytes(b"; padding\n" * (1 << 20))  # 10 MiB
    elif kind == "nul-filled":
        path.write_bytes(b"\0" * 4096)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    return None


ODD_KINDS = {
    "folder": "cannot read the file: it is a folder",
    "fifo": "not a file but a FIFO, socket or device",
    "socket": "cannot read the file: it is a socket",
    "symlink-loop": "cannot read the file: it is a symlink loop",
    "dangling": "cannot read the file: it is a symlink to nothing",
    "huge": "file is over 65536 bytes",
    "nul-filled": "not a text file: only NUL bytes",
    "device": "not a file but a FIFO, socket or device",
}


@pytest.mark.parametrize("kind", sorted(ODD_KINDS))
def test_each_odd_kind_has_its_reason_and_leaves_no_descriptor_open(tmp_path, kind):
    path = tmp_path / "x.ini"
    sock = make_odd(kind, path)
    try:
        before = open_fds()
        for _ in range(40):
            problem = only_problem(vassals.read(path, KNOWN))
            assert problem.message == ODD_KINDS[kind]
            assert problem.fix
        assert open_fds() == before
    finally:
        if sock is not None:
            sock.close()


def test_an_unreadable_file_says_so(tmp_path, monkeypatch):
    # As root, chmod 000 stops no read: the open is made to fail as it does for any other user.
    path = tmp_path / "x.ini"
    path.write_text("[uwsgi]\n")

    def denied(*_args, **_kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(vassals.os, "open", denied)
    problem = only_problem(vassals.read(path))
    assert problem.message == "cannot read the file: permission denied"
    assert "chmod" in problem.fix


def test_a_file_that_fails_while_read_leaves_no_descriptor_open(tmp_path, monkeypatch):
    path = tmp_path / "x.ini"
    path.write_text("[uwsgi]\n")

    def failing(*_args):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(vassals.os, "read", failing)
    before = open_fds()
    assert only_problem(vassals.read(path)).message == "cannot read the file: input/output error"
    assert open_fds() == before


def test_a_huge_file_is_read_no_further_than_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "x.ini"
    path.write_bytes(b"; padding\n" * (1 << 20))
    asked: list[int] = []
    real = os.read
    monkeypatch.setattr(vassals.os, "read", lambda fd, n: asked.append(n) or real(fd, n))
    vassals.read(path)
    assert sum(asked) <= vassals.MAX_FILE_BYTES + 1


def test_nul_bytes_inside_text_are_still_named_by_line():
    problem = only_problem(parse("[uwsgi]\nprocesses = 2\n\0\0\n"))
    assert problem.line == 3 and "control characters" in problem.message


# ---- resource caps ------------------------------------------------------------------------------------

CAPS = vassals.Caps(processes=16, threads=64)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("processes = 100000", "`processes = 100000` is above the limit of 16 processes"),
        ("workers = 17", "`workers = 17` is above the limit of 16 processes"),
        ("threads = 65", "`threads = 65` is above the limit of 64 threads"),
    ],
)
def test_counts_above_the_caps_are_refused_naming_option_and_limit(text, named):
    problem = only_problem(parse(f"[uwsgi]\n{text}\n", caps=CAPS))
    assert problem.message.startswith(named), problem.message
    assert problem.line == 2
    assert "--max-processes" in problem.fix or "--max-threads" in problem.fix


@pytest.mark.parametrize("text", ["processes = 16", "workers = 1", "threads = 64", "listen = 100000"])
def test_counts_within_the_caps_pass(text):
    assert parse(f"[uwsgi]\n{text}\n", caps=CAPS).valid


def test_without_caps_nothing_is_bounded():
    assert parse("[uwsgi]\nprocesses = 100000\nthreads = 100000\n").valid
    assert parse("[uwsgi]\nprocesses = 100000\n", caps=vassals.Caps()).valid


def test_a_bad_count_is_named_as_such_not_as_over_the_cap():
    problem = only_problem(parse("[uwsgi]\nprocesses = lots\n", caps=CAPS))
    assert "positive whole number" in problem.message


def test_read_applies_the_caps(tmp_path):
    path = tmp_path / "greedy.ini"
    path.write_text("[uwsgi]\nprocesses = 100000\n")
    assert "above the limit of 16" in only_problem(vassals.read(path, caps=CAPS)).message
    assert vassals.read(path).valid
