"""Certificate rotation, the edges: look at the operator's pair about once a second, load it when the core
says so (fleet/core/tls.py decides), install a good one for nginx, tell about it (log, events, state).

nginx is never reloaded for a rotation: it reads run/tls/serving.pem at each handshake.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from fleet.core import tls as core
from fleet.layout import Layout
from fleet.proxy import nginx, tls
from fleet.published.events import Event, EventFile

log = logging.getLogger("fleet.control")

NAME = "[https]"  # the events' name: never a vassal's (brackets are not allowed in one)


class CertWatcher:
    def __init__(
        self,
        layout: Layout,
        cert: str,
        key: str,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 1.0,
        group: Callable[[], int | None] = nginx.worker_group,
    ):
        self.layout, self.cert, self.key, self.clock, self.interval = layout, cert, key, clock, interval
        self.group = group
        # What `fleet up` installed (or an earlier control plane did) is served until a change is judged.
        fingerprint, not_after, serial = tls.describe(tls.serving_pem(layout))
        self.watch = core.Watch(serving=fingerprint, serving_serial=serial, serving_not_after=not_after)
        tls.write_state(layout, self.watch, cert, key)
        self.looked_at: float | None = None
        layout.logs.mkdir(parents=True, exist_ok=True)  # the edge has no other use for run/logs
        self.events = EventFile(layout.events_file)

    def due_in(self) -> float:
        """Seconds until the next look."""
        if self.looked_at is None:
            return 0.0
        return max(0.0, self.looked_at + self.interval - self.clock())

    def look(self) -> None:
        """A look, if one is due: install a changed, settled, good pair; refuse a bad one, with the reason."""
        if self.due_in() > 0:
            return
        self.looked_at = self.clock()
        pair = tls.identify(self.cert, self.key)
        self.watch, load_now = core.needs_loading(self.watch, pair)
        if not load_now:
            return
        staged = tls.stage(self.layout, self.cert, self.key, self.group())
        before = self.watch
        self.watch, verdict = core.judge(self.watch, pair, staged.loaded, time.time())
        try:
            if verdict is not None and verdict.install:
                tls.commit(self.layout, staged)
        except OSError as e:  # e.g. a full disk: nginx keeps the last good file, and this is tried again
            self.watch = replace(before, seen=None)
            verdict = core.Verdict(False, f"could not install the new pair ({e}); kept the last good one")
        finally:
            tls.discard(staged)
        if verdict is not None:
            (log.info if verdict.install else log.warning)("https: %s", verdict.message)
            self.events(Event(NAME, None, None, verdict.message, time.time()))
        if self.watch != before or verdict is not None:
            tls.write_state(self.layout, self.watch, self.cert, self.key)
