"""A vassal's weight (pure): `[fleet] weight = N`, its share of its app's new requests (fleet.core.weights).

[fleet]
weight = 300      ; 0-1000, default 100; 0: a warm standby (probed, kept healthy, sent nothing)
"""

from __future__ import annotations

# The same bounds as fleet.core.weights (each pure package imports only itself; a unit test ties them).
DEFAULT_WEIGHT = 100
MAX_WEIGHT = 1000

KEYS = ("weight",)


def parse_value(value: str) -> int | None:
    """The weight `value` stands for, or None if it is not a whole number from 0 to MAX_WEIGHT."""
    text = value.strip()
    if not text.isdigit() or int(text) > MAX_WEIGHT:
        return None
    return int(text)


def parse(options: list[tuple[str, str, int]]) -> tuple[int, list[tuple[str, str, int]]]:
    """The weight from the [fleet] section's (key, value, line) options for KEYS, and problems (message, fix, line)."""
    weight, problems = DEFAULT_WEIGHT, []
    for _key, value, line in options:
        parsed = parse_value(value)
        if parsed is None:
            problems.append(
                (f"weight {value!r} is not a whole number from 0 to {MAX_WEIGHT}", "write e.g. weight = 100", line)
            )
        else:
            weight = parsed
    return weight, problems
