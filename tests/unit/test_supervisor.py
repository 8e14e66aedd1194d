"""fleet.ops.supervisor: the restart backoff and the set-up a detached supervisor reads (no processes)."""

from __future__ import annotations

import signal

from fleet.ops.supervisor import BACKOFF_FIRST, BACKOFF_MAX, PartSpec, SupervisorSpec, backoff


def test_backoff_starts_small_doubles_and_is_capped():
    delays = [backoff(n) for n in range(1, 12)]
    assert delays[0] == BACKOFF_FIRST and delays[1] == 2 * BACKOFF_FIRST and delays[2] == 4 * BACKOFF_FIRST
    assert all(a <= b for a, b in zip(delays, delays[1:], strict=False))
    assert delays[-1] == BACKOFF_MAX


def test_a_plan_survives_the_round_trip_through_its_file(tmp_path):
    setup = SupervisorSpec(
        "gateway",
        [PartSpec("nginx", ["nginx", "-g", "daemon off;"], signal.SIGQUIT, 30.0, overlap=True)],
        {"FLEET_HARAKIRI": "62"},
        8080,
        "127.0.0.1",
    )
    setup.write(tmp_path / "spec.json")
    assert SupervisorSpec.read(tmp_path / "spec.json") == setup
