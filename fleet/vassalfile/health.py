"""What counts as healthy for one vassal (pure): the probe's path and the answers it accepts.

By default fleet probes `GET /healthz` and accepts any answer below 500: an app that has no such route
answers 404, which still proves that it is imported and serving; a 5xx (or no answer) does not. A
vassal file may choose, in a `[fleet]` section (uWSGI never reads it, so strict mode is unaffected):

    [fleet]
    health_path = /ready
    health_status = 200        ; or a list/ranges: 200,204 or 200-299; or `any` (below 500)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fleet.vassalfile import static, weight

_STATUS_RE = re.compile(r"\d{3}(-\d{3})?\Z")
KNOWN_KEYS = ("health_path", "health_status", *static.KNOWN_KEYS, *weight.KEYS)


@dataclass(frozen=True)
class HealthCheck:
    path: str = "/healthz"
    status: str = "any"  # "any" (below 500), or codes and ranges: "200", "200,204", "200-299"

    def accepts(self, status: int) -> bool:
        if self.status == "any":
            return status < 500
        for part in self.status.split(","):
            low, _, high = part.strip().partition("-")
            if int(low) <= status <= int(high or low):
                return True
        return False

    def expected(self) -> str:
        return "an answer below 500" if self.status == "any" else self.status


def parse(options: list[tuple[str, str, int]]) -> tuple[HealthCheck, list[tuple[str, str, int]]]:
    """The check from the [fleet] section's (key, value, line) options, and problems (message, fix, line)."""
    path, status = HealthCheck.path, HealthCheck.status
    problems = []
    for key, value, line in options:
        if key == "health_path":
            if not value.startswith("/") or any(c.isspace() for c in value):
                problems.append((f"health_path {value!r} is not a path", "write e.g. health_path = /ready", line))
            else:
                path = value
        elif key == "health_status":
            parts = [p.strip() for p in value.split(",")]
            if value != "any" and not all(_STATUS_RE.match(p) for p in parts):
                problems.append((f"health_status {value!r} is not a status list", "write 200, 200-299 or any", line))
            else:
                status = value if value == "any" else ",".join(parts)
        elif key not in KNOWN_KEYS:  # the others' own parsers check them (static: fleet.vassalfile.static)
            problems.append((f"unknown [fleet] setting {key!r}", f"known: {', '.join(KNOWN_KEYS)}", line))
    return HealthCheck(path, status), problems
