"""Carrying out a deploy (I/O, no decisions: fleet.core.deploy decides). Everything is in run/deploy/:

    request.json   written by `fleet deploy` / `fleet rollback` (atomically); taken when no deploy runs
    cancel         `fleet deploy` was interrupted (Ctrl-C): roll back
    state.json     the deploy, rewritten (atomically) at every change; the last one stays when it ends
    progress.jsonl one line per step taken, for `fleet deploy` to print

A control plane that starts with an unfinished deploy in state.json resumes it (fleet.core.deploy.resume).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

from fleet import uwsgi
from fleet.core import deploy as core
from fleet.core.model import Model
from fleet.layout import Layout, write_atomically
from fleet.vassalfile import vassals

log = logging.getLogger("fleet.control")
PROBE_TIMEOUT = 2.0


def request_path(layout: Layout):
    return layout.deploy_dir / "request.json"


def state_path(layout: Layout):
    return layout.deploy_dir / "state.json"


def cancel_path(layout: Layout):
    return layout.deploy_dir / "cancel"


def progress_path(layout: Layout):
    return layout.deploy_dir / "progress.jsonl"


def read_state(layout: Layout) -> core.Deploy | None:
    try:
        return core.from_dict(json.loads(state_path(layout).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class DeployRunner:
    """The one deploy in progress, if any: advanced once per control-plane pass."""

    def __init__(self, layout: Layout, now: float):
        self.layout = layout
        self.last_probe = now
        self.deploy = read_state(layout)
        if self.deploy is not None and self.deploy.phase not in core.FINISHED:
            self.deploy = core.resume(self.deploy, now)
            self._persist()
            self._say(f"control plane restarted: resuming the deploy at {self.deploy.phase}")

    @property
    def running(self) -> bool:
        return self.deploy is not None and self.deploy.phase not in core.FINISHED

    def published(self) -> dict | None:
        """The deploy in progress for the snapshot (/api/status, /metrics), without its kept files."""
        if not self.running or self.deploy is None:
            return None
        doc = core.to_dict(self.deploy)
        doc.pop("old_texts", None)
        doc["plan"].pop("text", None)
        return doc

    def step(
        self,
        model: Model,
        routed: frozenset[str],
        answers: Mapping[str, tuple[tuple[int, float], ...]],
        now: float,
    ) -> dict[str, int]:
        """Take a new request, advance the deploy; returns the weights it sets for this pass (may be empty)."""
        if not self.running:
            self._take_request(now)
        if not self.running or self.deploy is None:
            return {}
        answers = self._with_probes(dict(answers), now)
        seen = core.Seen(
            now,
            {name: b.state.value for name, b in model.backends.items()},
            routed,
            answers,
            cancel_path(self.layout).exists(),
        )
        orders = core.advance(self.deploy, seen)
        self._apply(orders)
        changed = orders.deploy != self.deploy
        self.deploy = orders.deploy
        if changed:
            self._persist()
        for line in orders.say:
            self._say(line)
        if not self.running:
            cancel_path(self.layout).unlink(missing_ok=True)
        return orders.weights

    def _with_probes(
        self, answers: dict[str, tuple[tuple[int, float], ...]], now: float
    ) -> dict[str, tuple[tuple[int, float], ...]]:
        """--probe-rate: the deploy's own GETs of the health path to each new backend's socket, added to
        its answers (low traffic: the canary is judged on these too, never on nothing)."""
        d = self.deploy
        if d is None or (due := core.probes_due(d, self.last_probe, now)) == 0:
            if d is None or d.phase != core.CANARY:
                self.last_probe = now
            return answers
        self.last_probe = now
        path = vassals.parse(Path("new.ini"), d.plan.text.encode()).health.path
        targets = {n: (self.layout.socket(n), path) for n in d.started if self.layout.socket(n).exists()}
        for _ in range(due):
            started = time.perf_counter()
            results = uwsgi.request_many(targets, PROBE_TIMEOUT)
            ms = (time.perf_counter() - started) * 1000
            for name, result in results.items():
                status = result[0] if isinstance(result, tuple) else 502
                answers[name] = (*answers.get(name, ()), (status, ms))
        return answers

    def _take_request(self, now: float) -> None:
        path = request_path(self.layout)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.error("deploy request %s unreadable (%s); ignored", path, e)
            path.unlink(missing_ok=True)
            return
        path.unlink(missing_ok=True)
        cancel_path(self.layout).unlink(missing_ok=True)
        try:
            plan = core.Plan(**(doc | {"canary": tuple(doc.get("canary", ()))}))
        except TypeError as e:
            log.error("deploy request %s is not a plan (%s); ignored", path, e)
            return
        old = {}
        for name in sorted(vassals.present(self.layout.vassals)):
            try:
                old[name] = self.layout.vassal_file(name).read_text()
            except OSError:
                continue
        self.deploy = core.begin(plan, old, now)
        self._persist()
        self._say(f"deploy {plan.version} of app {plan.app} over {', '.join(old) or 'no backend'}")

    def _apply(self, orders: core.Orders) -> None:
        """Files first (new backends), then drains, deletes and withdrawn drains; each failure is logged and
        the next pass tries again (every order is idempotent)."""
        for name, text in orders.write.items():
            path = self.layout.vassal_file(name)
            try:
                if not path.exists() or path.read_text() != text:
                    write_atomically(path, text)
            except OSError as e:
                log.error("deploy: cannot write %s: %s", path, e)
        for name in orders.drain:
            try:
                self.layout.drain_dir.mkdir(parents=True, exist_ok=True)
                (self.layout.drain_dir / name).touch()
            except OSError as e:
                log.error("deploy: cannot ask to drain %s: %s", name, e)
        for name in orders.delete:
            self.layout.vassal_file(name).unlink(missing_ok=True)
        for name in orders.undrain:
            (self.layout.drain_dir / name).unlink(missing_ok=True)

    def _persist(self) -> None:
        if self.deploy is None:
            return
        self.layout.deploy_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(state_path(self.layout), json.dumps(core.to_dict(self.deploy)) + "\n")

    def _say(self, line: str) -> None:
        log.info("deploy: %s", line)
        try:
            with open(progress_path(self.layout), "a") as f:
                f.write(json.dumps({"time": time.time(), "line": line}) + "\n")
        except OSError:
            pass
