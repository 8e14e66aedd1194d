"""uWSGI's stats documents, parsed once into values (pure: no sockets here, see fleet.uwsgi)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VassalProcess:
    """One vassal as the Emperor sees it."""

    name: str
    pid: int
    last_mod: int  # the file's mtime (whole seconds) when the Emperor last acted on it
    ready: bool
    accepting: bool
    respawns: int
    cursed: bool


@dataclass(frozen=True)
class BlacklistEntry:
    """A vassal the Emperor keeps failing to start; it retries with a growing delay."""

    name: str
    attempts: int
    throttle: int


@dataclass(frozen=True)
class EmperorStats:
    vassals: dict[str, VassalProcess]
    blacklist: dict[str, BlacklistEntry]

    @classmethod
    def parse(cls, doc: dict) -> EmperorStats:
        vassals = {}
        for v in doc.get("vassals", []):
            name = name_from_id(v.get("id", ""))
            vassals[name] = VassalProcess(
                name=name,
                pid=int(v.get("pid", -1)),
                last_mod=int(v.get("last_mod", 0)),
                ready=bool(v.get("ready")),
                accepting=bool(v.get("accepting")),
                respawns=int(v.get("respawns", 0)),
                cursed=bool(v.get("cursed")),
            )
        blacklist = {}
        for b in doc.get("blacklist", []):
            name = name_from_id(b.get("id", ""))
            blacklist[name] = BlacklistEntry(name, int(b.get("attempt", 0)), int(b.get("throttle_level", 0)))
        return cls(vassals, blacklist)


def name_from_id(vassal_id: str) -> str:
    """The Emperor names a vassal by its file path (with a `:zerg` suffix for zergs)."""
    base = vassal_id.rsplit("/", 1)[-1]
    return base[: -len(".ini")] if base.endswith(".ini") else base


@dataclass(frozen=True)
class Worker:
    pid: int
    accepting: bool
    status: str  # "idle", "busy", "cheap", "pause", "sig..."
    requests: int
    exceptions: int = 0

    @property
    def busy(self) -> bool:
        """Serving a request, or running a signal handler: either way it takes no new request now."""
        return self.status == "busy" or self.status.startswith("sig")

    @property
    def idle(self) -> bool:
        return self.status == "idle"


@dataclass(frozen=True)
class VassalStats:
    """A vassal's own stats socket: its master and its workers."""

    pid: int | None
    workers: tuple[Worker, ...]

    @classmethod
    def parse(cls, doc: dict) -> VassalStats:
        workers = tuple(
            Worker(
                int(w.get("pid", 0)),
                bool(w.get("accepting")),
                str(w.get("status", "")),
                int(w.get("requests", 0)),
                int(w.get("exceptions", 0)),
            )
            for w in doc.get("workers", [])
            if int(w.get("pid", 0)) > 0  # 0: a cheap worker not spawned yet, not a process
        )
        return cls(int(doc.get("pid", 0)) or None, workers)

    @property
    def busy(self) -> int:
        return sum(1 for w in self.workers if w.busy)

    @property
    def idle(self) -> int:
        return sum(1 for w in self.workers if w.idle)

    @property
    def requests(self) -> int:
        """Requests its workers served (counts start again from zero when it reloads)."""
        return sum(w.requests for w in self.workers)

    @property
    def exceptions(self) -> int:
        return sum(w.exceptions for w in self.workers)

    @property
    def pids(self) -> list[int]:
        """The master and its workers."""
        return ([self.pid] if self.pid else []) + [w.pid for w in self.workers]


@dataclass(frozen=True)
class Served:
    """A vassal's request and exception counts at one read of its stats socket, with the probe of that pass.
    The probes sent after it are counted by health round (see `since`), not noted one by one: that was a new
    backend value for each of 200 backends each second."""

    pid: int | None  # its master: counts start again with a new one
    requests: int
    exceptions: int
    at: float  # the control plane's clock
    round: int = 0  # the health rounds done when it was read (Model.probe_rounds after that pass)

    @classmethod
    def of(cls, stats: VassalStats, at: float, probed: bool, round: int = 0) -> Served:
        """The counts of `stats`; `probed`: a probe was sent this pass, before or after the read: counted as
        one more in either case (one too many at worst, which only asks one more answer of the users)."""
        return cls(stats.pid, stats.requests + (1 if probed else 0), stats.exceptions, at, round)

    def since(self, rounds: int) -> Served:
        """The counts to compare a read with once `rounds` health rounds are done: one probe more for each
        round since this read (a healthy backend gets at most one a round; one not probed in a round, its
        traffic standing for the probe, had its stats read then, which gave a new Served)."""
        if rounds <= self.round:
            return self
        return Served(self.pid, self.requests + rounds - self.round, self.exceptions, self.at, rounds)
