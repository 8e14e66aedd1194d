"""Odd and bad vassal files for the fuzz tests, as a seeded corpus: deterministic, every kind present.

The unit tier fuzzes with hypothesis (tests/unit/test_fuzz_vassals.py) from the same building blocks;
the tests that start real processes (the vassal launcher, a running cluster) use `corpus(seed, count)`,
so a failure names a case that the next run reproduces.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fleet.vassalfile import health, vassals

REPO = Path(__file__).resolve().parent.parent

# Stands in for `uwsgi --help` in the unit tier: real option names, fleet's own, and close misspellings.
UWSGI_OPTIONS = (
    "processes", "workers", "threads", "listen", "harakiri", "module", "chdir", "wsgi-file", "mount", "master",
    "strict", "need-app", "buffer-size", "max-requests", "reload-mercy", "worker-reload-mercy", "die-on-term",
    "vacuum", "enable-threads", "lazy-apps", "env", "pythonpath", "callable", "cheaper", "post-buffering",
    "limit-as", "reload-on-rss", "disable-logging", "procname-prefix-spaced", "touch-reload", "socket-timeout",
    "single-interpreter", "thunder-lock", "plugin", "uid", "gid", "chmod-socket", "max-requests-delta",
)  # fmt: skip
JUNK_OPTIONS = ("procesess", "threds", "x", "foo-bar", "a.b", "9lives", "key with space", "ñandú", "=", "-", "[")
OPTION_NAMES = (
    UWSGI_OPTIONS
    + tuple(sorted(vassals.FLEET_OWNED))
    + tuple(k.replace("-", "_") for k in ("max-requests", "wsgi-file", "http-socket", "need-app"))
    + health.KNOWN_KEYS
    + JUNK_OPTIONS
)
VALUES = (
    "", "0", "1", "2", "-1", "64", "99999999999999999999", "1.5", "\u00b2", "\u0663", "abc", "true", "%d/x",
    "$(FLEET_VASSAL)", "wsgi", "wsgi:application", "does_not_exist", "a.b", ".x", "1abc", "x" * 300, "/healthz",
    "healthz", "/a b", "any", "200", "200-299", "200,204", "200,", "999-100", "20x", "any,200", "\t",
)  # fmt: skip
SECTIONS = ("[uwsgi]", "[fleet]", "[vassal]", "[ uwsgi ]", "[]", "[uwsgi", "uwsgi]", "[[uwsgi]]", "[UWSGI]")
COMMENTS = ("; a comment", "# another", ";", "", "   ", "; \u00e9t\u00e9 \u2603")
HIDDEN = (".{}.ini", "{}.ini~", ".{}.ini.swp", "{}.ini.tmp", "{}.conf", "{}.INI")  # never vassals
BAD_NAMES = ("Fuzz{}", "fuzz {}", "-fuzz{}", "_fuzz{}", "fuzz.{}", "fuzz{}\u00e9", "FUZZ-{}", "fuzz\t{}")


@dataclass(frozen=True)
class Case:
    """One generated entry of vassals/: a file (or a symlink, folder or FIFO) and what fleet must say of it."""

    filename: str
    kind: str
    content: bytes = b""
    special: str = ""  # "", "symlink-to-dir", "dir", "fifo", "dev-zero", "loop", "dangling", "symlink-to-valid"
    reason: str = ""  # a part of the error fleet must give; "" for a valid file (or an ignored one)
    ignored: bool = False  # not a vassal file name: neither the Emperor nor the control plane looks at it

    @property
    def name(self) -> str:
        return vassals.vassal_name(self.filename) if self.filename.endswith(".ini") else self.filename

    @property
    def launcher_refuses(self) -> bool:
        """The launcher checks all but option names (uWSGI's strict mode refuses those itself)."""
        return bool(self.reason) and self.kind != "unknown-option"


def _ini(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _garbage(rng: random.Random, name: str) -> Case:
    data = bytearray(rng.randbytes(rng.randint(1, 600)))
    data.insert(rng.randint(0, len(data)), 0xFF)  # never valid UTF-8
    return Case(f"{name}.ini", "garbage", bytes(data), reason="not a text file")


def _fleet_section(rng: random.Random, name: str) -> Case:
    line, reason = rng.choice(
        [
            (f"health_status = {rng.choice(['20x', '200,', 'any,200', '2000'])}", "not a status list"),
            (f"health_path = {rng.choice(['healthz', '/a b', ''])}", "not a path"),
            (f"{rng.choice(['health', 'timeout', 'x'])} = 1", "unknown [fleet] setting"),
        ]
    )
    return Case(f"{name}.ini", "fleet-section", _ini("[uwsgi]", "processes = 1", "[fleet]", line), reason=reason)


def _huge(rng: random.Random, name: str) -> Case:
    size = vassals.MAX_FILE_BYTES + rng.randint(1, 4 * vassals.MAX_FILE_BYTES)
    return Case(f"{name}.ini", "huge", (b"[uwsgi]\n" + b"; padding\n" * size)[:size], reason="bytes")


def _odd_but_valid(rng: random.Random, name: str) -> Case:
    nl = rng.choice(["\n", "\r\n"])
    lines = ["; \u00e9t\u00e9 \u2603", "[ uwsgi ]", "processes = 1", "max_requests = 5000", "[fleet]"]
    lines.append(f"health_status = {rng.choice(['any', '200', '200-299', '200,204'])}")
    return Case(f"{name}.ini", "odd-but-valid", nl.join(lines).encode() + nl.encode())


def _choice(*options: str) -> Callable[[random.Random], str]:
    return lambda rng: rng.choice(options)


# kind -> (the [uwsgi] lines, or None for raw content/special files, and the error fleet must give)
_OPTION_CASES: dict[str, tuple[Callable[[random.Random], bytes], str]] = {
    "nul-byte": (lambda rng: b"[uwsgi]\nprocesses = 1\x00\n", "control char"),
    "unknown-option": (lambda rng: _ini("[uwsgi]", f"{rng.choice(JUNK_OPTIONS[:4])} = 2"), "unknown uWSGI"),
    "fleet-owned": (lambda rng: _ini("[uwsgi]", f"{rng.choice(sorted(vassals.FLEET_OWNED))} = /tmp/x"), "managed"),
    "bad-number": (
        lambda rng: _ini(
            "[uwsgi]", f"{rng.choice(['processes', 'threads', 'listen'])} = {rng.choice(['0', '-1', 'x'])}"
        ),
        "positive whole number",
    ),
    "missing-module": (lambda rng: _ini("[uwsgi]", f"module = fuzz_{rng.randrange(10**6)}"), "not found"),
    "bad-module-name": (
        lambda rng: _ini("[uwsgi]", "module = " + _choice("1abc", "a-b", "a..b", ":app", "x y")(rng)),
        "not a Python module name",
    ),
    "long-module": (lambda rng: _ini("[uwsgi]", "module = " + "m" * 300), "not found"),
    "no-uwsgi-section": (lambda rng: _ini("[vassal]", "processes = 1"), "no [uwsgi]"),
    "outside-section": (lambda rng: _ini("processes = 1"), "outside any section"),
    "not-key-value": (lambda rng: _ini("[uwsgi]", "just words"), "key = value"),
    "bad-header": (lambda rng: _ini(rng.choice(["[uwsgi", "[[uwsgi]]x"])), "section"),
}
_SPECIAL_CASES = {  # kind (= Case.special) -> the error fleet must give
    "symlink-to-dir": "folder",
    "dir": "folder",
    "fifo": "not a file",
    "dev-zero": "not a file",
    "loop": "symlink loop",
    "dangling": "symlink to nothing",
    "symlink-to-valid": "",
}


def _bad_name(rng: random.Random, name: str) -> Case:
    filename = rng.choice(BAD_NAMES).format(name.rsplit("-", 1)[-1]) + ".ini"
    return Case(filename, "bad-name", b"[uwsgi]\n", reason="not a valid vassal name")


def _hidden(rng: random.Random, name: str) -> Case:
    return Case(rng.choice(HIDDEN).format(name), "hidden", b"[uwsgi]\nprocesses = 1\n", ignored=True)


KINDS: dict[str, Callable[[random.Random, str], Case]] = {
    "garbage": _garbage,
    "huge": _huge,
    "fleet-section": _fleet_section,
    "odd-but-valid": _odd_but_valid,
    "bad-name": _bad_name,
    "hidden": _hidden,
    **{
        kind: (
            lambda rng, name, kind=kind, make=make, reason=reason: Case(f"{name}.ini", kind, make(rng), reason=reason)
        )
        for kind, (make, reason) in _OPTION_CASES.items()
    },
    **{
        kind: (lambda rng, name, kind=kind, reason=reason: Case(f"{name}.ini", kind, special=kind, reason=reason))
        for kind, reason in _SPECIAL_CASES.items()
    },
}


def corpus(seed: int, count: int, only: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> list[Case]:
    """`count` cases: every kind once (in a seeded order, while count allows), then seeded choices."""
    rng = random.Random(seed)
    kinds = [k for k in KINDS if (not only or k in only) and k not in exclude]
    rng.shuffle(kinds)
    chosen = kinds[:count] + [rng.choice(kinds) for _ in range(count - len(kinds))]
    return [KINDS[kind](rng, f"fuzz-{index:03d}") for index, kind in enumerate(chosen)]


def materialize(case: Case, folder: Path, outside: Path) -> Path:
    """Create `case` in `folder` in one rename (as a careful user would); `outside` holds symlink targets."""
    path, tmp = folder / case.filename, folder / ".fuzz-tmp"  # short: a name may be 255 bytes already
    if case.special in ("", "symlink-to-valid"):
        target = outside / case.filename if case.special else tmp
        target.write_bytes(case.content if not case.special else b"[uwsgi]\nprocesses = 1\n")
        if case.special:
            os.symlink(target, tmp)
    elif case.special == "dir":
        tmp.mkdir()
    elif case.special == "fifo":
        os.mkfifo(tmp)
    else:
        targets = {"symlink-to-dir": str(outside), "dev-zero": "/dev/zero", "dangling": str(outside / "nothing")}
        os.symlink(targets.get(case.special, case.filename), tmp)  # "loop": the link points at itself
    os.replace(tmp, path)
    return path


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    else:
        path.unlink()


# ---- the vassal launcher (bin/fleet-vassal) as the Emperor runs it -------------------------------------


def launcher_root(root: Path) -> Path:
    """A cluster-shaped folder holding a copy of the launcher (it finds app/ and run/logs/ beside itself)
    and a fake uwsgi that says what it was started with."""
    for folder in ("bin", "run/logs", "vassals", "app", "outside"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "bin" / "fleet-vassal").write_bytes((REPO / "bin" / "fleet-vassal").read_bytes())
    (root / "app" / "wsgi.py").write_text("application = None\n")
    (root / "bin" / "fake-uwsgi").write_text('#!/bin/sh\necho "fake-uwsgi $FLEET_VASSAL $*"\n')
    for name in ("fleet-vassal", "fake-uwsgi"):
        (root / "bin" / name).chmod(0o755)
    return root


def run_launcher(root: Path, path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLEET_UWSGI": str(root / "bin" / "fake-uwsgi")}
    argv = [sys.executable, str(root / "bin" / "fleet-vassal"), "--ini", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, errors="replace", env=env, timeout=30)


def check_launcher(root: Path, cases: list[Case]) -> None:
    """Run the launcher on every case: it refuses with the reason, or becomes uwsgi; never a traceback."""
    cases = [c for c in cases if not c.ignored]  # the Emperor's glob never passes those
    paths = [materialize(c, root / "vassals", root / "outside") for c in cases]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: run_launcher(root, p), paths))
    for case, proc in zip(cases, results, strict=True):
        what = f"{case}: exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        assert "Traceback" not in proc.stderr, what
        if case.launcher_refuses:
            assert proc.returncode == 1 and case.reason in proc.stderr, what
            assert proc.stderr.startswith("fleet-vassal: refusing to start"), what
        else:
            assert proc.returncode == 0 and proc.stdout.startswith(f"fake-uwsgi {case.name} --ini "), what
