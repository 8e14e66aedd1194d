"""The one deadline loop tests, bench and soak wait with: poll a probe, never sleep to synchronise."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A `wait_for` ran out of time: a failed test in tests, a finding in bench and soak."""


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    interval: float = 0.02,
    ignore: tuple[type[BaseException], ...] = (),
    details: Callable[[], str] = lambda: "",
) -> T:
    """Call `probe` until it returns something truthy, and return that; after `timeout` s raise WaitTimeout,
    saying `what` and `details()` (a cluster's logs, a load's summary).

    Exceptions listed in `ignore` count as "not yet" (a socket that is not there yet, say).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = probe()
        except ignore:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            extra = details()
            raise WaitTimeout(f"timed out after {timeout:.0f} s waiting for: {what}" + (f"\n{extra}" if extra else ""))
        time.sleep(interval)  # the polling interval: the probe, not the clock, decides
