"""Drive wrk (the system's package) and read its results as numbers, through a small Lua reporter."""

from __future__ import annotations

import json
import shutil
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
    errors: int  # socket errors, timeouts and non-2xx/3xx answers
    background_busy: float = 0.0  # share of all CPUs busy just before the run, with no load sent

    def as_dict(self) -> dict:
        return asdict(self)


def parse(output: str) -> WrkResult:
    """Read the reporter's JSON line out of wrk's output."""
    for line in output.splitlines():
        if line.startswith("WRKJSON "):
            data = json.loads(line[len("WRKJSON ") :])
            errors = sum(
                data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
            )
            return WrkResult(
                rps=data["requests"] / (data["duration_us"] / 1e6),
                p50_ms=data["p50_us"] / 1000,
                p90_ms=data["p90_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                max_ms=data["max_us"] / 1000,
                requests=data["requests"],
                errors=errors,
            )
    raise ValueError(f"no wrk result in its output:\n{output[-2000:]}")


class Wrk:
    """Runs wrk against a URL with fixed threads/connections and returns a WrkResult per run."""

    def __init__(self, threads: int = 2, connections: int = 64) -> None:
        if WRK is None:
            raise RuntimeError("wrk is not installed: apt-get install -y wrk")
        self.threads = threads
        self.connections = connections
        self._dir = tempfile.TemporaryDirectory(prefix="bench-wrk-")
        self.script = Path(self._dir.name) / "report.lua"
        self.script.write_text(REPORTER)

    def run(self, url: str, seconds: float) -> WrkResult:
        argv = [
            WRK,
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            str(self.script),
            url,
        ]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, start_new_session=True)
        return parse(out.stdout + out.stderr)

    def close(self) -> None:
        self._dir.cleanup()
