"""fleet.core.emperors: which Emperor runs which vassal file, and the globs that tell the Emperors so."""

from __future__ import annotations

import fnmatch
import re
import string

import pytest

from fleet.core import emperors
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
