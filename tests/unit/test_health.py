"""fleet.vassalfile.health: what counts as healthy, by default and as a vassal's [fleet] section says."""

from __future__ import annotations

import pytest

from fleet.vassalfile import health, vassals
from fleet.vassalfile.health import HealthCheck


@pytest.mark.parametrize(
    ("status", "ok"), [(200, True), (302, True), (404, True), (499, True), (500, False), (503, False)]
)
def test_by_default_any_answer_below_500_is_healthy(status, ok):
    # An app without /healthz answers 404: it is imported and serving.
    assert HealthCheck().accepts(status) is ok


def test_a_status_list_accepts_only_its_codes_and_ranges():
    check = HealthCheck("/ready", "200,204-206")
    assert [s for s in (200, 201, 204, 205, 206, 207, 404) if check.accepts(s)] == [200, 204, 205, 206]


def test_the_fleet_section_sets_the_check_and_uwsgi_options_stay_apart():
    text = b"[uwsgi]\nprocesses = 1\n[fleet]\nhealth_path = /ready\nhealth_status = 200, 204\n"
    parsed = vassals.parse(vassals.Path("vassals/app.ini"), text)
    assert parsed.valid, parsed.problems
    assert parsed.health == HealthCheck("/ready", "200,204")
    assert [o.key for o in parsed.options] == ["processes"]


def test_a_file_with_only_a_fleet_section_is_a_backend_with_every_default():
    parsed = vassals.parse(vassals.Path("vassals/app.ini"), b"[fleet]\nhealth_status = 200\n")
    assert parsed.valid and parsed.options == () and parsed.health.status == "200"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("health_path = ready", "not a path"),
        ("health_status = ok", "not a status list"),
        ("helth_path = /x", "unknown [fleet] setting 'helth_path'"),
    ],
)
def test_bad_fleet_settings_are_problems_on_their_line(line, says):
    parsed = vassals.parse(vassals.Path("vassals/app.ini"), f"[uwsgi]\n[fleet]\n{line}\n".encode())
    assert not parsed.valid
    assert says in parsed.problems[0].message and parsed.problems[0].line == 3


def test_parse_returns_problems_with_a_fix():
    check, problems = health.parse([("health_status", "abc", 7)])
    assert check == HealthCheck() and problems[0][1] == "write 200, 200-299 or any" and problems[0][2] == 7
