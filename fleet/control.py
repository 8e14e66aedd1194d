"""The control plane: keep nginx's upstream list equal to the set of healthy vassals.

One loop, one `sync()`: read what is wanted (the files in vassals/), what runs (probes of each
vassal's socket, the Emperor's and the vassals' stats) and what nginx routes to; move each backend
through its states; render, validate and reload nginx when the routed set changes. The watchdog
handler only wakes the loop; a periodic tick catches whatever events were lost.

Ordering is the point: a backend leaves nginx *before* the Emperor is woken to stop or reload it,
and joins nginx only *after* it answers a health probe.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from fleet import nginx, uwsgi, vassals
from fleet.backends import DRAINING, FAILED, HEALTHY, RELOADING, STARTING, Backend, wanted_routes
from fleet.errors import FleetError
from fleet.layout import Layout, write_atomically
from fleet.logs import failure_reason
from fleet.upstreams import render

log = logging.getLogger("fleet.control")


@dataclass
class Settings:
    tick: float = 0.5  # periodic reconcile when no event arrives
    debounce: float = 0.02  # collect a burst of file events into one sync
    start_timeout: float = 60.0  # a vassal not healthy by then is failed
    reload_timeout: float = 60.0
    batch_window: float = 3.0  # newly healthy backends wait at most this long for their batch
    emperor_poll: float = 2.0  # how often to read the Emperor's stats when nothing changed
    probe_failures_to_eject: int = 2
    health_interval: float = 0.5  # how often routed backends are probed (the loop may run more often)
    nudge_after: float = 1.0  # a reload the Emperor has not started by then is done through the FIFO
    drain_wait: float = 2.0  # how long an unrouted backend may take to finish what nginx sent it


@dataclass
class Counters:
    nginx_reloads: int = 0
    syncs: int = 0
    last_sync_ms: float = 0.0
    last_nginx_reload_ms: float = 0.0
    nginx_errors: int = 0


class ControlPlane:
    def __init__(
        self,
        layout: Layout,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.layout = layout
        self.settings = settings or Settings()
        self.clock = clock
        self.backends: dict[str, Backend] = {}
        self.counters = Counters()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.last_emperor_query = -1e9
        self.last_health_round = -1e9
        self.emperor: uwsgi.EmperorStats | None = None
        self.uwsgi_options = uwsgi.known_options(uwsgi.binary())
        self.last_state_doc: dict | None = None
        self.routed_now: set[str] = set(self._read_routed())

    # ---- the loop ----------------------------------------------------------------------------------

    def run(self) -> None:
        """Watch vassals/ and sync until SIGTERM/SIGINT (the signal handler only sets a flag)."""
        from fleet.watch import watch

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: (self.stopping.set(), self.wake.set()))
        observer = watch([self.layout.vassals, self.drain_dir], self.wake)
        log.info("watching %s", self.layout.vassals)
        try:
            while not self.stopping.is_set():
                woke = self.wake.wait(self._next_wait())
                if self.stopping.is_set():
                    break
                if woke:
                    time.sleep(self.settings.debounce)  # let a burst of events land
                self.wake.clear()
                self.sync_safely()
        finally:
            observer.stop()
            log.info("control plane stopped")

    def _next_wait(self) -> float:
        busy = any(b.state in (STARTING, RELOADING, DRAINING) or b.ready_at for b in self.backends.values())
        return 0.02 if busy else self.settings.tick

    def sync_safely(self) -> None:
        try:
            self.sync()
        except FleetError as e:
            self.counters.nginx_errors += 1
            log.error("%s", e)
        except Exception:
            log.exception("sync failed; retrying on the next tick")

    # ---- one reconcile step ------------------------------------------------------------------------

    def sync(self) -> None:
        started = time.perf_counter()
        now = self.clock()
        files = self._scan()
        changed = self._apply_file_changes(files, now)
        drains = self._drain_requests()
        for name in drains:
            b = self.backends.get(name)
            if b and b.state != DRAINING:
                b.enter(DRAINING, now)
                changed = True
        # Take leaving and reloading backends out of nginx before the Emperor hears of the change,
        # and let the requests nginx already sent them finish: a reload would stall them ~1 s.
        unrouted = self._apply_nginx(now, adding=False)
        self._wait_idle([n for n in unrouted if n in self.backends and self.backends[n].state in (RELOADING, DRAINING)])
        if changed or now - self.last_emperor_query >= self._emperor_period():
            self._query_emperor(now, files)
        self._observe(now)
        self._apply_nginx(now, adding=True)
        self.counters.syncs += 1
        self.counters.last_sync_ms = (time.perf_counter() - started) * 1000
        self._write_state()

    def _emperor_period(self) -> float:
        if any(b.file_gone for b in self.backends.values()):
            return 0.25  # a removal is waiting for the Emperor to stop the vassal
        unsettled = any(b.state != HEALTHY for b in self.backends.values())
        return self.settings.emperor_poll if unsettled else 5 * self.settings.emperor_poll

    def _scan(self) -> dict[str, int]:
        """The vassal files now present: {name: mtime_ns}."""
        found: dict[str, int] = {}
        try:
            entries = list(os.scandir(self.layout.vassals))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if not vassals.is_vassal_filename(entry.name):
                continue
            try:
                mtime_ns = entry.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            found[vassals.vassal_name(entry.name)] = mtime_ns
        return found

    def _validate(self, name: str) -> vassals.VassalFile:
        return vassals.read(self.layout.vassal_file(name), self.uwsgi_options, self.layout.app)

    def _apply_file_changes(self, files: dict, now: float) -> bool:
        changed = False
        for name, b in list(self.backends.items()):
            if name not in files and not b.file_gone:
                # The Emperor must be woken for this one too (after `fleet rm` drained it first).
                b.file_gone = True
                b.enter(DRAINING, now)
                changed = True
        for name, mtime_ns in files.items():
            b = self.backends.get(name)
            if b is None:
                parsed = self._validate(name)
                b = Backend(name, STARTING, mtime_ns, now)
                self.backends[name] = b
                if not parsed.valid:
                    log.info("%s: new vassal file", name)
                    b.enter(FAILED, now, parsed.reason())
                elif name in self.routed_now and self._serving(name, self.layout.socket(name)):
                    # A restarted control plane keeps routing what still serves: no 503 window.
                    log.info("%s: already routed and serving", name)
                    b.enter(HEALTHY, now)
                    b.served_mtime_ns = mtime_ns
                    b.routed = True
                else:
                    log.info("%s: new vassal file", name)
                changed = True
            elif b.mtime_ns != mtime_ns:
                b.mtime_ns = mtime_ns
                changed = True
                parsed = self._validate(name)
                if not parsed.valid:
                    b.enter(FAILED, now, parsed.reason())
                    b.ready_at = None
                elif b.state == DRAINING:
                    b.file_gone = False
                    b.enter(STARTING, now)  # deleted and dropped in again
                elif b.state in (FAILED, STARTING):
                    if b.state == FAILED:
                        self._clear_emperor_blacklist()
                    b.enter(STARTING, now)
                    b.old_workers = frozenset()
                elif b.state == RELOADING:
                    b.reload_again = True  # serialise: reload again once this one has finished
                else:
                    self._begin_reload(b, now)
        return changed

    def _begin_reload(self, b: Backend, now: float) -> None:
        try:
            b.old_workers = frozenset(w.pid for w in uwsgi.vassal_workers(self.layout.stats_socket(b.name)))
        except (OSError, ValueError):
            b.old_workers = frozenset()
        proc = self.emperor.vassals.get(b.name) if self.emperor else None
        b.last_mod_before = proc.last_mod if proc else None
        b.nudged = False
        b.reload_again = False
        b.ready_at = None
        b.enter(RELOADING, now)

    def _reload_started(self, b: Backend) -> bool:
        try:
            workers = uwsgi.vassal_workers(self.layout.stats_socket(b.name), timeout=0.3)
        except (OSError, ValueError):
            return True  # the master is busy or restarting: something is happening
        return any(w.pid not in b.old_workers or not w.accepting for w in workers)

    def _drain_requests(self) -> list[str]:
        try:
            return [p.name for p in self.drain_dir.iterdir() if vassals.is_valid_name(p.name)]
        except FileNotFoundError:
            return []

    @property
    def drain_dir(self) -> Path:
        return self.layout.run / "drain"

    # ---- the Emperor ---------------------------------------------------------------------------------

    def _query_emperor(self, now: float, files: dict) -> None:
        """Read the Emperor's stats; the connection also makes it rescan vassals/ at once."""
        self.last_emperor_query = now
        try:
            self.emperor = uwsgi.emperor_stats(self.layout.emperor_stats)
        except (OSError, ValueError) as e:
            log.debug("emperor stats unavailable: %s", e)
            self.emperor = None
            return
        # The Emperor sees a change only when the mtime's whole second moves past the last one it saw,
        # so a second change within one second is lost. The vassal's master FIFO reloads it anyway
        # (the file may belong to another user, as in compose, so the mtime cannot be moved on).
        for name, b in self.backends.items():
            proc = self.emperor.vassals.get(name)
            if b.state != RELOADING or b.nudged or proc is None or name not in files:
                continue
            second = b.mtime_ns // 1_000_000_000
            if second > proc.last_mod:
                continue  # the Emperor sees this one: the query above woke it to rescan
            missed_for_sure = b.last_mod_before is not None and second <= b.last_mod_before
            nothing_happened = now - b.since > self.settings.nudge_after and not self._reload_started(b)
            if missed_for_sure or nothing_happened:
                b.nudged = True
                self._reload_through_fifo(name)

    def _reload_through_fifo(self, name: str) -> None:
        """Gracefully reload one vassal through its master FIFO ('r'), without the Emperor."""
        try:
            fd = os.open(self.layout.fifo(name), os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fd, b"r")
            finally:
                os.close(fd)
            log.info("%s: reloading through its master FIFO (the Emperor misses a change within one second)", name)
        except OSError as e:
            log.warning("%s: cannot write to its master FIFO (%s); the change may not be applied", name, e)

    def _clear_emperor_blacklist(self) -> None:
        """SIGURG makes the Emperor forget its failing vassals, so a fixed file starts at once."""
        try:
            pid = int(self.layout.emperor_pid.read_text().strip())
            # In compose the Emperor runs in another container: its pid means nothing here.
            if str(self.layout.emperor_ini).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGURG)
        except (OSError, ValueError):
            pass

    # ---- observing the vassals -----------------------------------------------------------------------

    def _observe(self, now: float) -> None:
        s = self.settings
        health_round = now - self.last_health_round >= s.health_interval
        if health_round:
            self.last_health_round = now
        for name, b in list(self.backends.items()):
            sock = self.layout.socket(name)
            proc = self.emperor.vassals.get(name) if self.emperor else None
            blacklisted = self.emperor.blacklist.get(name) if self.emperor else None
            if b.state == DRAINING:
                gone = self.emperor is not None and proc is None
                if b.file_gone and (gone or now - b.since > s.reload_timeout):
                    # uWSGI's vacuum misses sockets inherited across a reload: tidy up after it.
                    for leftover in (sock, self.layout.stats_socket(name)):
                        leftover.unlink(missing_ok=True)
                    del self.backends[name]
                    self._forget_drain_request(name)
                    log.info("%s: removed", name)
                continue
            if b.state == STARTING:
                if blacklisted and not (proc and proc.accepting):
                    b.enter(FAILED, now, self._reason(name, "keeps exiting at start"))
                elif self._serving(name, sock):
                    self._become_healthy(b, now)
                elif now - b.since > s.start_timeout:
                    b.enter(FAILED, now, self._reason(name, f"not healthy {s.start_timeout:.0f} s after start"))
            elif b.state == RELOADING:
                if self._reload_finished(b, sock):
                    self._become_healthy(b, now)
                elif blacklisted:
                    b.enter(FAILED, now, self._reason(name, "exited during reload"))
                elif now - b.since > s.reload_timeout:
                    b.enter(FAILED, now, self._reason(name, f"reload not finished after {s.reload_timeout:.0f} s"))
            elif not health_round:
                continue  # healthy and failed backends are checked at the health interval
            elif b.state == HEALTHY:
                if uwsgi.probe(sock, timeout=1.0) or self._busy(name):
                    b.probe_failures = 0
                else:
                    b.probe_failures += 1
                    if b.probe_failures >= s.probe_failures_to_eject:
                        log.warning("%s: failed %d health probes; taking it out of nginx", name, b.probe_failures)
                        b.enter(STARTING, now, "stopped answering health probes")
                        b.ready_at = None
            elif b.state == FAILED:
                if self._file_valid(name) and not blacklisted and self._serving(name, sock):
                    self._become_healthy(b, now)  # e.g. the app was fixed and the Emperor retried

    def _file_valid(self, name: str) -> bool:
        return self._validate(name).valid

    def _serving(self, name: str, sock: Path) -> bool:
        """The app answers /healthz on the vassal's socket (its other workers may still be starting:
        they take requests from the same socket as soon as they are ready)."""
        return sock.exists() and uwsgi.probe(sock, timeout=0.5)

    def _busy(self, name: str) -> bool:
        """Every worker is serving a (long) request: alive, just slow to answer a probe."""
        try:
            workers = uwsgi.vassal_workers(self.layout.stats_socket(name), timeout=0.5)
        except (OSError, ValueError):
            return False
        return bool(workers) and all(w.status == "busy" for w in workers)

    def _reload_finished(self, b: Backend, sock: Path) -> bool:
        """A reload is done when every worker is new and accepting, and the app answers."""
        try:
            workers = uwsgi.vassal_workers(self.layout.stats_socket(b.name), timeout=0.3)
        except (OSError, ValueError):
            return False
        if not workers or any(w.pid in b.old_workers or not w.accepting for w in workers):
            return False
        return uwsgi.probe(sock, timeout=0.5)

    def _become_healthy(self, b: Backend, now: float) -> None:
        if b.reload_again:
            # A change arrived during this reload (reloads of one vassal are serialised): apply it now.
            self._begin_reload(b, now)
            self.last_emperor_query = -1e9  # wake the Emperor on this sync; it may or may not see it
            return
        b.enter(HEALTHY, now)
        b.served_mtime_ns = b.mtime_ns
        b.probe_failures = 0
        b.ready_at = now

    def _reason(self, name: str, fallback: str) -> str:
        reason = failure_reason(self.layout.log(name))
        return f"{reason} (see {self.layout.log(name)})" if reason else f"{fallback}; see {self.layout.log(name)}"

    def _forget_drain_request(self, name: str) -> None:
        try:
            (self.drain_dir / name).unlink()
        except FileNotFoundError:
            pass

    # ---- nginx ---------------------------------------------------------------------------------------

    def _wanted_routes(self, now: float, adding: bool) -> set[str]:
        return wanted_routes(self.routed_now, self.backends, now, self.settings.batch_window, adding)

    def _wait_idle(self, names: list[str]) -> None:
        """Wait (bounded) until these unrouted backends have no request in progress or queued."""
        deadline = time.monotonic() + self.settings.drain_wait
        pending = list(names)
        while pending and time.monotonic() < deadline:
            pending = [n for n in pending if self._has_work(n)]
            if pending:
                time.sleep(0.005)

    def _has_work(self, name: str) -> bool:
        try:
            workers = uwsgi.vassal_workers(self.layout.stats_socket(name), timeout=0.2)
        except (OSError, ValueError):
            return False
        return any(w.status != "idle" for w in workers)

    def _apply_nginx(self, now: float, adding: bool) -> set[str]:
        """Route to the wanted backends; returns the ones just taken out."""
        wanted = self._wanted_routes(now, adding)
        if wanted == self.routed_now:
            return set()
        content = render({n: self.layout.socket(n) for n in wanted}, self.layout.sockets)
        started = time.perf_counter()
        nginx.apply_upstreams(self.layout, content)
        self.counters.nginx_reloads += 1
        self.counters.last_nginx_reload_ms = (time.perf_counter() - started) * 1000
        added, removed = sorted(wanted - self.routed_now), sorted(self.routed_now - wanted)
        log.info(
            "nginx reloaded in %.0f ms: routing %s%s%s",
            self.counters.last_nginx_reload_ms,
            ", ".join(sorted(wanted)) or "nothing (JSON 503)",
            f"; added {', '.join(added)}" if added else "",
            f"; removed {', '.join(removed)}" if removed else "",
        )
        self.routed_now = wanted
        for name, b in self.backends.items():
            b.routed = name in wanted
            if b.routed:
                b.ready_at = None
        return set(removed)

    def _read_routed(self) -> list[str]:
        from fleet.upstreams import routed_names

        try:
            return routed_names(self.layout.upstreams_conf.read_text())
        except OSError:
            return []

    # ---- state for `fleet status`, `fleet add`, `fleet up` -----------------------------------------

    def _write_state(self) -> None:
        doc = {
            "control_pid": os.getpid(),
            "routed": sorted(self.routed_now),
            "counters": asdict(self.counters),
            "backends": {
                name: {
                    "state": b.state,
                    "error": b.error,
                    "routed": b.routed,
                    "mtime_ns": b.mtime_ns,
                    "served_mtime_ns": b.served_mtime_ns,
                    "since": round(time.time() - (self.clock() - b.since), 3),
                }
                for name, b in sorted(self.backends.items())
            },
        }
        comparable = {k: v for k, v in doc.items() if k != "counters"}
        comparable["reloads"] = self.counters.nginx_reloads
        if comparable == self.last_state_doc:
            return
        self.last_state_doc = comparable
        doc["written_at"] = time.time()
        write_atomically(self.layout.state_file, json.dumps(doc, indent=1) + "\n")


def main(layout: Layout) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s.%(msecs)03d %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    layout.make_run_dirs()
    (layout.run / "drain").mkdir(exist_ok=True)
    plane = ControlPlane(layout)
    plane.sync_safely()
    plane.run()
    return 0
