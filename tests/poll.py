"""The one deadline loop every test tier waits with: poll a probe, never sleep to synchronise."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    interval: float = 0.02,
    ignore: tuple[type[BaseException], ...] = (),
    details: Callable[[], str] = lambda: "",
) -> T:
    """Call `probe` until it returns something truthy; after `timeout` s fail, saying `what` and `details()`.

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
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for: {what}" + (f"\n{extra}" if extra else "")
            )
        time.sleep(interval)  # the polling interval: the probe, not the clock, decides
