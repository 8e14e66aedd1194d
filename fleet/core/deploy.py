"""Deploys (pure): a new version beside the old, a canary judged on its own answers, then promotion or rollback.

One deploy is a value (`Deploy`) that `advance` moves on, pass after pass, from what the control plane saw
(`Seen`: the backends' states, what nginx routes to, the new backends' answers since the last pass); it
returns the next value and `Orders` (vassal files to write, backends to drain, then delete, and the
weights of the app's backends). Nothing here sleeps or reads a file: the control plane persists each
value (run/deploy/state.json), so a restarted one resumes from the last.

Phases, in order (any failure goes to ROLLING_BACK, then ROLLED_BACK):
- STARTING: write the first `surge` new backends' files; wait until they are healthy (or the start
  timeout fails it).
- CANARY, step k: the new backends get `canary[k]` percent of the app's new requests (weights); after
  `interval` seconds, judge them on their own answers: 5xx rate and p99 against the bounds, once there are
  `min_requests` answers; with fewer it waits and says so: it never judges on no data. A bound exceeded
  fails at once (once there are enough answers); a pass needs the whole interval.
- PROMOTING: start-first, one backend at a time: start a new one (at most `surge` beyond the app's count),
  and for each new one healthy, drain one old one; ends with as many backends as the app had, all new.
- ROLLING_BACK: the new backends get weight 0 and are drained and removed; old ones a promotion already
  removed are written back. The old ones never change otherwise.
A new backend that fails (or is ejected for its answers) fails the deploy; so does a cancel (Ctrl-C).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

STARTING, CANARY, PROMOTING, ROLLING_BACK = "starting", "canary", "promoting", "rolling_back"
PROMOTED, ROLLED_BACK = "promoted", "rolled_back"
FINISHED = (PROMOTED, ROLLED_BACK)
# The backend states (fleet.core.states values) a new backend must not reach while it is judged.
BROKEN = ("failed", "ejected")
GONE_STATES = ("draining", "removing")
WEIGHT_SCALE = 10  # canary percents become weights (P% of new requests), scaled to stay whole numbers


@dataclass(frozen=True)
class Plan:
    """What `fleet deploy` asked for."""

    app: str
    version: str  # names the new backends: APP-VERSION-1, -2, ...
    text: str  # the new vassal file
    canary: tuple[int, ...] = (10, 50)  # percent of the app's new requests, step by step; () = no canary
    interval: float = 30.0
    max_error_rate: float = 1.0  # percent of 5xx answers
    max_p99: float = 500.0  # ms
    min_requests: int = 50
    surge: int = 1
    start_timeout: float = 60.0
    probe_rate: float = 0.0  # requests/s of its own to the health path of each new backend, while short of answers


@dataclass(frozen=True)
class Window:
    """The new backends' answers in the current canary step."""

    answers: int = 0
    errors: int = 0  # 5xx
    latencies: tuple[float, ...] = ()  # ms

    def add(self, answers: tuple[tuple[int, float], ...]) -> Window:
        if not answers:
            return self
        return Window(
            self.answers + len(answers),
            self.errors + sum(1 for status, _ in answers if status >= 500),
            self.latencies + tuple(ms for _, ms in answers),
        )

    @property
    def error_rate(self) -> float:
        return 100.0 * self.errors / self.answers if self.answers else 0.0

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)


@dataclass(frozen=True)
class Deploy:
    plan: Plan
    old: tuple[str, ...]  # the app's backends when the deploy began, in order
    old_texts: dict[str, str] = field(default_factory=dict)  # their files, to write back on a rollback
    phase: str = STARTING
    step: int = 0
    since: float = 0.0  # when the phase or canary step began
    window: Window = Window()
    started: tuple[str, ...] = ()  # new backends whose files were written
    removed: tuple[str, ...] = ()  # old backends drained and deleted by the promotion
    reason: str = ""  # why it rolled back
    note: str = ""  # what it waits for now, in words
    resumed: bool = False  # a restarted control plane picked it up

    @property
    def new_names(self) -> tuple[str, ...]:
        return tuple(f"{self.plan.app}-{self.plan.version}-{i + 1}" for i in range(len(self.old)))

    @property
    def percent(self) -> int:
        """The canary's share of new requests now (percent)."""
        if self.phase == CANARY and self.step < len(self.plan.canary):
            return self.plan.canary[self.step]
        return 100 if self.phase in (PROMOTING, PROMOTED) else 0


@dataclass(frozen=True)
class Seen:
    """What the control plane saw this pass."""

    now: float
    states: dict[str, str]  # every backend's state (absent: it has no file or is gone)
    routed: frozenset[str] = frozenset()
    answers: dict[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)  # (status, ms) per backend
    cancel: bool = False


@dataclass(frozen=True)
class Orders:
    deploy: Deploy
    write: dict[str, str] = field(default_factory=dict)  # vassal files to write: name -> text
    drain: tuple[str, ...] = ()  # take out of nginx and let finish (the `fleet rm` drain)
    delete: tuple[str, ...] = ()  # drained: delete their files
    undrain: tuple[str, ...] = ()  # withdraw the drain: back into nginx (an old backend, on a rollback)
    weights: dict[str, int] = field(default_factory=dict)  # the app's backends' weights while it runs
    say: tuple[str, ...] = ()  # progress, one line each


def begin(plan: Plan, old: dict[str, str], now: float) -> Deploy:
    """A deploy of `plan` over the app's backends `old` ({name: file text})."""
    return Deploy(plan, tuple(sorted(old)), dict(old), since=now)


def resume(d: Deploy, now: float) -> Deploy:
    """After a control-plane restart: the phase goes on; a canary step starts its window again (its
    answers were in the lost process), and so do the timeouts."""
    return replace(d, since=now, window=Window(), resumed=True)


def probes_due(d: Deploy, last_probe: float, now: float) -> int:
    """How many probe requests to send each new backend now: only in a canary step still short of answers
    (its own traffic comes first), at `probe_rate` per second, at most 2 per pass (a pass waits on them)."""
    if d.phase != CANARY or d.plan.probe_rate <= 0 or d.window.answers >= d.plan.min_requests:
        return 0
    return min(2, int((now - last_probe) * d.plan.probe_rate))


def cancel_reason(d: Deploy) -> str:
    return f"cancelled at {_where(d)}"


def advance(d: Deploy, seen: Seen) -> Orders:
    """One pass of the deploy; see the module's docstring."""
    if d.phase in FINISHED:
        return Orders(d)
    if seen.cancel and d.phase != ROLLING_BACK:
        return _roll_back(d, seen, cancel_reason(d))
    match d.phase:
        case "starting":
            return _starting(d, seen)
        case "canary":
            return _canary(d, seen)
        case "promoting":
            return _promoting(d, seen)
        case _:
            return _rolling_back(d, seen)


def _starting(d: Deploy, seen: Seen) -> Orders:
    if not d.plan.canary:  # a rollback or a plain replacement: no canary, straight to the promotion
        return _promoting(replace(d, phase=PROMOTING, since=seen.now), seen, ("no canary: promoting",))
    wanted = d.new_names[: max(1, min(d.plan.surge, len(d.old)))]
    write = {n: d.plan.text for n in wanted if n not in d.started}
    d = replace(d, started=d.started + tuple(write))
    if broken := _broken(d, seen):
        return _roll_back(d, seen, broken)
    healthy = [n for n in d.started if seen.states.get(n) == "healthy"]
    if len(healthy) == len(d.started):
        d = replace(d, phase=CANARY, step=0, since=seen.now, window=Window(), note="")
        said = (f"{', '.join(d.started)} healthy; canary step 1 at {d.percent}%",)
        return Orders(d, write, weights=_canary_weights(d, seen), say=said)
    if seen.now - d.since > d.plan.start_timeout:
        late = [n for n in d.started if n not in healthy]
        why = f"{', '.join(late)} not healthy within the start timeout ({d.plan.start_timeout:g} s)"
        return _roll_back(d, seen, why)
    d = replace(d, note=f"starting {', '.join(d.started)}")
    return Orders(d, write, weights=_standby(d), say=(f"starting {', '.join(write)}",) if write else ())


def _canary(d: Deploy, seen: Seen) -> Orders:
    new = [n for n in d.started if n in seen.states]
    window = d.window.add(tuple(a for n in new for a in seen.answers.get(n, ())))
    d = replace(d, window=window)
    p = d.plan
    enough = window.answers >= p.min_requests
    # The measured verdict first: it says more than "ejected" (passive health may act on the same answers).
    if enough and (verdict := _exceeded(d)):
        return _roll_back(d, seen, verdict)
    if broken := _broken(d, seen):
        return _roll_back(d, seen, broken)
    elapsed = seen.now - d.since
    if elapsed < p.interval:
        d = replace(d, note=f"{_where(d)}: {_measured(d)}; judging in {p.interval - elapsed:.0f} s")
        return Orders(d, weights=_canary_weights(d, seen))
    if not enough:
        note = f"{_where(d)}: {window.answers} of {p.min_requests} answers needed to judge; waiting for traffic"
        return Orders(replace(d, note=note), weights=_canary_weights(d, seen), say=(note,) if note != d.note else ())
    passed = f"{_where(d)} passed: {_measured(d)}"
    if d.step + 1 < len(p.canary):
        d = replace(d, step=d.step + 1, since=seen.now, window=Window(), note="")
        return Orders(d, weights=_canary_weights(d, seen), say=(passed, f"canary step {d.step + 1} at {d.percent}%"))
    d = replace(d, phase=PROMOTING, since=seen.now, window=Window(), note="")
    return _promoting(d, seen, (passed, "promoting, one backend at a time"))


def _promoting(d: Deploy, seen: Seen, said: tuple[str, ...] = ()) -> Orders:
    if broken := _broken(d, seen):
        return _roll_back(d, seen, broken)
    old_left = [n for n in d.old if n not in d.removed]
    healthy_new = [n for n in d.started if seen.states.get(n) == "healthy"]
    starting_new = [n for n in d.started if n not in healthy_new]
    if starting_new and seen.now - d.since > d.plan.start_timeout:
        why = f"{', '.join(starting_new)} not healthy within the start timeout ({d.plan.start_timeout:g} s)"
        return _roll_back(d, seen, why)
    write: dict[str, str] = {}
    room = len(d.old) + max(1, d.plan.surge) - len(old_left) - len(d.started)
    for name in [n for n in d.new_names if n not in d.started][: max(0, room)]:
        write[name] = d.plan.text
    if write:
        d = replace(d, started=d.started + tuple(write), since=seen.now)
    # For each new backend healthy beyond the app's count, one old one goes: never fewer healthy than before.
    surplus = len(old_left) + len(healthy_new) - len(d.old)
    leaving = old_left[: max(0, surplus)]
    drain, delete = _take_out(leaving, seen)
    d = replace(d, removed=d.removed + tuple(n for n in leaving if n not in seen.states))
    old_left = [n for n in d.old if n not in d.removed]
    lines = said + tuple(f"starting {n}" for n in write) + tuple(f"draining {n}" for n in drain)
    if not old_left and len(healthy_new) == len(d.old):
        d = replace(d, phase=PROMOTED, note="", since=seen.now)
        return Orders(d, say=(*lines, f"promoted: {len(d.old)} backend(s) of version {d.plan.version}"))
    d = replace(d, note=f"promoting: {len(healthy_new)} new healthy, {len(old_left)} old left")
    return Orders(d, write, drain, delete, say=lines)


def _rolling_back(d: Deploy, seen: Seen) -> Orders:
    drain, delete = _take_out(list(d.started), seen)
    # Old backends a promotion took out come back: a drained one is let back in, a deleted one's file
    # (kept in the deploy) is written back.
    undrain = tuple(n for n in d.old if seen.states.get(n) == "draining")
    write = {n: t for n, t in d.old_texts.items() if seen.states.get(n) in (None, "removing")}
    new_left = [n for n in d.started if n in seen.states]
    old_ready = all(seen.states.get(n) == "healthy" for n in d.old)
    weights = dict.fromkeys(new_left, 0)
    if not new_left and old_ready:
        d = replace(d, phase=ROLLED_BACK, note="", since=seen.now)
        return Orders(d, write, weights=weights, say=(f"rolled back: {d.reason}",))
    d = replace(d, note=f"rolling back: {len(new_left)} new backend(s) left")
    return Orders(d, write, drain, delete, undrain, weights, say=tuple(f"draining {n}" for n in drain))


def _roll_back(d: Deploy, seen: Seen, reason: str) -> Orders:
    d = replace(d, phase=ROLLING_BACK, reason=reason, since=seen.now, removed=())
    orders = _rolling_back(d, seen)
    return replace(orders, say=(f"rolling back: {reason}", *orders.say))


def _take_out(names: list[str], seen: Seen) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Drain each (out of nginx first, as `fleet rm` does), then delete its file once it is out."""
    drain = tuple(n for n in names if n in seen.states and seen.states[n] not in GONE_STATES)
    delete = tuple(n for n in names if seen.states.get(n) == "draining" and n not in seen.routed)
    return drain, delete


def _broken(d: Deploy, seen: Seen) -> str:
    for name in d.started:
        state = seen.states.get(name)
        if state in BROKEN:
            measured = f" ({_measured(d)})" if d.phase == CANARY else ""
            return f"{_where(d)}: new backend {name} is {state}{measured}"
    return ""


def _exceeded(d: Deploy) -> str:
    w, p = d.window, d.plan
    if w.error_rate > p.max_error_rate:
        return f"{_where(d)}: 5xx rate {w.error_rate:.1f}% > {p.max_error_rate:g}% ({w.errors} of {w.answers} answers)"
    if w.p99 > p.max_p99:
        return f"{_where(d)}: p99 {w.p99:.0f} ms > {p.max_p99:g} ms ({w.answers} answers)"
    return ""


def _measured(d: Deploy) -> str:
    w, p = d.window, d.plan
    return (
        f"{w.answers} answers, 5xx {w.error_rate:.1f}% (max {p.max_error_rate:g}%), "
        f"p99 {w.p99:.0f} ms (max {p.max_p99:g} ms)"
    )


def _where(d: Deploy) -> str:
    if d.phase == CANARY:
        return f"canary step {d.step + 1} ({d.percent}%)"
    return d.phase


def _canary_weights(d: Deploy, seen: Seen) -> dict[str, int]:
    """P% of the app's new requests to the new backends, the rest to the old, shared evenly in each group."""
    new = [n for n in d.started if n in seen.states]
    old = [n for n in d.old if n in seen.states]
    if not new or not old:
        return {}
    percent = d.percent
    weights = dict.fromkeys(new, percent * len(old) * WEIGHT_SCALE)
    weights.update(dict.fromkeys(old, (100 - percent) * len(new) * WEIGHT_SCALE))
    return weights


def _standby(d: Deploy) -> dict[str, int]:
    """Starting: the new backends are warm standbys (probed, not routed) until the canary begins."""
    return dict.fromkeys(d.started, 0)


def percentile(values: tuple[float, ...], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def to_dict(d: Deploy) -> dict:
    """The deploy as JSON-able data (the control plane persists it; `fleet deploy --status` reads it)."""
    return {
        "plan": vars(d.plan) | {"canary": list(d.plan.canary)},
        "old": list(d.old),
        "old_texts": d.old_texts,
        "phase": d.phase,
        "step": d.step,
        "since": d.since,
        # Not the latencies: a resumed deploy starts its window again (resume).
        "window": {"answers": d.window.answers, "errors": d.window.errors},
        "started": list(d.started),
        "removed": list(d.removed),
        "reason": d.reason,
        "note": d.note,
        "resumed": d.resumed,
        "percent": d.percent,
        "error_rate": round(d.window.error_rate, 2),
        "p99": round(d.window.p99, 1),
    }


def from_dict(doc: dict) -> Deploy:
    plan = Plan(**(doc["plan"] | {"canary": tuple(doc["plan"]["canary"])}))
    w = doc.get("window") or {}
    return Deploy(
        plan,
        tuple(doc["old"]),
        dict(doc.get("old_texts") or {}),
        doc["phase"],
        int(doc.get("step", 0)),
        float(doc.get("since", 0.0)),
        Window(int(w.get("answers", 0)), int(w.get("errors", 0)), tuple(w.get("latencies", ()))),
        tuple(doc.get("started", ())),
        tuple(doc.get("removed", ())),
        doc.get("reason", ""),
        doc.get("note", ""),
        bool(doc.get("resumed", False)),
    )
