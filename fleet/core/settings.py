"""Every timeout and interval of the control plane, in one place (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    tick: float = 0.5  # how often to look when nothing is in flight (lost file events are caught then)
    # ... when file events (inotify) wake the loop: then the tick only catches a lost one, and each idle pass
    # costs a scan of vassals/ and a look at every backend (about 3 ms at 200 backends).
    event_tick: float = 1.0
    busy_interval: float = 0.02  # how often to look while a backend is starting, reloading or leaving
    debounce: float = 0.02  # after a file event, wait this long for the rest of its burst
    start_timeout: float = 60.0  # a vassal not healthy by then is failed
    reload_timeout: float = 60.0  # a reload (or a removal) not finished by then is failed (or given up)
    # how long an unrouted backend may take to finish what nginx sent it: what its workers execute and what
    # waits behind them in its socket's backlog (which the Emperor's stop would reset); idle ends it sooner
    drain_wait: float = 10.0
    drain_settle: float = 0.25  # ... and its idle workers prove it drained only this long after it left
    batch_window: float = 3.0  # newly healthy backends wait at most this long for their batch
    # How often routed and failed backends are probed: a hung one is ejected within about two of these (three
    # when its master still answers and its users got answers right up to the hang: those stand for a probe).
    # Each probe is a request to the app; 0.5 s made probing half of an idle control plane's CPU at 50 vassals.
    health_interval: float = 1.0
    probe_failures_to_eject: int = 2
    emperors: int = 2  # how many Emperors share vassals/ (fleet.core.emperors): each is read and woken
    emperor_poll: float = 2.0  # how often to read the Emperor's stats while something is unsettled
    emperor_idle_poll: float = 10.0  # ... and when everything is healthy
    emperor_urgent_poll: float = 0.25  # ... while waiting for it to stop or reload a vassal
    nudge_after: float = 1.0  # a reload the Emperor has not started by then is done through the FIFO
    routing_retry: float = 2.0  # after nginx rejected a routing change, try again this much later
    # How often pid, workers and requests are read for status and metrics while someone watches (the status
    # page, /metrics or `fleet status` asked within watch_window) or something changed that recently ...
    usage_interval: float = 1.0
    usage_idle_interval: float = 10.0  # ... and otherwise, for state.json's totals
    watch_window: float = 30.0  # longer than the status page's long poll (25 s) and a usual scrape interval
    memory_interval: float = 60.0  # how often each vassal's memory (PSS, ~2 ms a process) is read again ...
    memory_idle_interval: float = 600.0  # ... while nobody watches the usage (see usage_round)
    probe_timeout: float = 0.5
    flap_crashes: int = 3  # this many crashes of a healthy backend ...
    flap_window: float = 60.0  # ... within this many seconds make it failed (flapping)
    flap_backoff: float = 10.0  # then it waits this long before it starts again, doubled per crash
    flap_backoff_max: float = 300.0
    # Outlier ejection (fleet/core/outliers.py): a routed backend whose answers turn to 5xx is taken out.
    outlier_window: int = 10  # its last this many answers ...
    outlier_5xx: int = 5  # ... with this many 5xx (or timeouts) eject it
    outlier_interval: float = 1.0  # or over this many seconds ...
    outlier_rate_points: float = 20.0  # ... its 5xx rate this many points above the other routed backends'
    outlier_min_answers: int = 5  # (each side with at least this many answers in the interval)
    # Out at least this long (Envoy's base_ejection_time is 30 s), doubled per ejection within outlier_memory:
    # a backend still broken when it comes back costs another burst of 5xx, ever more rarely.
    outlier_ejection: float = 10.0
    outlier_ejection_max: float = 300.0
    outlier_memory: float = 600.0
    outlier_max_share: float = 0.5  # at most this share of the backends ejected as outliers at once (at least 1)
    outlier_recheck: float = 0.1  # while a routed backend answers some 5xx, read its answers this often
