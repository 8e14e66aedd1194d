"""Drive wrk (the system's package) and read its results as numbers, through a small Lua reporter.

wrk counts what a keep-alive client sees: socket errors by kind (connect, read, write, timeout) and
answers that are not 2xx/3xx (`non2xx`). A run either lasts a fixed time (`run`) or until it is
stopped (`start` ... `stop`: SIGINT, on which wrk ends its threads and reports as usual).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

WRK = shutil.which("wrk")

# wrk calls done() once at the end; it prints one JSON line that parse() picks out of the output.
REPORTER = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d,'
    .. ' "max_us": %d, "mean_us": %.1f, "connect_errors": %d, "read_errors": %d,'
    .. ' "write_errors": %d, "status_errors": %d, "timeouts": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status,
    e.timeout))
end
"""


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    errors: int  # all of the below: socket errors and non-2xx/3xx answers
    connect_errors: int = 0
    read_errors: int = 0  # includes a connection closed by the server with a request outstanding
    write_errors: int = 0
    timeouts: int = 0
    non2xx: int = 0  # answers with a status >= 400 (wrk's "Non-2xx or 3xx responses")
    background_busy: float = 0.0  # share of all CPUs busy just before the run, with no load sent

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    def as_dict(self) -> dict:
        return asdict(self)


def parse(output: str) -> WrkResult:
    """Read the reporter's JSON line out of wrk's output."""
    for line in output.splitlines():
        if line.startswith("WRKJSON "):
            data = json.loads(line[len("WRKJSON ") :])
            kinds = {
                "connect_errors": data["connect_errors"],
                "read_errors": data["read_errors"],
                "write_errors": data["write_errors"],
                "timeouts": data["timeouts"],
                "non2xx": data["status_errors"],
            }
            return WrkResult(
                rps=data["requests"] / (data["duration_us"] / 1e6) if data["duration_us"] else 0.0,
                p50_ms=data["p50_us"] / 1000,
                p90_ms=data["p90_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                max_ms=data["max_us"] / 1000,
                requests=data["requests"],
                errors=sum(kinds.values()),
                **kinds,
            )
    raise ValueError(f"no wrk result in its output:\n{output[-2000:]}")


class Running:
    """A wrk run in the background, until `stop()`."""

    def __init__(self, popen: subprocess.Popen) -> None:
        self.popen = popen

    def stop(self, timeout: float = 30.0) -> WrkResult:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
        try:
            out, err = self.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            out, err = self.popen.communicate()
        return parse(out + err)


class Wrk:
    """Runs wrk against a URL with fixed threads/connections and returns a WrkResult per run."""

    def __init__(
        self, threads: int = 2, connections: int = 64, timeout: float = 5.0, headers: tuple[str, ...] = ()
    ) -> None:
        if WRK is None:
            raise RuntimeError("wrk is not installed: apt-get install -y wrk")
        self.threads = threads
        self.connections = connections
        self.timeout = timeout
        self.headers = headers  # e.g. "Connection: close": a new connection (and TLS handshake) per request
        self._dir = tempfile.TemporaryDirectory(prefix="bench-wrk-")
        self.script = Path(self._dir.name) / "report.lua"
        self.script.write_text(REPORTER)

    def _argv(self, url: str, seconds: float) -> list[str]:
        return [
            WRK,
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            f"{self.timeout:g}s",
            "-s",
            str(self.script),
            *(arg for header in self.headers for arg in ("-H", header)),
            url,
        ]

    def run(self, url: str, seconds: float) -> WrkResult:
        argv = self._argv(url, seconds)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, start_new_session=True)
        return parse(out.stdout + out.stderr)

    def start(self, url: str, max_seconds: float = 600) -> Running:
        """Start wrk in the background (at most `max_seconds`); `stop()` ends it and returns its result."""
        popen = subprocess.Popen(
            self._argv(url, max_seconds),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        return Running(popen)

    def close(self) -> None:
        self._dir.cleanup()
