"""The edge's private DNS answers (pure): the wire format of one A query and its answer (RFC 1035).

The edge's nginx finds the cells it may route to by resolving one name through a resolver that only
the edge runs (fleet.swarm.edge_process), which answers with the routed cells' addresses. nginx re-resolves
the name after its `valid=` time without a reload, so cells join and leave while clients' keep-alive
connections to nginx stay open. Only what nginx asks is handled: one question, class IN, type A (with
`ipv6=off`); any other type gets an empty answer, any other name NXDOMAIN.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

TYPE_A = 1
CLASS_IN = 1
RCODE_OK, RCODE_FORMERR, RCODE_NXDOMAIN = 0, 1, 3
_HEADER = struct.Struct("!HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
_QR, _AA, _RD, _RA = 0x8000, 0x0400, 0x0100, 0x0080


class BadQuery(ValueError):
    """Not a DNS query this responder can answer (garbage, a response, several questions)."""


@dataclass(frozen=True)
class Query:
    id: int
    flags: int
    name: str  # lower case, no trailing dot
    qtype: int
    qclass: int
    question: bytes  # the question section as sent, echoed in the answer


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad DNS label {label!r} in {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def parse_query(data: bytes) -> Query:
    """The one question of a standard query; BadQuery if it is anything else."""
    if len(data) < _HEADER.size:
        raise BadQuery("shorter than a DNS header")
    qid, flags, qdcount, _an, _ns, _ar = _HEADER.unpack_from(data)
    if flags & _QR or (flags >> 11) & 0xF or qdcount != 1:
        raise BadQuery("not a standard query with one question")
    labels, pos = [], _HEADER.size
    while True:
        if pos >= len(data):
            raise BadQuery("truncated name")
        length = data[pos]
        pos += 1
        if length == 0:
            break
        if length > 63 or pos + length > len(data):
            raise BadQuery("bad label")  # compression pointers never appear in a question sent alone
        labels.append(data[pos : pos + length].decode("ascii", "replace").lower())
        pos += length
    if pos + 4 > len(data):
        raise BadQuery("truncated question")
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    return Query(qid, flags, ".".join(labels), qtype, qclass, data[_HEADER.size : pos + 4])


def answer(q: Query, name: str, addresses: tuple[str, ...], ttl: int = 1) -> bytes:
    """The response to `q`: `addresses` if it asks for `name` (type A), NXDOMAIN for other names.

    No address at all is NXDOMAIN too: nginx then fails fast ("could not be resolved"), which edge.conf
    turns into a JSON 503, instead of waiting for a resolver that will never say more.
    """
    flags = _QR | _AA | (q.flags & _RD) | _RA
    if q.name != name.rstrip(".").lower() or q.qclass != CLASS_IN or (q.qtype == TYPE_A and not addresses):
        return _HEADER.pack(q.id, flags | RCODE_NXDOMAIN, 1, 0, 0, 0) + q.question
    records = [ipaddress.IPv4Address(a).packed for a in addresses] if q.qtype == TYPE_A else []
    body = b"".join(struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, ttl, 4) + ip for ip in records)
    return _HEADER.pack(q.id, flags, 1, len(records), 0, 0) + q.question + body


def refuse(data: bytes) -> bytes | None:
    """FORMERR for a message with a readable header, None (no answer) for anything shorter."""
    if len(data) < _HEADER.size:
        return None
    qid = _HEADER.unpack_from(data)[0]
    return _HEADER.pack(qid, _QR | RCODE_FORMERR, 0, 0, 0, 0)
