"""Acting (I/O, no decisions): each kind of action the core returns is carried out here, and only here."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from fleet import uwsgi
from fleet.core import emperors
from fleet.core.actions import Action, ClearBlacklist, Forget, ReloadThroughFifo, Route, WakeEmperor
from fleet.errors import FleetError
from fleet.layout import Layout
from fleet.proxy.router import NginxRouter

log = logging.getLogger("fleet.control")


class Effects:
    def __init__(self, layout: Layout, router: NginxRouter, emperor_count: int = 1):
        self.layout, self.router, self.count = layout, router, emperor_count

    def apply(self, actions: tuple[Action, ...]) -> None:
        """Carry out `actions` in order. A failed one stops the rest: they may depend on it (a backend
        must be out of nginx before the Emperor stops it); the next pass sees the failure and decides again."""
        for action in actions:
            try:
                self.do(action)
            except (FleetError, OSError) as e:
                log.error("%s failed: %s", type(action).__name__, e)
                return

    def do(self, action: Action) -> None:
        match action:
            case Route(names):
                self.router.route(names)
            case WakeEmperor():
                self.wake_emperor()
            case ReloadThroughFifo(name):
                self.reload_through_fifo(name)
            case ClearBlacklist():
                self.clear_blacklist()
            case Forget(name):
                self.forget(name)
            case _:
                raise TypeError(f"unknown action {action!r}")

    def wake_emperor(self) -> None:
        """Connecting to an Emperor's stats socket makes it rescan its share of vassals/ at once. Every
        Emperor is woken, as the one was: the core wakes them only when every pending change may be acted
        on, and a rescan of unchanged files is a stat() of each."""
        for name in emperors.names(self.count):
            try:
                uwsgi.emperor_stats(self.layout.emperor_stats_of(name))
            except (OSError, ValueError) as e:
                log.debug("%s not answering (%s); it rescans by itself every few seconds", name, e)

    def reload_through_fifo(self, name: str) -> None:
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

    def clear_blacklist(self) -> None:
        """SIGURG makes each Emperor forget its failing vassals, so a fixed file starts at once."""
        for name in emperors.names(self.count):
            try:
                pid = int(self.layout.emperor_pid_of(name).read_text().strip())
                # In compose the Emperors run in another container: their pids mean nothing here.
                if str(self.layout.emperor_ini).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGURG)
            except (OSError, ValueError):
                pass

    def forget(self, name: str) -> None:
        """uWSGI's vacuum misses sockets inherited across a reload: tidy up after it."""
        for leftover in (self.layout.socket(name), self.layout.stats_socket(name), self.layout.drain_dir / name):
            leftover.unlink(missing_ok=True)
        log.info("%s: removed", name)
