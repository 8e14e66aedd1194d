"""Observing (I/O, no decisions): the vassal files, health probes, stats sockets and logs, as the core's Look asks."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import NamedTuple

from fleet import uwsgi
from fleet.core import emperors
from fleet.core.apps import DEFAULT_APP, App
from fleet.core.looking import answered
from fleet.core.observations import FileInfo, Look, Observed, Probe, Wanted
from fleet.core.settings import Settings
from fleet.core.stats import EmperorStats, VassalStats
from fleet.core.weights import DEFAULT_WEIGHT
from fleet.errors import describe
from fleet.layout import Layout
from fleet.logs import failure_reason
from fleet.published import overrides
from fleet.vassalfile import vassals
from fleet.vassalfile.health import HealthCheck
from fleet.vassalfile.static import StaticMount, agree

log = logging.getLogger("fleet.control")
NO_SOCKET = Probe(False, "its socket does not exist yet")


class Checked(NamedTuple):
    """One vassal file as last read: its version, its problem ("" if valid) and its [fleet] settings."""

    mtime_ns: int
    problem: str
    health: HealthCheck
    weight: int
    app: App


class ClusterObserver:
    """Reads the cluster for the control plane (files, probes, stats sockets, logs). Validates each vassal
    file once per version."""

    def __init__(
        self,
        layout: Layout,
        settings: Settings,
        known_options: Callable[[], frozenset[str]],
        caps: vassals.Caps | None = None,
    ):
        self.layout, self.settings = layout, settings
        self.known_options, self.caps = known_options, caps
        # name -> (mtime_ns, problem, health check, weight, app)
        self._checked: dict[str, Checked] = {}
        self._last_scan: dict[str, int] = {}
        self._last_drains: list[str] = []
        self._static: dict[str, StaticMount | None] = {}  # name -> its [fleet] static (valid files only)
        self.static: StaticMount | None = None  # what the valid backends agree on: nginx serves it
        # Each vassal's socket and stats socket paths, made once: 200 probes a second built three Paths each.
        self._paths: dict[str, tuple[str, str]] = {}
        self.scan_error = ""  # why vassals/ cannot be listed now ("": it can)
        self._emperors: dict[str, EmperorStats] = {}  # each Emperor's last answer

    # ---- what is wanted ----------------------------------------------------------------------------

    def wanted(self) -> Wanted:
        files = {}
        for name, mtime_ns in self._scan().items():
            problem = self._problem(name, mtime_ns)
            files[name] = FileInfo(mtime_ns, problem, self._checked[name].app)
        for name in set(self._checked) - set(files):
            del self._checked[name]
            self._static.pop(name, None)
        files = self._agree_on_static(files)
        for name in set(self._paths) - set(files):
            del self._paths[name]
        return Wanted(files, frozenset(self._drain_requests()))

    def app_static(self, app: App) -> StaticMount | None:
        """The folder an app other than the default one serves (its vassals agree on `app.static`), if any."""
        for name, checked in sorted(self._checked.items()):
            identity = checked.app
            if identity.name == app.name and identity.static == app.static and not checked.problem:
                mount = self._static.get(name)
                if mount is not None and mount.path is not None:
                    return mount
        return None

    def _agree_on_static(self, files: dict[str, FileInfo]) -> dict[str, FileInfo]:
        """The backends must agree on [fleet] static: one that disagrees is failed, with the reason.

        The default app's backends only: nginx serves its folder (static.conf, in the default server). The
        other apps' vassals agree on theirs through fleet.core.apps; nginx does not serve those yet."""
        valid = {
            name: self._static.get(name)
            for name, info in files.items()
            if not info.problem and info.app.name == DEFAULT_APP
        }
        self.static, reasons = agree("static", valid, {n: files[n].mtime_ns for n in valid}, _describe_static)
        return {name: replace(info, problem=reasons[name]) if name in reasons else info for name, info in files.items()}

    def _scan(self) -> dict[str, int]:
        """The vassal files present (vassals.present): {name: mtime_ns}.

        A vassals/ that cannot be listed (missing, unreadable, replaced by a file) is no instruction to
        stop anything: what was wanted stays wanted, and the outage is logged once, as is its end.
        """
        try:
            found = vassals.present(self.layout.vassals, missing_ok=False)
        except OSError as e:
            error = describe(e)
            if error != self.scan_error:
                log.error(
                    "cannot list the vassal files: %s; keeping the %d backend(s) as they are until it can",
                    error,
                    len(self._last_scan),
                )
                self.scan_error = error
            return dict(self._last_scan)
        if self.scan_error:
            log.info("%s can be listed again", self.layout.vassals)
            self.scan_error = ""
        self._last_scan = found
        return found

    def _problem(self, name: str, mtime_ns: int) -> str:
        cached = self._checked.get(name)
        if cached and cached.mtime_ns == mtime_ns:
            return cached.problem
        checked = vassals.read(self.layout.vassal_file(name), self.known_options(), self.layout.app, self.caps)
        problem = "" if checked.valid else checked.reason()
        identity = checked.app
        app = App(identity.name, identity.hosts, identity.path, identity.static)
        self._checked[name] = Checked(mtime_ns, problem, checked.health, checked.weight, app)
        self._static[name] = checked.static
        return problem

    def weights(self, wanted: Wanted) -> dict[str, int]:
        """Each wanted backend's weight: `fleet weight`'s override while its file is unchanged, else the file's."""
        file_weights = {n: c.weight if (c := self._checked.get(n)) else DEFAULT_WEIGHT for n in wanted.files}
        mtimes = {n: f.mtime_ns for n, f in wanted.files.items()}
        return overrides.effective(file_weights, mtimes, overrides.read_all(self.layout))

    def _drain_requests(self) -> list[str]:
        try:
            names = [n for n in os.listdir(self.layout.drain_dir) if vassals.is_valid_name(n)]
        except FileNotFoundError:
            names = []
        except OSError:
            return self._last_drains  # unreadable: the drains asked for stay asked for
        self._last_drains = names
        return names

    # ---- what runs ---------------------------------------------------------------------------------

    def observe(
        self,
        look: Look,
        routed: frozenset[str],
        routing_error: str,
        routing_failed_at: float | None,
        backends: Iterable[str] = (),
    ) -> Observed:
        """What `look` asks for; `backends`: every backend's name (whose stats a usage round reads)."""
        emperor = self.emperors() if look.emperor else None
        # The stats decisions need first: they tell which probes traffic already answered. The rest of a
        # usage round after the probes, so that a backend that just answered its first one shows its workers.
        first = set(look.stats) | set(look.unless_answered)
        stats = {name: s for name in sorted(first) if (s := self.stats(name)) is not None}
        by_traffic = {n for n, before in look.unless_answered.items() if answered(before, stats.get(n))}
        probes = self.probe_all(look.probe | (set(look.unless_answered) - by_traffic))
        for name in by_traffic:
            done = stats[name].requests - look.unless_answered[name].requests
            probes[name] = Probe(True, f"answered {done} requests since the last look", traffic=True)
        if look.usage:
            stats |= {name: s for name in sorted(set(backends) - first) if (s := self.stats(name)) is not None}
        return Observed(
            routed=routed,
            emperor=emperor,
            probes=probes,
            stats=stats,
            reasons={name: r for name in look.reasons if (r := self.reason(name))},
            routing_error=routing_error,
            routing_failed_at=routing_failed_at,
            usage=look.usage,
        )

    def emperors(self) -> EmperorStats | None:
        """Every Emperor's stats, as one (reading them also wakes each to rescan its share of vassals/)."""
        answers: dict[str, EmperorStats | None] = {}
        for name in emperors.names(self.settings.emperors):
            try:
                answers[name] = self._emperors[name] = uwsgi.emperor_stats(self.layout.emperor_stats_of(name))
            except (OSError, ValueError):
                answers[name] = None  # not up yet, or restarting: decisions use its last answer
        return emperors.merge(answers, self._emperors)

    def stats(self, name: str, timeout: float = 0.3) -> VassalStats | None:
        try:
            return uwsgi.vassal_stats(self._path(name)[1], timeout)
        except (OSError, ValueError):
            return None

    def probe_all(self, names: Iterable[str]) -> dict[str, Probe]:
        """Each vassal's health check (fleet.health) over the uwsgi protocol on its own socket, as nginx
        would send it; all at once, within one probe timeout."""
        checks = {name: self._checked[name].health if name in self._checked else HealthCheck() for name in names}
        # No exists() first: the connect tells (a stat and a Path less per probe, 200 probes a second).
        targets = {name: (self._path(name)[0], check.path) for name, check in checks.items()}
        answers = uwsgi.request_many(targets, self.settings.probe_timeout)
        return {
            name: NO_SOCKET
            if isinstance(answers[name], FileNotFoundError)
            else self._verdict(name, check, answers[name])
            for name, check in checks.items()
        }

    def _path(self, name: str) -> tuple[str, str]:
        """Vassal `name`'s socket and stats socket."""
        if (paths := self._paths.get(name)) is None:
            paths = self._paths[name] = (str(self.layout.socket(name)), str(self.layout.stats_socket(name)))
        return paths

    def _verdict(self, name: str, check: HealthCheck, answer: tuple[int, bytes] | Exception) -> Probe:
        if isinstance(answer, Exception):
            detail = f"GET {check.path}: {_describe(answer)}"
        elif check.accepts(answer[0]):
            return _answered(check.path, answer[0])
        else:
            detail = f"GET {check.path} -> {answer[0]}, expected {check.expected()}"
        stats = self.stats(name)
        busy = stats is not None and bool(stats.workers) and all(w.busy for w in stats.workers)
        return Probe(False, detail, busy)

    def reason(self, name: str) -> str:
        log = self.layout.log(name)
        found = failure_reason(log)
        return f"{found} (see {log})" if found else ""


def _describe_static(mount: StaticMount | None) -> str:
    return mount.describe() if mount is not None else "not set"


@functools.lru_cache(maxsize=256)
def _answered(path: str, status: int) -> Probe:
    """The verdict of a probe that got an accepted answer: the same few each second, made once."""
    return Probe(True, f"GET {path} -> {status}")


def _describe(e: Exception) -> str:
    if isinstance(e, TimeoutError):
        return "no answer in time"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__
