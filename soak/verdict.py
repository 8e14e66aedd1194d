"""The soak's verdicts (pure): which failed requests are explained, and whether memory or open files grew.

Explained failures. With two or more backends routed, every change the soak makes must lose nothing:
nginx retries idempotent requests on another backend, and fleet takes a backend out of nginx before it
reloads or stops it. One loss no one can prevent: a POST that the killed vassal had already taken when
it was killed with -9. nginx never replays a non-idempotent request it has sent, and answers 502. Such
a POST may also have been sent a moment after the kill: the killed master's workers live on until they
notice (~1 s) and the socket keeps accepting, so nginx cannot know yet. So a failure is explained if
it is a POST answered 502 that was in flight between a kill -9 and the moment that backend answered
again, and only as many per kill as there are POST clients (each has one request in flight at a time);
every other failed request is unexplained, and fails the soak.

Growth. The long-lived processes (Emperor, nginx master, control plane, and a supervisor if fleet has
one) are compared like for like: at checkpoints (after the warm-up, at each quarter and at the end) the
churn stops, the backends it added are removed, and three samples are taken of the cluster as it
started. The first checkpoint after warm-up (a quarter of the run, and at least one step of each kind)
is the baseline, the last one the end:
- memory grew if the proportional set size grew more than 10% AND so did the process's anonymous
  memory (its own heap: PSS alone also moves when other processes on the machine map or unmap a shared
  library, as other clusters on a shared machine do);
- open files grew if even the fewest open at the end are more than the most open at the baseline
  (transient sockets and pipes come and go; a leak stays).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from statistics import median

from fleet.core import emperors
from soak.churn import KINDS, Step
from soak.sampler import Reading


@dataclass(frozen=True)
class Failure:
    """A failed client request, as the soak reports it."""

    start: float  # seconds since the soak started
    end: float
    client: str  # e.g. "POST keep-alive"
    cause: str  # "http_502", "reset", "closed_by_server", "refused", "timeout", "bad_answer", ...
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


# Every Emperor by its name (emperor, or emperor-1 ... when there are several); the absent are not judged.
LONG_LIVED = ("emperor", *emperors.names(emperors.MAX_EMPERORS), "nginx", "control", "supervisor")
MAX_GROWTH = 0.10


@dataclass(frozen=True)
class Verdict:
    name: str
    ok: bool
    detail: str


def kill_of(failure: Failure, steps: Iterable[Step]) -> Step | None:
    """The kill -9 a failed POST can be blamed on (see the module's docstring), if any."""
    if failure.client.startswith("POST") and failure.cause == "http_502":
        for step in steps:
            if step.kind == "kill9" and failure.end >= step.at and failure.start <= step.at + step.took:
                return step
    return None


def explained(failures: list[Failure], steps: list[Step], post_clients: int) -> dict[int, str]:
    """{index in `failures`: why it could not be avoided}; the others are unexplained."""
    found: dict[int, str] = {}
    per_kill: dict[float, int] = {}
    for index, failure in enumerate(failures):
        kill = kill_of(failure, steps)
        if kill is not None and per_kill.get(kill.at, 0) < post_clients:
            per_kill[kill.at] = per_kill.get(kill.at, 0) + 1
            found[index] = f"a POST taken by {kill.target}, killed -9 at {kill.at:.2f} s"
    return found


@dataclass(frozen=True)
class Checkpoint:
    label: str
    t: float
    readings: tuple[Reading, ...]

    def of(self, role: str) -> list[Reading]:
        return [r for r in self.readings if r.role == role]


def growth(checkpoints: list[Checkpoint], role: str) -> dict:
    """Memory and fds of one long-lived role, from the first to the last checkpoint."""
    seen = [c for c in checkpoints if c.of(role)]
    if len(seen) < 2:
        return {"judged": False, "checkpoints": len(seen)}
    base, end = seen[0].of(role), seen[-1].of(role)
    pss0, pss1 = median(r.pss for r in base), median(r.pss for r in end)
    anon0, anon1 = median(r.anon for r in base), median(r.anon for r in end)
    return {
        "judged": True,
        "checkpoints": len(seen),
        "pids": sorted({r.pid for c in seen for r in c.of(role) if r.pid}),
        "pss": [median(r.pss for r in c.of(role)) for c in seen],  # at each checkpoint
        "pss_growth": round(pss1 / pss0 - 1, 4) if pss0 else 0.0,
        "anon": [median(r.anon for r in c.of(role)) for c in seen],
        "anon_growth": round(anon1 / anon0 - 1, 4) if anon0 else 0.0,
        "fds": [[min(r.fds for r in c.of(role)), max(r.fds for r in c.of(role))] for c in seen],
    }


def judge(
    failures: list[Failure],
    steps: list[Step],
    checkpoints: list[Checkpoint],
    ok_by_client: dict[str, int],
    clients: dict[str, int],
    leftovers: list[str],
) -> tuple[list[Verdict], dict[str, dict]]:
    """Every verdict, and the growth figures of each long-lived role."""
    post_clients = sum(n for c, n in clients.items() if c.startswith("POST"))
    why = explained(failures, steps, post_clients)
    unexplained = [f for i, f in enumerate(failures) if i not in why]
    verdicts = [
        Verdict(
            "no unexplained failed request",
            not unexplained,
            f"{len(failures)} failed, {len(unexplained)} unexplained"
            + "".join(f"; first: {f.client} {f.cause} at {f.start:.2f} s: {f.detail[:120]}" for f in unexplained[:1]),
        ),
        Verdict(
            "every change completed in time",
            all(s.ok for s in steps) and bool(steps),
            f"{sum(s.ok for s in steps)}/{len(steps)} steps ok"
            + "".join(f"; {s.kind} {s.target}: {s.detail}" for s in steps if not s.ok),
        ),
        Verdict(
            "every kind of change was made",
            {s.kind for s in steps} == set(KINDS),
            "made: " + ", ".join(f"{k} x{sum(s.kind == k for s in steps)}" for k in KINDS),
        ),
        Verdict(
            "every client got answers",
            all(ok_by_client.get(c, 0) > 0 for c in clients),
            ", ".join(f"{c}: {ok_by_client.get(c, 0)}" for c in clients),
        ),
    ]  # fmt: skip
    figures = {role: growth(checkpoints, role) for role in LONG_LIVED}
    figures = {role: g for role, g in figures.items() if g["checkpoints"]}  # no supervisor: not judged
    for role, g in figures.items():
        if not g["judged"]:
            verdicts.append(Verdict(f"{role}: judged", False, f"seen at {g['checkpoints']} checkpoint(s), not 2"))
            continue
        grew = g["pss_growth"] > MAX_GROWTH and g["anon_growth"] > MAX_GROWTH
        verdicts.append(
            Verdict(
                f"{role}: memory flat",
                not grew,
                f"PSS {_mib(g['pss'][0])} -> {_mib(g['pss'][-1])} ({g['pss_growth']:+.1%}), "
                f"anonymous {_mib(g['anon'][0])} -> {_mib(g['anon'][-1])} ({g['anon_growth']:+.1%})",
            )
        )
        (_, most), (fewest, _) = g["fds"][0], g["fds"][-1]
        verdicts.append(
            Verdict(f"{role}: no fd growth", fewest <= most, f"{most} at most after warm-up, {fewest} at the end")
        )
        verdicts.append(Verdict(f"{role}: never restarted", len(g["pids"]) == 1, f"pids {g['pids']}"))
    verdicts.append(Verdict("no leftover process after `fleet down`", not leftovers, "; ".join(leftovers) or "none"))
    return verdicts, figures


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"
