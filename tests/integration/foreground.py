"""`fleet up` run in the foreground, as from a terminal, for the tests of what it does there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from harness.cluster import Cluster


@contextmanager
def foreground_up(c: Cluster, stderr: int = subprocess.DEVNULL) -> Iterator[subprocess.Popen]:
    """`fleet up` in the foreground of a session of its own, its stdout a pipe: yielded once it says it
    serves, its processes registered for the cluster's teardown; its group killed if it is still running
    at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleet", "--root", str(c.root), "up", "--port", str(c.port)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,
    )
    try:
        c.wait(lambda: b"fleet: serving on" in proc.stdout.readline(), "up says it serves", 60)
        c.groups.update(c.pids().values())
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
