"""Probes only where needed, pass after pass (fleet.core.looking + fleet.core.reconcile on a simulated fleet).

A busy backend's traffic stands for its probe; an idle one is probed each health_interval with no read of its
stats; stats sockets are read every usage_idle_interval while nobody watches; and a hung backend is still
ejected within two health intervals (three when its master still answers and its users got answers right up
to the hang).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fleet.core.looking import answered, what_to_observe
from fleet.core.model import Backend, Model
from fleet.core.observations import FileInfo, Look, Observed, Probe, Wanted
from fleet.core.reconcile import decide
from fleet.core.settings import Settings
from fleet.core.states import State
from fleet.core.stats import Served, VassalStats, Worker

S = State
SETTINGS = Settings()
T0 = 1000.0
V1 = 1_700_000_000 * 10**9
TICK = SETTINGS.tick  # an idle control plane passes every tick


@dataclass
class Vassal:
    """A simulated vassal: its users' request rate; hung workers (and a hung master) answer nothing."""

    rate: float = 0.0  # user requests a second
    requests: int = 0
    workers_hung: bool = False
    master_hung: bool = False
    probes: int = 0  # health requests it received
    stats_reads: int = 0

    def stats(self) -> VassalStats | None:
        self.stats_reads += 1
        if self.master_hung:
            return None
        return VassalStats(1, (Worker(2, True, "idle", self.requests),))

    def probe(self) -> Probe:
        self.probes += 1
        if self.workers_hung:
            return Probe(False, "GET /healthz: no answer in time")
        self.requests += 1
        return Probe(True, "GET /healthz -> 200")


class Fleet:
    """Settled healthy backends, routed; each pass: look, observe (as ClusterObserver does), decide."""

    def __init__(self, **vassals: Vassal):
        self.vassals = vassals
        since = T0 - 3600.0  # nothing changed lately
        backends = {n: Backend(n, S.HEALTHY, since=since, mtime_ns=V1, served_mtime_ns=V1) for n in vassals}
        self.model = Model(backends, emperor_read_at=float("inf"))  # the Emperor is not what is simulated here
        self.wanted = Wanted({n: FileInfo(V1) for n in vassals})
        self.routed = frozenset(vassals)
        self.now = T0
        self.looks: list[Look] = []
        self.by_traffic: dict[str, int] = dict.fromkeys(vassals, 0)  # rounds its traffic stood for its probe

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.step()

    def step(self) -> None:
        look = what_to_observe(self.model, self.wanted, self.now, SETTINGS)
        self.looks.append(look)
        names = set(look.stats) | set(look.unless_answered) | (set(self.vassals) if look.usage else set())
        stats = {n: s for n in sorted(names) if (s := self.vassals[n].stats()) is not None}
        by_traffic = {n for n, before in look.unless_answered.items() if answered(before, stats.get(n))}
        probes = {n: self.vassals[n].probe() for n in look.probe | (set(look.unless_answered) - by_traffic)}
        probes |= {n: Probe(True, "answered", traffic=True) for n in by_traffic}
        for n in by_traffic:
            self.by_traffic[n] += 1
        observed = Observed(routed=self.routed, probes=probes, stats=stats, usage=look.usage)
        d = decide(self.wanted, observed, self.model, SETTINGS, self.now)
        self.model = d.model
        for action in d.actions:
            if hasattr(action, "names"):
                self.routed = action.names
        self.now += TICK
        for v in self.vassals.values():  # the users' requests until the next pass
            if not v.workers_hung:
                v.requests += round(v.rate * TICK)

    def state(self, name: str) -> State:
        return self.model.backends[name].state


def test_a_busy_backend_is_probed_only_until_its_traffic_is_seen_and_an_idle_one_each_interval():
    fleet = Fleet(busy=Vassal(rate=100), idle=Vassal())
    fleet.run(60)
    busy, idle = fleet.vassals["busy"], fleet.vassals["idle"]
    # Its traffic is first seen at the second usage round (the first gives the counts to compare with).
    assert busy.probes <= SETTINGS.usage_idle_interval / SETTINGS.health_interval + 1
    assert idle.probes >= 60 / SETTINGS.health_interval - 1  # as before: one probe a round
    # The idle one's stats are read only in usage rounds: every usage_idle_interval, nobody watching.
    assert idle.stats_reads <= 60 / SETTINGS.usage_idle_interval + 1
    assert fleet.by_traffic["busy"] >= 60 / SETTINGS.health_interval - busy.probes - 1
    assert fleet.state("busy") == fleet.state("idle") == S.HEALTHY


def test_nobody_watching_the_stats_sockets_are_read_every_usage_idle_interval():
    fleet = Fleet(a=Vassal(), b=Vassal())
    fleet.run(60)
    rounds = [look for look in fleet.looks if look.usage]
    assert len(rounds) == 60 / SETTINGS.usage_idle_interval


def test_while_someone_watches_they_are_read_every_usage_interval():
    fleet = Fleet(a=Vassal())
    fleet.run(5)
    fleet.wanted = replace(fleet.wanted, watched_at=fleet.now)
    before = sum(1 for look in fleet.looks if look.usage)
    fleet.run(10)
    assert sum(1 for look in fleet.looks if look.usage) - before == 10 / SETTINGS.usage_interval


def ejected_after(fleet: Fleet, name: str, limit: float = 10.0) -> float:
    started = fleet.now
    while fleet.state(name) == S.HEALTHY:
        assert fleet.now - started < limit, f"{name} still healthy {limit} s after it hung"
        fleet.step()
    assert fleet.state(name) == S.EJECTED and name not in fleet.routed
    return fleet.now - started


def hang_busy_backend(master: bool) -> float:
    fleet = Fleet(busy=Vassal(rate=100), other=Vassal())
    fleet.run(20.25)  # its traffic stands for its probes by now; the hang comes just after a round
    assert fleet.vassals["busy"].probes <= 12
    v = fleet.vassals["busy"]
    v.workers_hung, v.master_hung = True, master
    return ejected_after(fleet, "busy")


def test_a_busy_backend_stopped_whole_sigstop_is_ejected_within_two_intervals_as_an_idle_one():
    # Its master does not answer its stats either: no traffic seen, so it is probed at once.
    assert hang_busy_backend(master=True) <= 2 * SETTINGS.health_interval


def test_a_busy_backend_whose_workers_hang_under_a_live_master_is_ejected_within_three_intervals():
    # The answers before the hang still count for the round after it: one interval more at worst.
    assert hang_busy_backend(master=False) <= 3 * SETTINGS.health_interval


def test_an_idle_backend_that_hangs_is_ejected_within_two_intervals_as_before():
    fleet = Fleet(idle=Vassal(), other=Vassal())
    fleet.run(20.25)
    fleet.vassals["idle"].workers_hung = True
    assert ejected_after(fleet, "idle") <= 2 * SETTINGS.health_interval


def test_a_backend_whose_traffic_raises_exceptions_is_probed():
    fleet = Fleet(busy=Vassal(rate=100))
    fleet.run(20)
    probes = fleet.vassals["busy"].probes
    b = fleet.model.backends["busy"]
    assert b.served is not None
    # Exceptions now: the counts show answers, but not clean ones.
    fleet.model = replace(
        fleet.model, backends={"busy": replace(b, served=replace(b.served, exceptions=b.served.exceptions - 1))}
    )
    fleet.run(1.5)
    assert fleet.vassals["busy"].probes > probes


def test_our_own_probes_are_not_taken_for_users_answers():
    # An idle backend whose stats are read each round (someone watches): only our probes move its counts.
    fleet = Fleet(idle=Vassal())
    fleet.wanted = replace(fleet.wanted, watched_at=float("inf"))
    fleet.run(30)
    assert fleet.vassals["idle"].probes >= 30 / SETTINGS.health_interval - 1
    assert fleet.by_traffic["idle"] == 0
    assert fleet.model.backends["idle"].answered_at is None


def test_counts_note_the_probe_sent_with_a_read_and_count_the_later_probes_by_health_round():
    b = Backend("a", S.HEALTHY, since=T0, mtime_ns=V1, served_mtime_ns=V1, served=Served(1, 10, 0, T0 - 1))
    m, w = Model({"a": b}), Wanted({"a": FileInfo(V1)})
    stats = VassalStats(1, (Worker(2, True, "idle", 20),))
    read_and_probed = decide(
        w, Observed(frozenset({"a"}), probes={"a": Probe(True)}, stats={"a": stats}), m, SETTINGS, T0
    )
    assert read_and_probed.model.probe_rounds == 1
    assert read_and_probed.model.backends["a"].served == Served(1, 21, 0, T0, round=1)
    assert read_and_probed.model.backends["a"].answered_at == T0  # 20 > 10: its users got answers
    probed_only = decide(w, Observed(frozenset({"a"}), probes={"a": Probe(True)}), m, SETTINGS, T0)
    assert probed_only.model.backends["a"] is b  # no new backend for a probe: the round is counted instead
    assert b.served is not None and b.served.since(probed_only.model.probe_rounds).requests == 11
    by_traffic = decide(
        w, Observed(frozenset({"a"}), probes={"a": Probe(True, traffic=True)}, stats={"a": stats}), m, SETTINGS, T0
    )
    assert by_traffic.model.backends["a"].served == Served(1, 20, 0, T0, round=1)  # no probe sent: nothing to add


def test_a_read_after_this_rounds_probe_counts_that_probe_and_sees_no_users_answers():
    # Read at round 41 before its probe (42 with it); probed each round since; a usage round reads after its
    # probe of round 50: 51 requests, all ours (counting rounds up to 49 only took one of them for a user's).
    b = Backend("a", S.HEALTHY, since=T0, mtime_ns=V1, served_mtime_ns=V1, served=Served(1, 42, 0, T0 - 10, round=41))
    m, w = Model({"a": b}, probe_rounds=49), Wanted({"a": FileInfo(V1)})
    stats = VassalStats(1, (Worker(2, True, "idle", 51),))
    d = decide(
        w, Observed(frozenset({"a"}), probes={"a": Probe(True)}, stats={"a": stats}, usage=True), m, SETTINGS, T0
    )
    assert d.model.backends["a"].answered_at is None


def test_a_backend_that_leaves_healthy_forgets_its_counts():
    b = Backend("a", S.EJECTED, since=T0, mtime_ns=V1, served_mtime_ns=V1, served=Served(1, 10, 0, T0 - 1))
    d = decide(Wanted({"a": FileInfo(V1)}), Observed(frozenset()), Model({"a": b}), SETTINGS, T0)
    assert d.model.backends["a"].served is None  # probed each pass meanwhile, not each round


def test_a_usage_round_is_noted_and_a_traffic_answer_resets_the_failed_probes():
    b = Backend("a", S.HEALTHY, since=T0, mtime_ns=V1, served_mtime_ns=V1, probe_failures=1)
    m, w = Model({"a": b}), Wanted({"a": FileInfo(V1)})
    d = decide(w, Observed(frozenset({"a"}), probes={"a": Probe(True, traffic=True)}, usage=True), m, SETTINGS, T0)
    assert d.model.usage_at == T0 and d.model.backends["a"].probe_failures == 0
    assert decide(w, Observed(frozenset({"a"})), m, SETTINGS, T0).model.usage_at == m.usage_at
