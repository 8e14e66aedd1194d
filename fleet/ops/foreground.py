"""A foreground `fleet up`: the parts' logs with a prefix, and the supervisor kept turning, until Ctrl-C."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TextIO, cast

from fleet.layout import Layout
from fleet.logs import Follower
from fleet.ops.shutdown import tidy
from fleet.ops.supervisor import Supervisor

GATEWAY_LOGS = {"control", "nginx", "nginx-error"}
LOG_PERIOD = 0.1  # how often the logs are read for new lines (a part's exit or a signal is seen at once)


def _own_logs(layout: Layout, component: str) -> list[Path]:
    """The logs a component shows (in compose, each container prints only its own)."""
    logs = sorted(p for p in layout.logs.glob("*.log") if p.name != "nginx-access.log")
    if component == "gateway":
        return [p for p in logs if p.stem in GATEWAY_LOGS]
    if component == "emperor":
        return [p for p in logs if p.stem not in GATEWAY_LOGS]
    return logs


def supervise_in_foreground(layout: Layout, component: str, supervisor: Supervisor, out: TextIO) -> int:
    """Stream the parts' logs with a prefix and keep the parts alive until Ctrl-C, SIGTERM or SIGHUP;
    then stop gracefully. Output that goes away (a closed pipe) stops nothing but the output."""
    stop_requested: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: stop_requested.append(signum))
    out = cast(TextIO, SafeOutput(out))  # what is used of a TextIO here and in Follower: write, flush, isatty
    follower = Follower(out)
    out.write("fleet: following logs; Ctrl-C stops the cluster gracefully\n")
    try:
        while not stop_requested:
            follower.poll(_own_logs(layout, component))
            for line in supervisor.check():
                out.write(f"fleet: {line}\n")
            supervisor.wait(LOG_PERIOD)
        out.write("\nfleet: stopping gracefully...\n")
    finally:
        supervisor.stop(lambda line: out.write(line + "\n"))
        layout.state_file.unlink(missing_ok=True)
        tidy(layout)
        out.write("fleet: stopped\n")
    return 0


class SafeOutput:
    """A stream that swallows a closed pipe (`fleet up | head`): output stops, the cluster does not."""

    def __init__(self, out: TextIO):
        self.out, self.broken = out, False

    def write(self, text: str) -> None:
        if not self.broken:
            try:
                self.out.write(text)
                self.out.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.broken = True

    def flush(self) -> None:
        self.write("")

    def isatty(self) -> bool:
        return not self.broken and self.out.isatty()
