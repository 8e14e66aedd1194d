"""fleet.swarm.edge (who the edge routes to, when a cell may stop) and fleet.swarm.dns (its resolver's answers)."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest

from fleet.config import Limits
from fleet.layout import Layout
from fleet.swarm import dns, edge
from fleet.swarm.edge import Answer, Cell, CellState, EdgeSettings

S = EdgeSettings()
SERVING = Answer("serving", "c1")
DRAINING = Answer("draining", "c1", "stopping")
STARTING = Answer("starting", "c1", "its nginx answered 503")
UNREACHABLE = Answer("unreachable", detail="ConnectionRefusedError")


def cell(state: CellState, failures: int = 0, address: str = "10.0.1.5", host: str = "c1") -> Cell:
    return Cell(address, host, state, failures)


# ---- one cell's moves ----


def test_transition_joining_to_serving_once_it_answers_serving():
    new, event = edge.step(Cell("10.0.1.5"), SERVING, S)
    assert (new.state, new.host, event) == (CellState.SERVING, "c1", "serving: joins")


@pytest.mark.parametrize("answer", [STARTING, UNREACHABLE])
def test_joining_stays_joining_until_it_serves(answer):
    new, event = edge.step(Cell("10.0.1.5"), answer, S)
    assert new.state is CellState.JOINING
    assert event == ""


def test_transition_serving_to_draining_at_the_first_draining_answer():
    new, event = edge.step(cell(CellState.SERVING), DRAINING, S)
    assert (new.state, event) == (CellState.DRAINING, "draining: leaves")


def test_serving_cell_stays_routed_after_one_failed_probe():
    new, event = edge.step(cell(CellState.SERVING), UNREACHABLE, S)
    assert (new.state, new.failures, event) == (CellState.SERVING, 1, "")


@pytest.mark.parametrize("answer", [STARTING, UNREACHABLE])
def test_transition_serving_to_down_after_two_failed_probes(answer):
    new, event = edge.step(cell(CellState.SERVING, failures=1), answer, S)
    assert new.state is CellState.DOWN
    assert event.startswith("ejected after 2 failed probes")


def test_transition_down_to_serving_when_it_answers_again():
    new, event = edge.step(cell(CellState.DOWN, failures=5), SERVING, S)
    assert (new.state, new.failures, event) == (CellState.SERVING, 0, "serving: joins")


def test_transition_draining_to_down_once_it_no_longer_answers():
    new, event = edge.step(cell(CellState.DRAINING), UNREACHABLE, S)
    assert (new.state, event) == (CellState.DOWN, "stopped")


def test_a_serving_answer_does_not_repeat_the_join_event():
    assert edge.step(cell(CellState.SERVING, failures=1), SERVING, S) == (cell(CellState.SERVING), "")


def test_no_probe_this_pass_changes_nothing():
    assert edge.step(cell(CellState.DRAINING), None, S) == (cell(CellState.DRAINING), "")


def test_another_task_at_a_known_address_starts_over():
    new, event = edge.step(cell(CellState.SERVING, host="old"), Answer("starting", "new"), S)
    assert (new.state, new.host) == (CellState.JOINING, "new")
    assert event == "is now new (was old): joining"


# ---- a whole pass ----


def test_decide_routes_the_serving_cells_sorted_and_says_so():
    found = frozenset({"10.0.1.7", "10.0.1.5", "10.0.1.6"})
    answers = {"10.0.1.5": Answer("serving", "a"), "10.0.1.6": STARTING, "10.0.1.7": Answer("serving", "c")}
    d = edge.decide({}, found, answers, S)
    assert d.routed == ("10.0.1.5", "10.0.1.7")
    assert d.events[-1] == "routing 2 cell(s): 10.0.1.5 (a), 10.0.1.7 (c)"
    assert d.cells["10.0.1.6"].state is CellState.JOINING


def test_decide_drops_a_cell_gone_from_swarms_dns_at_once():
    cells = {"10.0.1.5": cell(CellState.SERVING), "10.0.1.6": cell(CellState.SERVING, address="10.0.1.6", host="c2")}
    d = edge.decide(cells, frozenset({"10.0.1.6"}), {"10.0.1.6": Answer("serving", "c2")}, S)
    assert d.routed == ("10.0.1.6",)
    assert "cell 10.0.1.5 (c1): gone from tasks.cell" in d.events


def test_decide_keeps_the_known_cells_when_the_lookup_fails():
    cells = {"10.0.1.5": cell(CellState.SERVING)}
    d = edge.decide(cells, None, {"10.0.1.5": SERVING}, S)
    assert d.routed == ("10.0.1.5",)
    assert d.events == []


def test_decide_without_change_says_nothing():
    cells = {"10.0.1.5": cell(CellState.SERVING)}
    assert edge.decide(cells, frozenset(cells), {"10.0.1.5": SERVING}, S).events == []


def test_draining_cells_stay_routed_while_no_cell_serves():
    cells = {"10.0.1.5": cell(CellState.DRAINING), "10.0.1.6": Cell("10.0.1.6"), "10.0.1.7": cell(CellState.DOWN)}
    assert edge.routed(cells) == ("10.0.1.5",)
    cells["10.0.1.6"] = cell(CellState.SERVING, address="10.0.1.6")
    assert edge.routed(cells) == ("10.0.1.6",)


def test_panic_mode_routes_the_ejected_cells_when_none_serves_or_drains():
    cells = {"10.0.1.5": cell(CellState.DOWN), "10.0.1.6": Cell("10.0.1.6"), "10.0.1.7": cell(CellState.DOWN)}
    assert edge.routed(cells) == ("10.0.1.5", "10.0.1.7")


def test_every_cell_failing_its_probes_at_once_stays_routed():
    cells = {a: cell(CellState.SERVING, failures=1, address=a) for a in ("10.0.1.5", "10.0.1.6")}
    d = edge.decide(cells, frozenset(cells), dict.fromkeys(cells, UNREACHABLE), S)
    assert {c.state for c in d.cells.values()} == {CellState.DOWN}
    assert d.routed == ("10.0.1.5", "10.0.1.6")


def test_nothing_to_route_is_an_empty_answer():
    d = edge.decide({"10.0.1.5": cell(CellState.SERVING)}, frozenset(), {}, S)
    assert d.routed == ()
    assert d.events[-1] == "routing 0 cell(s): none (JSON 503)"


# ---- what a cell's health port says, and when a draining cell may stop ----


def test_parse_health_reads_the_cells_answers():
    assert edge.parse_health(200, {"state": "serving", "host": "h"}) == Answer("serving", "h")
    assert edge.parse_health(503, {"state": "draining", "host": "h", "detail": "x"}) == Answer("draining", "h", "x")
    assert edge.parse_health(404, {}).status == "starting"


@pytest.mark.parametrize(
    ("draining", "fleet", "code", "state"),
    [(False, 200, 200, "serving"), (False, 503, 503, "starting"), (False, None, 503, "starting"),
     (True, 200, 503, "draining"), (True, None, 503, "draining")],
)  # fmt: skip
def test_cell_health(draining, fleet, code, state):
    got_code, body = edge.cell_health(draining, fleet, "h")
    assert (got_code, body["state"], body["host"]) == (code, state, "h")
    assert edge.parse_health(got_code, body).status == state


def test_a_cell_no_edge_heard_serving_may_stop_at_once():
    assert edge.drained(now=100.0, last_told_serving=None, wait=3.0)


def test_a_cell_an_edge_heard_serving_waits_for_the_edges_routing_lag():
    assert not edge.drained(now=102.9, last_told_serving=100.0, wait=3.0)
    assert edge.drained(now=103.0, last_told_serving=100.0, wait=3.0)


def test_the_default_drain_outlasts_the_edges_routing_lag():
    # probe interval + probe + nginx's cache (the rest of the second) < the cell's drain
    assert S.routing_lag == pytest.approx(3.5)
    assert edge.default_drain_wait(S) == pytest.approx(4.0)


def test_a_cell_container_is_alive_once_it_has_served():
    assert not edge.cell_alive(ever_served=False)
    assert edge.cell_alive(ever_served=True)


# ---- the resolver's wire format ----


def query(qid: int, name: str, qtype: int = dns.TYPE_A) -> bytes:
    """A query as a stub resolver sends it: header (recursion desired, one question), then the question."""
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + dns.encode_name(name) + struct.pack("!HH", qtype, 1)


def skip_name(data: bytes, pos: int) -> int:
    """The offset just past the (possibly compressed) name at `pos`."""
    while data[pos]:
        if data[pos] & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + data[pos]
    return pos + 1


def parse_answer(data: bytes) -> tuple[int, int, list[str]]:
    """(id, rcode, A addresses) of a response, read as a stub resolver would."""
    qid, flags, qdcount, ancount, _ns, _ar = struct.unpack_from("!HHHHHH", data)
    pos = 12
    for _ in range(qdcount):
        pos = skip_name(data, pos) + 4
    found = []
    for _ in range(ancount):
        pos = skip_name(data, pos)
        rtype, _cls, _ttl, length = struct.unpack_from("!HHIH", data, pos)
        pos += 10
        if rtype == dns.TYPE_A and length == 4:
            found.append(str(ipaddress.IPv4Address(data[pos : pos + 4])))
        pos += length
    return qid, flags & 0xF, found


def test_answer_carries_every_routed_address_for_the_name():
    q = dns.parse_query(query(0x1234, "Cells.Fleet.Invalid"))
    assert (q.id, q.name, q.qtype) == (0x1234, "cells.fleet.invalid", dns.TYPE_A)
    reply = dns.answer(q, "cells.fleet.invalid", ("10.0.1.5", "10.0.1.6"), ttl=0)
    assert parse_answer(reply) == (0x1234, dns.RCODE_OK, ["10.0.1.5", "10.0.1.6"])


@pytest.mark.parametrize(("name", "addresses"), [("other.invalid", ("10.0.1.5",)), ("cells.fleet.invalid", ())])
def test_another_name_or_no_cell_is_nxdomain(name, addresses):
    q = dns.parse_query(query(7, name))
    assert parse_answer(dns.answer(q, "cells.fleet.invalid", addresses)) == (7, 3, [])


def test_an_aaaa_question_gets_an_empty_answer():
    q = dns.parse_query(query(9, "cells.fleet.invalid", qtype=28))
    assert parse_answer(dns.answer(q, "cells.fleet.invalid", ("10.0.1.5",))) == (9, 0, [])


@pytest.mark.parametrize("data", [b"", b"\x00" * 11, query(1, "a.b")[:-3], b"\x12\x34\x80" + b"\x00" * 9])
def test_garbage_and_responses_are_refused(data):
    with pytest.raises(dns.BadQuery):
        dns.parse_query(data)


def test_refuse_answers_formerr_only_to_a_readable_header():
    assert dns.refuse(b"\x00") is None
    assert parse_answer(dns.refuse(b"\x12\x34" + b"\x00" * 10)) == (0x1234, dns.RCODE_FORMERR, [])


# ---- the edge's nginx configuration ----


def test_edge_config_resolves_the_cells_through_the_edges_resolver():
    from fleet.swarm.edge_process import render_config

    root = Layout(Path(__file__).resolve().parents[2])
    conf = render_config(root, Path("/r/edge"), 8080, "0.0.0.0", "127.0.0.1:5353", S, Limits())
    assert "{{" not in conf
    assert "resolver 127.0.0.1:5353 valid=0s ipv6=off;" in conf
    assert "set $cells cells.fleet.invalid;" in conf
    assert "proxy_pass http://$cells:8080;" in conf
    assert "listen 0.0.0.0:8080;" in conf
    assert "listen 127.0.0.1:8082;" in conf  # the healthcheck's, on the loopback
