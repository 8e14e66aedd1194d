"""Waiting with progress: one status line while a long operation runs, and the one wait loop fleet uses."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from fleet.errors import FleetError, Timeout


class Progress:
    """One status line, rewritten in place on a terminal, printed on change otherwise."""

    def __init__(self, out: TextIO):
        self.out = out
        self.tty = out.isatty()
        self.last = ""

    def show(self, text: str, elapsed: float | None = None) -> None:
        """Show `text` (prefixed with the elapsed time), in place on a terminal, once per change elsewhere."""
        shown = f"[{elapsed:4.1f} s] {text}" if elapsed is not None else text
        if self.tty:
            self.out.write("\r\033[K" + shown)
        elif text != self.last:
            self.out.write(shown + "\n")
        else:
            return
        self.last = text
        self.out.flush()

    def done(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\033[K")
        if text:
            self.out.write(text + "\n")
        self.out.flush()


# What a check returns each round: (verdict, progress text). Verdict None: not yet; "ok": done;
# anything else: the operation failed, and that is the message.
Check = Callable[[], tuple[str | None, str]]


def wait_until(
    what: str,
    check: Check,
    timeout: float,
    out: TextIO = sys.stdout,
    interval: float = 0.05,
    hint: str = "",
) -> float:
    """Call `check` until it says "ok" (returns the seconds it took) or fails (raises FleetError).

    Meanwhile show its progress text; after `timeout` seconds raise Timeout, naming `what` and `hint`.
    """
    progress = Progress(out)
    started = time.monotonic()
    while True:
        verdict, text = check()
        elapsed = time.monotonic() - started
        if verdict == "ok":
            progress.done(text or f"{what}: done in {elapsed:.2f} s")
            return elapsed
        if verdict:
            progress.done(f"{what}: {verdict}")
            raise FleetError(verdict)
        if elapsed > timeout:
            progress.done("")
            raise Timeout(f"{what}: not done after {timeout:.0f} s{'; ' + hint if hint else ''}")
        progress.show(text or f"{what}...", elapsed)
        time.sleep(interval)  # the polling interval; the check decides
