"""Fuzzing vassal files: whatever lands in vassals/ (random bytes, options and values, huge files, odd names,
[fleet] sections, symlinks, folders, FIFOs), the checks, the vassal launcher and the control plane's
ClusterObserver never raise or hang, and each file is either valid or refused with a message and a fix."""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import io
import os
import sys
import tempfile
import threading
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.control.observe import ClusterObserver
from fleet.core.settings import Settings
from fleet.layout import Layout
from fleet.vassalfile import vassals
from tests import fuzzcases as fc

REPO = Path(__file__).resolve().parents[2]
KNOWN = frozenset(fc.UWSGI_OPTIONS) | frozenset(vassals.FLEET_OWNED)
# Derandomized (the same examples every run, so CI never flakes); FLEET_FUZZ=N explores N times as many, at random.
EXPLORE = int(os.environ.get("FLEET_FUZZ", "0"))


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples * max(1, EXPLORE),
        derandomize=not EXPLORE,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ---- strategies ---------------------------------------------------------------------------------------

keys = st.one_of(st.sampled_from(fc.OPTION_NAMES), st.text(max_size=12))
values = st.one_of(st.sampled_from(fc.VALUES), st.text(max_size=30))
options = st.builds(lambda k, sep, v: f"{k}{sep}{v}", keys, st.sampled_from(["=", " = ", " =", "= ", "=="]), values)
lines = st.one_of(st.sampled_from(fc.SECTIONS), options, options, st.sampled_from(fc.COMMENTS), st.text(max_size=30))
ini_texts = st.builds(lambda ls, nl: nl.join(ls), st.lists(lines, max_size=12), st.sampled_from(["\n", "\r\n", "\r"]))


class Huge(bytes):
    """A file's content too big to print whole in a failure report."""

    def __repr__(self) -> str:
        return f"Huge({bytes(self[:24])!r} + ... ({len(self)} bytes))"


def spliced(text: bytes, junk: bytes, at: int) -> bytes:
    """An ini text with random bytes inserted (a binary paste, a bad encoding)."""
    return text[:at] + junk + text[at:]


contents = st.one_of(
    ini_texts.map(str.encode),
    ini_texts.map(str.encode),
    st.binary(max_size=400),
    st.builds(spliced, ini_texts.map(str.encode), st.binary(min_size=1, max_size=8), st.integers(0, 200)),
    st.integers(-2, 2).map(lambda d: Huge(b"[uwsgi]\n" + b";" * (vassals.MAX_FILE_BYTES - 8 + d))),
    st.just(Huge(b"[uwsgi]\n" + b"; padding\n" * vassals.MAX_FILE_BYTES)),
)  # fmt: skip
name_chars = st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",))
names = st.one_of(
    st.from_regex(vassals.NAME_PATTERN, fullmatch=True).filter(lambda n: len(n) <= 60),
    st.text(name_chars, min_size=1, max_size=30),
    st.sampled_from(["control", "nginx-error", "a" * 251, "Backend-1", "back end", "-x", "x.y", "\u00e9"]),
)
filenames = st.one_of(
    names.map(lambda n: f"{n}.ini"),
    names.flatmap(lambda n: st.sampled_from(fc.HIDDEN).map(lambda h: h.format(n))),
    st.sampled_from([".ini", "..ini", "x.ini.ini", "ini"]),
).filter(lambda f: f not in (".", "..") and len(os.fsencode(f)) <= 255)
specials = st.sampled_from(
    ["", "", "", "symlink-to-dir", "dir", "fifo", "dev-zero", "loop", "dangling", "symlink-to-valid"]
)


def app_dir(root: Path) -> Path:
    (root / "app").mkdir(parents=True, exist_ok=True)
    (root / "app" / "wsgi.py").write_text("application = None\n")
    return root / "app"


def assert_well_formed(vf: vassals.VassalFile, size: int, lines_in_file: int) -> None:
    """Either valid, or refused with problems that each say what and how to fix it, on one line."""
    assert vf.valid == (not vf.problems)
    for p in vf.problems:
        assert p.message.strip() and p.fix.strip(), p
        assert "\n" not in p.message + p.fix, p
        assert p.line is None or 1 <= p.line <= lines_in_file, p
    if not vf.valid:
        assert vf.reason() and "\n" not in vf.reason()
        return
    assert size <= vassals.MAX_FILE_BYTES and vassals.is_valid_name(vf.name)
    for option in vf.options:
        key = option.key.replace("_", "-")
        assert key in KNOWN and key not in vassals.FLEET_OWNED, option
    assert vf.health.path.startswith("/")
    assert all(isinstance(vf.health.accepts(code), bool) for code in range(100, 600, 7))


# ---- the checks (pure) ----------------------------------------------------------------------------------


@fuzz(250)
@given(filename=filenames, content=contents)
def test_parse_never_raises_and_says_what_and_how(tmp_path_factory, filename, content):
    app = app_dir(tmp_path_factory.getbasetemp() / "parse")
    vf = vassals.parse(Path("vassals") / filename, content, KNOWN, app)
    assert_well_formed(vf, len(content), content.count(b"\n") + 1)
    assert vassals.parse(Path("vassals") / filename, content, KNOWN, app) == vf  # deterministic


@fuzz(80)
@given(filename=filenames.filter(lambda f: f.endswith(".ini")), content=contents, special=specials)
def test_read_never_raises_or_blocks_on_any_kind_of_file(filename, content, special):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "vassals").mkdir()
        case = fc.Case(filename, "hypothesis", content, special)
        path = fc.materialize(case, root / "vassals", root)
        vf = call_with_timeout(lambda: vassals.read(path, KNOWN, app_dir(root)))
        if special:  # the content was not used
            assert vf.valid == (special == "symlink-to-valid" and vassals.is_valid_name(case.name)), vf
            content = path.read_bytes() if vf.valid else b""
        assert_well_formed(vf, len(content), content.count(b"\n") + 1)
        if not special:
            assert vf.problems == vassals.parse(path, content, KNOWN, root / "app").problems


def call_with_timeout(func, timeout: float = 5.0):
    """Run `func` in a thread: a read that blocks (a FIFO) fails the test instead of hanging it."""
    result: list = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(func())
        except BaseException as e:  # re-raised in the test's thread
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"blocked for {timeout} s"
    if errors:
        raise errors[0]
    return result[0]


# ---- the control plane's ClusterObserver -------------------------------------------------------------


@fuzz(50)
@given(entries=st.lists(st.tuples(filenames, contents, specials), max_size=6, unique_by=lambda e: e[0]))
def test_observer_sees_every_vassal_file_and_never_raises(entries):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "vassals").mkdir()
        (root / "run" / "drain").mkdir(parents=True)
        app = app_dir(root)
        for filename, content, special in entries:
            fc.materialize(fc.Case(filename, "hypothesis", content, special), root / "vassals", root)
        observer = ClusterObserver(Layout(root), Settings(), lambda: KNOWN)
        wanted = call_with_timeout(observer.wanted)
        expected = {fc.Case(f, "").name for f, _, _ in entries if vassals.is_vassal_filename(f)}
        assert set(wanted.files) == expected
        for name, info in wanted.files.items():
            checked = vassals.read(root / "vassals" / f"{name}.ini", KNOWN, app)
            assert info.problem == checked.reason()
        assert call_with_timeout(observer.wanted) == wanted  # a second pass, from its cache, agrees


# ---- the vassal launcher (bin/fleet-vassal), the Emperor's wrapper ------------------------------------


class Exec(Exception):
    """The launcher would have become uwsgi."""


class FakeOs(types.SimpleNamespace):
    """The launcher's `os`: our environ, an execv that raises Exec instead of becoming uwsgi, the real
    module for the rest."""

    @staticmethod
    def execv(binary: str, argv: list[str]) -> None:
        raise Exec(binary, argv)

    def __getattr__(self, name: str):
        return getattr(os, name)


@pytest.fixture(scope="module")
def launcher_root(tmp_path_factory) -> Path:
    """A cluster-shaped folder with a copy of the launcher: it finds app/ and run/logs/ beside itself."""
    return fc.launcher_root(tmp_path_factory.mktemp("launcher"))


@pytest.fixture(scope="module")
def launcher(launcher_root: Path) -> types.ModuleType:
    """The launcher loaded in-process (its own sys.path entry taken out again); `os` is its test seam."""
    path = str(launcher_root / "bin" / "fleet-vassal")
    loader = importlib.machinery.SourceFileLoader("fleet_vassal_under_test", path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    saved = list(sys.path)
    loader.exec_module(module)
    sys.path[:] = saved
    return module


@fuzz(120)
@given(filename=filenames.filter(lambda f: f.endswith(".ini")), content=contents, special=specials)
def test_launcher_refuses_with_a_reason_or_becomes_uwsgi(launcher, launcher_root, filename, content, special):
    folder = launcher_root / "vassals"
    path = fc.materialize(fc.Case(filename, "hypothesis", content, special), folder, launcher_root / "outside")
    environ: dict[str, str] = {"FLEET_UWSGI": "/bin/true"}

    launcher.os = FakeOs(environ=environ)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            code = call_with_timeout(lambda: launcher.main(["--ini", str(path)]))
        checked = vassals.read(path, app_dir=launcher_root / "app")
        assert code == 1 and not checked.valid
        assert err.getvalue().startswith(f"fleet-vassal: refusing to start {path.name}: ")
        assert checked.problems[0].message in err.getvalue()
        log = launcher_root / "run" / "logs" / f"{checked.name}.log"
        assert "refusing to start" in log.read_text(errors="replace")
    except Exec as e:
        assert e.args == ("/bin/true", ["/bin/true", "--ini", str(path)])
        assert environ["FLEET_VASSAL"] == fc.Case(filename, "").name
        assert vassals.read(path, app_dir=launcher_root / "app").valid
    finally:
        launcher.os = os
        fc.remove(path)


def test_launcher_as_a_process_on_a_few_seeded_cases(launcher_root):
    """A handful here; tests/integration/test_fuzz_cluster.py runs it on a few hundred."""
    kinds = ("odd-but-valid", "unknown-option", "garbage", "bad-name", "huge", "fifo", "dev-zero", "loop")
    fc.check_launcher(launcher_root, fc.corpus(seed=6, count=len(kinds), only=kinds))


@pytest.mark.parametrize(("environ", "refused"), [({"FLEET_MAX_PROCESSES": "16"}, True), ({}, False)])
def test_launcher_applies_the_caps_fleet_up_passed_down(launcher, launcher_root, environ, refused):
    path = launcher_root / "vassals" / "greedy.ini"
    path.write_text("[uwsgi]\nprocesses = 100000\n")
    environ = {"FLEET_UWSGI": "/bin/true", **environ}

    launcher.os = FakeOs(environ=environ)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            if refused:
                assert launcher.main(["--ini", str(path)]) == 1
                assert "`processes = 100000` is above the limit of 16 processes" in err.getvalue()
            else:
                with pytest.raises(Exec):
                    launcher.main(["--ini", str(path)])
    finally:
        launcher.os = os
        path.unlink()
