"""fleet.core.weights: slots shared by weight (largest remainder), interleaved, weight 0 a standby."""

from __future__ import annotations

from collections import Counter
from itertools import groupby
from pathlib import Path

import pytest

from fleet.core import weights
from fleet.published.overrides import Override, effective
from fleet.vassalfile import vassals
from fleet.vassalfile import weight as weight_key


def longest_run(order: list[str]) -> dict[str, int]:
    runs: dict[str, int] = {}
    for name, group in groupby(order):
        runs[name] = max(runs.get(name, 0), len(list(group)))
    return runs


def test_100_and_300_share_64_slots_a_quarter_and_three_quarters():
    order = weights.assign({"a": 100, "b": 300}, 64)
    assert Counter(order) == {"a": 16, "b": 48}


def test_the_smaller_backend_never_runs_twice_and_the_larger_runs_at_most_its_ratio():
    order = weights.assign({"a": 100, "b": 300}, 64)
    assert longest_run(order) == {"a": 1, "b": 3}


@pytest.mark.parametrize(
    "given",
    [{"a": 100, "b": 300}, {"a": 1, "b": 2, "c": 3}, {"a": 7, "b": 993}, {f"n{i}": 100 + 37 * i for i in range(10)}],
)
@pytest.mark.parametrize("slots", [64, 128, 512])
def test_every_share_is_within_one_slot_of_the_exact_one_and_slots_add_up(given, slots):
    counts = weights.counts(given, slots)
    assert sum(counts.values()) == slots
    total = sum(given.values())
    for name, w in given.items():
        assert abs(counts[name] - slots * w / total) < 1 + 1e-9


def test_64_slots_keep_every_two_backend_split_within_three_points():
    for a in range(1, 1001, 7):
        counts = weights.counts({"a": a, "b": 1000 - a + 1}, 64)
        exact = 100 * a / (a + 1000 - a + 1)
        assert abs(100 * counts.get("a", 0) / 64 - exact) < 3


def test_a_backend_with_any_weight_gets_at_least_one_slot():
    assert weights.counts({"a": 1, "b": 1000}, 64) == {"a": 1, "b": 63}


def test_weight_zero_is_a_standby_with_no_slot():
    order = weights.assign({"a": 100, "b": 0, "c": 100}, 64)
    assert set(order) == {"a", "c"} and len(order) == 64
    assert weights.shares({"a": 100, "b": 0, "c": 100}) == {"a": 50.0, "b": 0.0, "c": 50.0}


def test_every_backend_at_zero_shares_equally_rather_than_routing_nothing():
    assert Counter(weights.assign({"a": 0, "b": 0}, 64)) == {"a": 32, "b": 32}


def test_equal_weights_alternate_like_round_robin():
    assert weights.assign({"b": 100, "a": 100}, 4) == ["a", "b", "a", "b"]
    assert weights.assign({}, 4) == []


def test_the_assignment_is_deterministic_whatever_the_mapping_order():
    assert weights.assign({"a": 3, "b": 5, "c": 2}, 64) == weights.assign({"c": 2, "b": 5, "a": 3}, 64)


def test_the_vassal_file_bounds_are_the_cores():
    assert (weight_key.DEFAULT_WEIGHT, weight_key.MAX_WEIGHT) == (weights.DEFAULT_WEIGHT, weights.MAX_WEIGHT)


def test_a_vassal_file_weight_is_read_from_its_fleet_section():
    checked = vassals.parse(Path("a.ini"), b"[uwsgi]\nmodule = app\n[fleet]\nweight = 300\n")
    assert checked.valid and checked.weight == 300
    assert vassals.parse(Path("a.ini"), b"[uwsgi]\nmodule = app\n").weight == 100


@pytest.mark.parametrize("value", ["-1", "1001", "ten", "1.5", ""])
def test_a_bad_weight_is_a_problem_naming_the_line_and_the_range(value):
    checked = vassals.parse(Path("a.ini"), f"[uwsgi]\nmodule = app\n[fleet]\nweight = {value}\n".encode())
    assert not checked.valid
    assert checked.problems[0].line == 4
    assert "from 0 to 1000" in checked.problems[0].message


def test_a_run_time_override_holds_only_while_the_file_is_the_version_it_was_set_on():
    files, mtimes = {"a": 100, "b": 100}, {"a": 5, "b": 7}
    found = {"a": Override(0, 5), "b": Override(300, 6)}
    assert effective(files, mtimes, found) == {"a": 0, "b": 100}
