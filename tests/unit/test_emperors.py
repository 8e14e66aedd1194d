"""fleet.core.emperors: which Emperor runs which vassal file, and the globs that tell the Emperors so."""

from __future__ import annotations

import fnmatch
import re
import string

import pytest

from fleet.core import emperors
from fleet.core.stats import BlacklistEntry, EmperorStats, VassalProcess
from fleet.vassalfile.vassals import NAME_PATTERN, RESERVED_NAMES


@pytest.mark.parametrize("count", range(1, emperors.MAX_EMPERORS + 1))
def test_every_allowed_last_character_is_in_exactly_one_class(count):
    dealt = [c for k in range(count) for c in emperors.characters(k, count)]
    assert sorted(dealt) == sorted(emperors.CHARACTERS)


def test_the_characters_are_those_a_vassal_name_may_end_with():
    ends = {c for c in string.printable if re.fullmatch(NAME_PATTERN, f"a{c}")}
    assert ends == set(emperors.CHARACTERS)


@pytest.mark.parametrize("count", range(1, emperors.MAX_EMPERORS + 1))
def test_every_file_name_matches_exactly_the_glob_of_its_owner(count):
    globs = [emperors.share(k, count) for k in range(count)]
    # Every allowed last character, and others no valid name has (the last class still takes them).
    for last in emperors.CHARACTERS + "ABZ.~!]^[":
        name = f"web{last}"
        matching = [k for k, g in enumerate(globs) if fnmatch.fnmatchcase(f"{name}.ini", g)]
        assert matching == [emperors.owner(name, count)], (name, globs)


def test_one_emperor_keeps_todays_glob_and_names():
    assert emperors.share(0, 1) == "*.ini"
    assert emperors.names(1) == ("emperor",)
    assert emperors.owner_name("anything", 1) == "emperor"


def test_numbered_replicas_alternate_between_two_emperors():
    owners = [emperors.owner(f"web-{i}", 2) for i in range(1, 7)]
    assert owners == [1, 0, 1, 0, 1, 0]
    assert emperors.names(2) == ("emperor-1", "emperor-2")


def test_the_shares_of_two_emperors_are_a_class_and_its_complement():
    assert emperors.share(0, 2) == "*[02468acegikmoqsuwy-].ini"
    assert emperors.share(1, 2) == "*[!02468acegikmoqsuwy-].ini"


def test_a_dash_in_a_class_stands_for_itself_not_a_range():
    glob = emperors.share(0, 2)
    assert glob.endswith("-].ini")
    assert not fnmatch.fnmatchcase("web1.ini", glob)  # a range y-] would not exist; 1 is not in it either


def test_hidden_files_are_in_no_share():
    # glob(3) never matches a leading dot with `*`; fnmatch would, so the pattern must start with `*`.
    assert all(emperors.share(k, 3).startswith("*") for k in range(3))


@pytest.mark.parametrize("count", [0, emperors.MAX_EMPERORS + 1])
def test_a_count_out_of_range_is_refused(count):
    with pytest.raises(ValueError, match="1 to"):
        emperors.names(count)


def test_emperor_part_names_are_told_from_other_parts():
    assert emperors.is_emperor("emperor") and emperors.is_emperor("emperor-2")
    assert not any(emperors.is_emperor(p) for p in ("nginx", "control", "supervisor", "emperor-x", "emperors"))


def test_no_vassal_may_take_an_emperors_name():
    # Its log would be the Emperor's (run/logs/emperor-2.log).
    assert set(emperors.names(emperors.MAX_EMPERORS)) <= RESERVED_NAMES


def _stats(*names: str, blacklisted: tuple[str, ...] = ()) -> EmperorStats:
    vassals = {n: VassalProcess(n, 100, 0, True, True, 0, False) for n in names}
    return EmperorStats(vassals, {n: BlacklistEntry(n, 1, 1) for n in blacklisted})


def test_the_emperors_answers_are_merged_into_one():
    merged = emperors.merge({"emperor-1": _stats("b-2"), "emperor-2": _stats("b-1", blacklisted=("x",))}, {})
    assert merged is not None and set(merged.vassals) == {"b-1", "b-2"} and set(merged.blacklist) == {"x"}


def test_an_emperor_that_did_not_answer_counts_with_its_last_answer():
    last = {"emperor-2": _stats("b-1")}
    merged = emperors.merge({"emperor-1": _stats("b-2"), "emperor-2": None}, last)
    assert merged is not None and set(merged.vassals) == {"b-1", "b-2"}


def test_no_answer_at_all_is_none_as_with_one_emperor():
    assert emperors.merge({"emperor-1": None, "emperor-2": None}, {"emperor-1": _stats("b-2")}) is None


def test_one_emperor_is_started_as_before_and_each_of_several_with_its_name_and_share():
    from fleet.ops.lifecycle import emperor_share

    assert emperor_share(0, 1) == []  # emperor.ini's own defaults: every *.ini, run/emperor.sock
    assert emperor_share(1, 2) == [
        "--set-ph",
        "fleet-emperor=emperor-2",
        "--set-ph",
        f"fleet-share={emperors.share(1, 2)}",
    ]
