"""Which Emperor runs which vassal file (pure): several Emperors, each with a disjoint share of vassals/.

uWSGI's vassals exit when their Emperor dies (uwsgi-2.0 core/emperor.c), so one Emperor is one point of
failure for every backend. With N Emperors, each watches a glob of its own and a killed one takes only its
share down: nginx retries the GETs on the others' backends meanwhile.

A share is a class of the file name's last character, dealt round robin over the characters a vassal name
may end with, so that numbered replicas (web-1, web-2, ...) land on different Emperors. The last class is
the complement of the others (glob(3) `[!...]`): together they cover every file name exactly once, so the
Emperors need nothing from the control plane to agree on who runs what.
"""

from __future__ import annotations

from collections.abc import Mapping

from fleet.core.stats import EmperorStats

# The characters a vassal name may end with ([a-z0-9][a-z0-9_-]*), in the order they are dealt.
CHARACTERS = "0123456789abcdefghijklmnopqrstuvwxyz-_"
MAX_EMPERORS = 8
ONE = "emperor"  # the one Emperor's name (run/emperor.sock, run/emperor.pid), as before there were several


def names(count: int) -> tuple[str, ...]:
    """The Emperors' names: `emperor` alone, else emperor-1 ... emperor-N (their stats socket, pid file, log)."""
    _check(count)
    return (ONE,) if count == 1 else tuple(f"emperor-{k}" for k in range(1, count + 1))


def is_emperor(part: str) -> bool:
    """A part name (in run/processes-*.json) that is one of the Emperors."""
    return part == ONE or (part.startswith(f"{ONE}-") and part[len(ONE) + 1 :].isdigit())


def characters(index: int, count: int) -> str:
    """The last characters of the names Emperor `index` (0-based) of `count` runs; the last one also runs
    every name ending otherwise (not a valid vassal name: the launcher refuses it, as before)."""
    _check(count)
    return CHARACTERS[index::count]


def owner(name: str, count: int) -> int:
    """The index (0-based) of the Emperor of `count` that runs vassals/NAME.ini."""
    _check(count)
    at = CHARACTERS.find(name[-1:]) if name else -1
    return count - 1 if at < 0 else at % count


def owner_name(name: str, count: int) -> str:
    return names(count)[owner(name, count)]


def share(index: int, count: int) -> str:
    """The glob (file name, under vassals/) of Emperor `index` of `count`: `*.ini` for one Emperor."""
    _check(count)
    if count == 1:
        return "*.ini"
    if index < count - 1:
        return f"*[{_bracket(characters(index, count))}].ini"
    others = "".join(characters(k, count) for k in range(count - 1))
    return f"*[!{_bracket(others)}].ini"


def _bracket(chars: str) -> str:
    """Characters for a glob(3) bracket expression: `-` last, where it stands for itself."""
    return "".join(c for c in chars if c != "-") + ("-" if "-" in chars else "")


def merge(answers: Mapping[str, EmperorStats | None], last: Mapping[str, EmperorStats]) -> EmperorStats | None:
    """The Emperors' stats as one (their shares are disjoint): each one's answer, or for one that did not
    answer (restarting, slow), its last answer, as with a single Emperor. None if none answered now."""
    if all(answer is None for answer in answers.values()):
        return None
    vassals, blacklist = {}, {}
    for name, answer in answers.items():
        stats = answer if answer is not None else last.get(name)
        if stats is not None:
            vassals.update(stats.vassals)
            blacklist.update(stats.blacklist)
    return EmperorStats(vassals, blacklist)


def _check(count: int) -> None:
    if not 1 <= count <= MAX_EMPERORS:
        raise ValueError(f"the number of Emperors is 1 to {MAX_EMPERORS}, not {count}")
