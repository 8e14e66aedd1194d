"""Cells and the edge on Docker Swarm (pure): who the edge routes to, and when a stopping cell may stop.

A *cell* is one Swarm task running a whole fleet; the *edge* balances over the cells it finds through
Swarm's DNS (`tasks.cell`). Nothing here touches the network, a process or the clock: the edge's loop
(fleet.swarm.edge_process) and the cell's entrypoint (fleet.swarm.cell) observe, call these, and apply. The
rules are fleet's, one level up:

- a cell joins once its health port says `serving` (its own fleet routes at least one vassal);
- a cell told to stop says `draining` first and keeps serving: the edge takes it out at once, and the
  cell stops its fleet only after the edge's nginx can no longer be sending it new requests;
- a serving cell that fails `failures_to_eject` probes in a row is ejected; one that left `tasks.cell`
  (stopped, killed, rescheduled) is dropped at once;
- with no serving cell, draining cells stay routed: they serve until they stop, which beats a 503; and
  with neither, the ejected cells that Swarm still runs are routed too (a "panic mode", as Envoy has): when
  every cell fails its probes at once, the likelier cause is an overloaded machine, not dead cells.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from fleet.healthcheck import CELL_HEALTH_PORT, EDGE_STATUS_PORT


@dataclass(frozen=True)
class EdgeSettings:
    cells_name: str = "tasks.cell"  # Swarm's DNS name for every task of the cell service
    cell_port: int = 8080  # a cell's fleet (its nginx)
    health_port: int = CELL_HEALTH_PORT  # a cell's health port (fleet.swarm.cell; its fleet's admin page has 8081)
    status_port: int = EDGE_STATUS_PORT  # the edge's own liveness answer, on its loopback (the container healthcheck)
    interval: float = 0.5  # how often tasks.cell is resolved and every cell probed
    probe_timeout: float = 2.0
    failures_to_eject: int = 2
    # The name the edge's nginx resolves through the edge's own resolver (.invalid never exists elsewhere),
    # and how long nginx may cache an answer: its `valid=` and the answers' TTL, in whole seconds. 0: until
    # the current second ends (nginx compares whole seconds), then the next request asks again.
    resolver_name: str = "cells.fleet.invalid"
    dns_valid: int = 0

    @property
    def routing_lag(self) -> float:
        """The longest an edge may still send new requests to a cell after it last answered `serving`.

        The next probe (interval, taking at most probe_timeout) sees `draining`; the resolver drops the
        cell at once; nginx may use its cached answer for dns_valid more seconds, plus the rest of the
        current second (it counts in whole seconds).
        """
        return self.interval + self.probe_timeout + self.dns_valid + 1.0


DRAIN_MARGIN = 0.5


def default_drain_wait(settings: EdgeSettings = EdgeSettings()) -> float:
    """How long a stopping cell keeps serving after it last told an edge `serving` (4 s by default)."""
    return settings.routing_lag + DRAIN_MARGIN


class CellState(StrEnum):
    """Where a cell stands with the edge (fleet.core.states.State is a backend's, inside one fleet)."""

    JOINING = "joining"  # in tasks.cell, not serving yet
    SERVING = "serving"  # routed
    DRAINING = "draining"  # stopping: out of rotation (unless nothing else serves), still serving
    DOWN = "down"  # ejected: failed probes in a row; back once it says `serving` again (or in panic mode)


@dataclass(frozen=True)
class Answer:
    """One probe of a cell's health port."""

    status: str  # serving | draining | starting | unreachable
    host: str = ""  # the cell's host name (its container), "" if it did not say
    detail: str = ""


def parse_health(code: int, body: Mapping[str, object]) -> Answer:
    """What a cell's health port answered: 200 `serving`, 503 `draining` or `starting`."""
    host = str(body.get("host", ""))
    state = str(body.get("state", ""))
    if code == 200 and state == "serving":
        return Answer("serving", host)
    if state in ("draining", "starting"):
        return Answer(state, host, str(body.get("detail", "")))
    return Answer("starting", host, f"health port answered {code} {state or '(no state)'}")


@dataclass(frozen=True)
class Cell:
    """One cell as the edge sees it: its address in tasks.cell, its host and its CellState."""

    address: str
    host: str = ""
    state: CellState = CellState.JOINING
    failures: int = 0
    detail: str = ""


@dataclass(frozen=True)
class EdgeDecision:
    """The edge's cells after one pass, the addresses to route to, and what happened."""

    cells: dict[str, Cell]
    routed: tuple[str, ...]  # addresses, sorted: what the edge's resolver answers
    events: list[str] = field(default_factory=list)


def routed(cells: Mapping[str, Cell]) -> tuple[str, ...]:
    """The serving cells; if there is none, the draining ones (they still serve until they stop); if there
    is none either, the ejected ones (panic mode: they may only be slow)."""
    for state in (CellState.SERVING, CellState.DRAINING, CellState.DOWN):
        chosen = tuple(sorted(a for a, c in cells.items() if c.state is state))
        if chosen:
            return chosen
    return ()


def step(cell: Cell, answer: Answer | None, settings: EdgeSettings) -> tuple[Cell, str]:
    """One cell's next state after a probe, and what happened (for the log; "" if nothing did)."""
    if answer is None:
        return cell, ""
    if answer.host and cell.host and answer.host != cell.host:
        # A new task got the address of one that is gone: it must earn its place like any new cell.
        fresh, _ = step(Cell(cell.address), answer, settings)
        return fresh, f"is now {answer.host} (was {cell.host}): {fresh.state.value}"
    host = answer.host or cell.host
    if answer.status == "serving":
        new = Cell(cell.address, host, CellState.SERVING)
        return new, "" if cell.state is CellState.SERVING else "serving: joins"
    if answer.status == "draining":
        new = Cell(cell.address, host, CellState.DRAINING, detail=answer.detail)
        return new, "" if cell.state is CellState.DRAINING else "draining: leaves"
    failures = cell.failures + 1
    detail = answer.detail or answer.status
    if cell.state is CellState.SERVING:
        if failures < settings.failures_to_eject:
            return replace(cell, host=host, failures=failures, detail=detail), ""
        return Cell(
            cell.address, host, CellState.DOWN, failures, detail
        ), f"ejected after {failures} failed probes: {detail}"
    if cell.state is CellState.DRAINING and answer.status == "unreachable":
        return Cell(cell.address, host, CellState.DOWN, failures, detail), "stopped"
    return replace(cell, host=host, failures=failures, detail=detail), ""


def decide(
    cells: Mapping[str, Cell],
    found: frozenset[str] | None,
    answers: Mapping[str, Answer],
    settings: EdgeSettings = EdgeSettings(),
) -> EdgeDecision:
    """The cells after one pass: `found` is what tasks.cell resolved to (None: the lookup failed, keep
    the known cells), `answers` the probes of this pass by address."""
    addresses = set(cells) if found is None else set(found)
    new: dict[str, Cell] = {}
    events = []
    for address in sorted(addresses):
        cell, event = step(cells.get(address) or Cell(address), answers.get(address), settings)
        new[address] = cell
        if event:
            events.append(f"cell {_name(cell)}: {event}")
    for address in sorted(set(cells) - addresses):
        events.append(f"cell {_name(cells[address])}: gone from {settings.cells_name}")
    before, after = routed(cells), routed(new)
    if before != after:
        events.append(f"routing {len(after)} cell(s): {', '.join(_name(new[a]) for a in after) or 'none (JSON 503)'}")
    return EdgeDecision(new, after, events)


def _name(cell: Cell) -> str:
    return f"{cell.address} ({cell.host})" if cell.host else cell.address


# ---- the cell's side ----


def cell_health(draining: bool, fleet_answer: int | None, host: str) -> tuple[int, dict[str, str]]:
    """What a cell's health port answers: `draining` once told to stop (even though it still serves),
    else `serving` if its own nginx answers /healthz with 200 (some vassal is routed), else `starting`."""
    if draining:
        detail = "stopping: finishing its requests"
        return 503, {"state": "draining", "host": host, "detail": detail}
    if fleet_answer == 200:
        return 200, {"state": "serving", "host": host}
    detail = "no answer from its nginx" if fleet_answer is None else f"its nginx answered {fleet_answer}"
    return 503, {"state": "starting", "host": host, "detail": detail}


def cell_alive(ever_served: bool) -> bool:
    """The cell container's healthcheck. Swarm waits for it before it stops an old cell in a rolling update,
    and replaces a cell that fails it: so it passes once the cell has served, and from then on for as long as
    the cell runs. A restart would not help a cell whose vassals all fail (every cell reads the same files),
    and a slow one is the edge's to route around; a cell whose fleet exits, exits."""
    return ever_served


def drained(now: float, last_told_serving: float | None, wait: float) -> bool:
    """May a draining cell stop its fleet? Yes once no edge can still be sending it new requests: `wait`
    after it last told an edge `serving` (at once if no edge ever heard that)."""
    return last_told_serving is None or now >= last_told_serving + wait
