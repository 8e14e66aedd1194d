"""Outlier ejection, or passive health (pure): a routed backend whose answers turn to 5xx is taken out.

nginx writes the upstream status of every answer (fleet/proxy/answers.py reads it); each pass the core
notes them per backend here, and ejects a healthy, routed backend when
- `outlier_5xx` of its last `outlier_window` answers were 5xx (504: nginx timed out waiting for it), or
- over the last `outlier_interval` seconds its 5xx rate is `outlier_rate_points` points above the rest
  of the routed backends' (each side with at least `outlier_min_answers` answers),
as Envoy's `consecutive_5xx` and `success_rate` detectors do. An outlier differs from the others: when the
others' last answers are as bad (the app fails everywhere), nobody is ejected. Never the last healthy
routed backend (the panic threshold), nor more than `outlier_max_share` of them at once (at least one):
the others are kept, and their error says why. An ejected backend stays out at least its ejection
time (`outlier_ejection`, doubled for each ejection within `outlier_memory`, capped at
`outlier_ejection_max`, like Envoy's base_ejection_time), then is routed again once its health probe
answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from fleet.core.settings import Settings

PREFIX = "answers 5xx"  # every outlier reason starts with it (events, status, the metrics' reason label)
PANIC = "kept routed: the last healthy backend (panic threshold)"
TOO_MANY = "kept routed: enough backends are ejected already"


@dataclass(frozen=True)
class Record:
    """What is remembered of one backend's answers and ejections."""

    recent: tuple[int, ...] = ()  # the status of its last answers, oldest first, at most outlier_window
    interval: tuple[tuple[float, int, int], ...] = ()  # per pass within outlier_interval: (at, answers, 5xx)
    ejections: tuple[float, ...] = ()  # when it was ejected as an outlier, within outlier_memory
    ejected_until: float | None = None  # not routed again before then, even if its probe answers


def note(r: Record, statuses: Iterable[int], now: float, s: Settings) -> Record:
    """`r` with the answers seen since the last pass, and those older than the window forgotten."""
    statuses = tuple(statuses)
    if not statuses and (not r.interval or now - r.interval[0][0] <= s.outlier_interval):
        return r  # nothing new and nothing to forget: the same record (an idle backend's, every pass)
    recent = (r.recent + statuses)[-s.outlier_window :]
    interval = tuple(e for e in r.interval if now - e[0] <= s.outlier_interval)
    if statuses:
        interval += ((now, len(statuses), sum(1 for x in statuses if x >= 500)),)
    return replace(r, recent=recent, interval=interval)


def forget_answers(r: Record) -> Record:
    """`r` without its answers (it leaves routing, or comes back: only new answers judge it)."""
    return replace(r, recent=(), interval=())


def _totals(r: Record) -> tuple[int, int]:
    return sum(e[1] for e in r.interval), sum(e[2] for e in r.interval)


def verdict(name: str, records: Mapping[str, Record], s: Settings) -> str:
    """Why backend `name` is an outlier among the routed healthy `records` ("" if it is not)."""
    r = records[name]
    bad = [x for x in r.recent if x >= 500]
    if len(bad) >= s.outlier_5xx and not _others_as_bad(name, records, 100.0 * len(bad) / len(r.recent), s):
        timeouts = sum(1 for x in bad if x == 504)
        what = "timed out" if timeouts * 2 >= len(bad) else "5xx"
        codes = ", ".join(str(c) for c in sorted(set(bad)))
        return f"{PREFIX}: {len(bad)} of its last {len(r.recent)} answers {what} ({codes})"
    answers, errors = _totals(r)
    if answers < s.outlier_min_answers:
        return ""
    rest = [_totals(o) for n, o in records.items() if n != name]
    rest_answers, rest_errors = sum(a for a, _ in rest), sum(e for _, e in rest)
    if rest_answers < s.outlier_min_answers:
        return ""
    own, others = 100.0 * errors / answers, 100.0 * rest_errors / rest_answers
    if own - others >= s.outlier_rate_points:
        return f"{PREFIX}: {own:.0f}% 5xx rate in the last {s.outlier_interval:g} s, the others {others:.0f}%"
    return ""


def _others_as_bad(name: str, records: Mapping[str, Record], share: float, s: Settings) -> bool:
    """Whether the other backends' last answers are about as bad as `share` percent 5xx (the app fails
    everywhere: ejecting would only load the rest). False with too few answers to compare."""
    others = [x for n, o in records.items() if n != name for x in o.recent]
    if len(others) < s.outlier_min_answers:
        return False
    return share - 100.0 * sum(1 for x in others if x >= 500) / len(others) < s.outlier_rate_points


def ejection_time(r: Record, s: Settings) -> float:
    """How long an ejection made now keeps it out: doubled for each earlier one still remembered."""
    return min(s.outlier_ejection_max, s.outlier_ejection * 2 ** max(0, len(r.ejections) - 1))


def eject(r: Record, now: float, s: Settings) -> Record:
    """`r` ejected at `now`: its answers forgotten, out until its ejection time has passed."""
    ejections = tuple(t for t in r.ejections if now - t <= s.outlier_memory) + (now,)
    r = forget_answers(replace(r, ejections=ejections))
    return replace(r, ejected_until=now + ejection_time(r, s))


def held(r: Record, now: float) -> bool:
    """Still within its ejection time: not probed, not routed again."""
    return r.ejected_until is not None and now < r.ejected_until


def decide(records: Mapping[str, Record], s: Settings, ejected: int = 0) -> tuple[dict[str, str], dict[str, str]]:
    """Among the routed healthy backends' `records`, with `ejected` outliers already out: (to eject:
    name -> reason, outliers kept: name -> reason). The worst go first; the last healthy backend is never
    ejected, nor more than `outlier_max_share` of them all (but always one, if it is not the last)."""
    # Only one that answered within the window can be an outlier (an idle fleet's 200 records: no verdict each).
    reasons = {
        name: why for name, r in records.items() if (r.recent or r.interval) and (why := verdict(name, records, s))
    }

    def badness(name: str) -> tuple[float, str]:
        answers, errors = _totals(records[name])
        recent = records[name].recent
        share = sum(1 for x in recent if x >= 500) / len(recent) if recent else 0.0
        return (-max(share, errors / answers if answers else 0.0), name)

    limit = max(1, int((len(records) + ejected) * s.outlier_max_share))
    eject_now: dict[str, str] = {}
    kept: dict[str, str] = {}
    for name in sorted(reasons, key=badness):
        if len(records) - len(eject_now) <= 1:
            kept[name] = f"{reasons[name]}; {PANIC}"
        elif ejected + len(eject_now) >= limit:
            kept[name] = f"{reasons[name]}; {TOO_MANY} ({ejected + len(eject_now)} of {len(records) + ejected})"
        else:
            eject_now[name] = reasons[name]
    return eject_now, kept


def kind(reason: str) -> str:
    """A short label for an ejection reason, for the metrics: 5xx, timeouts, 5xx_rate or probes."""
    if not reason.startswith(PREFIX):
        return "probes"
    if "rate" in reason:
        return "5xx_rate"
    return "timeouts" if "timed out" in reason else "5xx"
