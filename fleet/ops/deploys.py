"""`fleet deploy`, `fleet deploy --status` and `fleet rollback`: write the request into run/deploy/, then
follow the control plane's steps (it runs the deploy: fleet.control.deploying) until it ends.

Exit status: 0 promoted, 1 rolled back (the reason is printed: which step, what was measured against what).
Ctrl-C asks the control plane to roll back and waits for it; a second Ctrl-C leaves it rolling back alone.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from fleet import uwsgi
from fleet.control.deploying import cancel_path, progress_path, read_state, request_path
from fleet.core import deploy as core
from fleet.errors import FleetError, InvalidVassal, NotRunning
from fleet.layout import Layout, write_atomically
from fleet.ops.commands import _require_running
from fleet.published.records import running
from fleet.vassalfile import vassals

DEFAULT_APP = "default"
POLL = 0.1
CONTROL_GONE = 30.0  # seconds without a control plane before `fleet deploy` stops following


def parse_canary(text: str) -> tuple[int, ...]:
    """`10,50` -> (10, 50): percents from 1 to 99, rising; empty or `none`: no canary."""
    if text.strip() in ("", "none", "0"):
        return ()
    try:
        steps = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise FleetError(f"--canary {text!r}: write percents, e.g. --canary 10,50", exit_code=2) from None
    if not all(0 < p < 100 for p in steps) or list(steps) != sorted(steps):
        raise FleetError(f"--canary {text!r}: rising percents from 1 to 99, e.g. --canary 10,50", exit_code=2)
    return steps


def deploy(
    layout: Layout,
    new_ini: Path,
    app: str | None,
    canary: tuple[int, ...],
    interval: float,
    max_error_rate: float,
    max_p99: float,
    min_requests: int,
    surge: int,
    start_timeout: float,
    probe_rate: float = 0.0,
    out: TextIO = sys.stdout,
) -> int:
    """Deploy NEW.ini as the next version of the app (see the module's docstring)."""
    checked = vassals.read(new_ini, uwsgi.known_options(uwsgi.binary(None)), layout.app)
    if not checked.valid:
        raise InvalidVassal(f"{new_ini}: {checked.reason()}; `fleet check {new_ini}` lists every problem")
    if interval <= 0 or min_requests < 1 or surge < 1 or max_error_rate < 0 or max_p99 <= 0 or probe_rate < 0:
        raise FleetError("--interval, --max-p99 above 0; --min-requests, --surge at least 1", exit_code=2)
    text = new_ini.read_text()
    plan = core.Plan(
        app or DEFAULT_APP, _next_version(layout), text, canary, interval, max_error_rate, max_p99, min_requests,
        surge, start_timeout, probe_rate,
    )  # fmt: skip
    return _run(layout, plan, out)


def rollback(layout: Layout, app: str | None, start_timeout: float, out: TextIO = sys.stdout) -> int:
    """Back to the version before the last deploy (its files were kept), by the same path, without a canary."""
    last = read_state(layout)
    if last is None or not last.old_texts:
        raise FleetError("no deploy to roll back: `fleet rollback` undoes the last `fleet deploy`")
    if last.phase not in core.FINISHED:
        raise FleetError(
            "a deploy is in progress: Ctrl-C on its `fleet deploy` (or `fleet deploy --cancel`) rolls it back"
        )
    if app and app != last.plan.app:
        raise FleetError(f"the last deploy was of app {last.plan.app}, not {app}")
    if last.phase == core.ROLLED_BACK:
        raise FleetError(f"the last deploy ({last.plan.version}) was already rolled back: {last.reason}")
    text = last.old_texts[sorted(last.old_texts)[0]]
    plan = core.Plan(last.plan.app, _next_version(layout), text, (), start_timeout=start_timeout)
    return _run(layout, plan, out)


def reload_by_replacement(layout: Layout, surge: int, start_timeout: float, out: TextIO = sys.stdout) -> int:
    """`fleet reload --all --surge N`: the files as they are, as new backends (N at a time beyond the app's
    count) replacing the old ones start-first, without a canary. The new backends get new names (a name is
    a socket): so every file must be the same, else `fleet reload --all` reloads each in place."""
    if surge < 1:
        raise FleetError("--surge: at least 1", exit_code=2)
    texts = {}
    for name in sorted(vassals.present(layout.vassals)):
        texts[name] = layout.vassal_file(name).read_text()
    if len(set(texts.values())) > 1:
        raise FleetError(
            "--surge replaces the backends with copies of one file, and these files differ: "
            "`fleet reload --all` reloads each in place",
            exit_code=2,
        )
    if not texts:
        raise FleetError("no backend to reload: `fleet add NAME` first")
    text = next(iter(texts.values()))
    plan = core.Plan(DEFAULT_APP, _next_version(layout), text, (), surge=surge, start_timeout=start_timeout)
    return _run(layout, plan, out)


def status(layout: Layout, as_json: bool, out: TextIO = sys.stdout) -> int:
    d = read_state(layout)
    if as_json:
        out.write(json.dumps(core.to_dict(d) if d else None) + "\n")
    else:
        out.write(describe(d) + "\n")
    return 0


def cancel(layout: Layout, out: TextIO = sys.stdout) -> int:
    d = read_state(layout)
    if d is None or d.phase in core.FINISHED:
        raise FleetError("no deploy in progress")
    cancel_path(layout).touch()
    out.write("asked the control plane to roll the deploy back\n")
    return 0


def describe(d: core.Deploy | None) -> str:
    """One line on the last deploy, for `fleet deploy --status` and `fleet status`."""
    if d is None:
        return "no deploy yet"
    p = d.plan
    head = f"deploy {p.version} of app {p.app}: {d.phase}"
    if d.resumed and d.phase not in core.FINISHED:
        head += " (resumed after a control-plane restart)"
    if d.phase == core.CANARY:
        w = d.window
        head += (
            f", step {d.step + 1} of {len(p.canary)} at {d.percent}%: {w.answers} answers"
            f" (min {p.min_requests}), 5xx {w.error_rate:.1f}% (max {p.max_error_rate:g}%),"
            f" p99 {w.p99:.0f} ms (max {p.max_p99:g} ms)"
        )
    if d.reason:
        head += f"; reason: {d.reason}"
    elif d.note:
        head += f"; {d.note}"
    return head


def _next_version(layout: Layout) -> str:
    last = read_state(layout)
    number = 1
    if last is not None and (m := re.fullmatch(r"v(\d+)", last.plan.version)):
        number = int(m.group(1))
    present = vassals.present(layout.vassals)
    while True:
        number += 1
        if not any(name.split("-v")[-1].startswith(f"{number}-") for name in present):
            return f"v{number}"


def _run(layout: Layout, plan: core.Plan, out: TextIO) -> int:
    _require_running(layout)
    last = read_state(layout)
    if last is not None and last.phase not in core.FINISHED:
        raise FleetError(f"deploy {last.plan.version} is in progress: `fleet deploy --status` shows it")
    if not vassals.present(layout.vassals):
        raise FleetError("the app has no backend to replace: `fleet add NAME` first")
    layout.deploy_dir.mkdir(parents=True, exist_ok=True)
    progress_path(layout).unlink(missing_ok=True)
    write_atomically(request_path(layout), json.dumps(asdict(plan) | {"canary": list(plan.canary)}) + "\n")
    out.write(f"deploy {plan.version}: asked the control plane\n")
    out.flush()
    printed = 0
    cancelled = False
    seen_at = time.monotonic()
    while True:
        try:
            printed = _print_progress(layout, printed, out)
            d = read_state(layout)
            if d is not None and d.plan.version == plan.version and d.phase in core.FINISHED:
                _print_progress(layout, printed, out)
                if d.phase == core.PROMOTED:
                    out.write(f"promoted: version {plan.version} serves app {plan.app}\n")
                    return 0
                out.write(f"rolled back: {d.reason}\n")
                return 1
            if "control" in running(layout):
                seen_at = time.monotonic()
            elif time.monotonic() - seen_at > CONTROL_GONE:  # the supervisor restarts it within seconds
                raise NotRunning("the control plane stopped; the deploy resumes (or rolls back) when it is back")
            time.sleep(POLL)  # polling run/deploy/state.json, which the control plane rewrites at each step
        except KeyboardInterrupt:
            if cancelled:
                out.write("\nleft the control plane rolling back: `fleet deploy --status` shows it\n")
                return 130
            cancelled = True
            cancel_path(layout).touch()
            out.write("\ncancelled: rolling back (Ctrl-C again to stop waiting)\n")


def _print_progress(layout: Layout, printed: int, out: TextIO) -> int:
    try:
        lines = progress_path(layout).read_text().splitlines()
    except OSError:
        return printed
    for line in lines[printed:]:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        out.write(time.strftime("%H:%M:%S ", time.localtime(doc["time"])) + doc["line"] + "\n")
    out.flush()
    return len(lines)
