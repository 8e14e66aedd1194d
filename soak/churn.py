"""The soak's churn: a seeded schedule of changes, each made the way an operator makes it (a file
operation or the `fleet` command) and then waited for by polling the control plane's published state
against a deadline. Between two steps the schedule pauses a seeded 0.5-2 s: that pause is part of the
schedule (changes arrive while traffic flows), not a wait for anything to happen.

Kinds: add a backend, touch one, rm one, kill -9 a vassal's master, drop a bad file and remove it, and
`fleet reload --all`. The first six steps are one of each (warm-up sees every kind); then a seeded
choice. A step that is not possible now (rm with nothing to spare, say) becomes the next one that is.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from fleet.layout import write_atomically
from fleet.published.snapshot import Snapshot
from fleet.vassalfile import vassals
from harness.cluster import Cluster, vassal_text
from harness.wait import WaitTimeout, wait_for

KINDS = ("add", "touch", "kill9", "bad", "rm", "reload_all")
WEIGHTS = (2, 3, 2, 2, 2, 1)
MAX_BACKENDS = 4  # nginx's 32 upstream slots hold 4 backends: routing changes never reload nginx
# kill -9 counts as a crash, and fleet fails a backend after 3 crashes in 60 s (flapping): space them.
KILL_SPACING = 75.0
STEP_TIMEOUT = 45.0
BAD_FILES = (
    ("unknown option", b"[uwsgi]\nprocesess = 2\n"),
    ("garbage", bytes(range(256))),
    ("missing module", b"[uwsgi]\nmodule = soak_missing\n"),
    ("socket claim", b"[uwsgi]\nsocket = /tmp/soak.sock\n"),
    ("bad [fleet] section", b"[uwsgi]\n[fleet]\nhealth_status = 20x\n"),
)


@dataclass
class Step:
    kind: str
    target: str = ""
    at: float = 0.0  # when the change was made (the kill, the touch, the file written), soak time
    took: float = 0.0  # seconds from `at` until fleet had settled it
    ok: bool = False
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class StepFailed(Exception):
    pass


class Churn:
    def __init__(self, cluster: Cluster, seed: int, t0: float, log: Callable[[str], None] = print):
        self.cluster, self.layout = cluster, cluster.layout
        self.rng = random.Random(seed)
        self.t0, self.log = t0, log
        self.steps: list[Step] = []
        self.last_kill: dict[str, float] = {}
        self.count = {"add": 0, "bad": 0}

    # ---- the schedule ----------------------------------------------------------------------------

    def run(self, until: float, at_least: int = 0) -> None:
        """Steps until time.monotonic() reaches `until`, and until `at_least` steps were made in all."""
        while time.monotonic() < until or len(self.steps) < at_least:
            index = len(self.steps)
            wanted = KINDS[index] if index < len(KINDS) else self.rng.choices(KINDS, WEIGHTS)[0]
            kind = next(k for k in (wanted, *KINDS) if self._possible(k))
            step = Step(kind, at=self.now())
            try:
                getattr(self, f"_{kind}")(step)
                step.ok = True
            except (StepFailed, WaitTimeout, TimeoutError, OSError) as e:
                step.detail = (step.detail + "; " if step.detail else "") + f"FAILED: {e}"
            step.took = round(self.now() - step.at, 3)
            self.steps.append(step)
            self.log(f"[{step.at:7.1f} s] {kind:<10} {step.target:<12} {step.took:5.2f} s  {step.detail}")
            time.sleep(self.rng.uniform(0.5, 2.0))  # the schedule's pause between changes (see the docstring)

    def settle(self, timeout: float = 60.0) -> None:
        """Wait until every vassal file is a healthy, routed backend."""
        self._wait("every backend healthy and routed", lambda s: self._all_routed(s), timeout)

    def back_to_base(self, timeout: float = 60.0) -> None:
        """Remove the backends the soak added, and settle: the cluster as it started (a checkpoint, where
        memory and open files are compared like for like)."""
        added = [n for n in vassals.present(self.layout.vassals) if n.startswith("soak-")]
        for name in added:
            self.layout.vassal_file(name).unlink()
        self._wait("the added backends removed", lambda s: not set(added) & set(s.backends), timeout)
        self.settle(timeout)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _possible(self, kind: str) -> bool:
        snap = Snapshot.read(self.layout)
        routed = set(snap.routed)
        if kind == "add":
            return len(vassals.present(self.layout.vassals)) < MAX_BACKENDS
        if kind == "rm":
            return len(routed) >= 3 and any(n.startswith("soak-") for n in routed)
        if kind == "kill9":
            return len(routed) >= 2 and bool(self._killable(snap))
        return bool(routed)

    def _killable(self, snap: Snapshot) -> list[str]:
        now = self.now()
        return sorted(
            name
            for name in snap.routed
            if (b := snap.backend(name)) and b.state == "healthy" and b.pid
            and now - self.last_kill.get(name, -KILL_SPACING) >= KILL_SPACING
        )  # fmt: skip

    # ---- the steps ---------------------------------------------------------------------------------

    def _add(self, step: Step) -> None:
        step.target = name = f"soak-{self.count['add']}"
        self.count["add"] += 1
        step.at = self.now()
        if self.rng.random() < 0.5:
            step.detail = "fleet add"
            self._cli("add", name, "--processes", "1", "--timeout", str(STEP_TIMEOUT))
        else:
            step.detail = "file dropped"
            write_atomically(self.layout.vassal_file(name), vassal_text(processes=1))
        self._wait(f"{name} routed", lambda s: _healthy_and_routed(s, name))

    def _touch(self, step: Step) -> None:
        step.target = name = self.rng.choice(sorted(Snapshot.read(self.layout).routed))
        path = self.layout.vassal_file(name)
        step.at = self.now()
        os.utime(path)
        touched = path.stat().st_mtime_ns
        self._wait(
            f"{name} reloaded",
            lambda s: _healthy_and_routed(s, name) and (b := s.backend(name)) and b.served_mtime_ns >= touched,
        )

    def _kill9(self, step: Step) -> None:
        snap = Snapshot.read(self.layout)
        step.target = name = self.rng.choice(self._killable(snap))
        pid = snap.backend(name).pid
        step.detail = f"master pid {pid}"
        step.at = self.now()
        self.last_kill[name] = step.at
        os.kill(pid, signal.SIGKILL)
        self._wait(
            f"{name} respawned and routed",
            lambda s: _healthy_and_routed(s, name) and s.backend(name).pid not in (None, pid),
        )

    def _bad(self, step: Step) -> None:
        label, content = self.rng.choice(BAD_FILES)
        step.target = name = f"soak-bad-{self.count['bad']}"
        self.count["bad"] += 1
        path = self.layout.vassal_file(name)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(content)
        step.at = self.now()
        os.replace(tmp, path)
        routed: list[str] = []

        def failed(s: Snapshot) -> bool:
            routed.extend(n for n in s.routed if n == name)
            b = s.backend(name)
            return bool(b and b.state == "failed" and b.error)

        def gone(s: Snapshot) -> bool:
            routed.extend(n for n in s.routed if n == name)
            return name not in s.backends

        self._wait(f"{name} failed", failed)
        step.detail = f"{label}: {Snapshot.read(self.layout).backend(name).error[:100]}"
        path.unlink()
        self._wait(f"{name} gone", gone)
        if routed:
            raise StepFailed(f"{name} was routed")

    def _rm(self, step: Step) -> None:
        candidates = sorted(n for n in Snapshot.read(self.layout).routed if n.startswith("soak-"))
        step.target = name = self.rng.choice(candidates)
        step.at = self.now()
        if self.rng.random() < 0.5:
            step.detail = "fleet rm"
            self._cli("rm", name, "--timeout", str(STEP_TIMEOUT))
        else:
            step.detail = "file deleted"
            self.layout.vassal_file(name).unlink()
        self._wait(f"{name} removed", lambda s: name not in s.backends)

    def _reload_all(self, step: Step) -> None:
        step.target = "all"
        step.at = self.now()
        self._cli("reload", "--all", "--timeout", str(STEP_TIMEOUT))
        self._wait("every backend routed again", self._all_routed)

    # ---- helpers -----------------------------------------------------------------------------------

    def _cli(self, *args: str) -> None:
        out = self.cluster.fleet(*args, timeout=STEP_TIMEOUT * 3, check=False)
        if out.returncode != 0:
            raise StepFailed(f"fleet {' '.join(args)} exited {out.returncode}: {(out.stderr or out.stdout)[-300:]}")

    def _wait(self, what: str, done: Callable[[Snapshot], object], timeout: float = STEP_TIMEOUT) -> None:
        wait_for(what, lambda: done(Snapshot.read(self.layout)), timeout, 0.02, ignore=(OSError,))

    def _all_routed(self, snap: Snapshot) -> bool:
        return all(_healthy_and_routed(snap, name) for name in vassals.present(self.layout.vassals))


def _healthy_and_routed(snap: Snapshot, name: str) -> bool:
    b = snap.backend(name)
    return bool(b and b.state == "healthy" and name in snap.routed)
