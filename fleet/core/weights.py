"""Weights (pure): how a fixed number of nginx slots is shared by backends in proportion to their weights.

nginx picks among the slots in their order, so each backend's share of new requests is its share of the
slots, and the order decides how fair the short run is. Two rules:

- Counts by largest remainder: each backend gets the whole part of `slots * weight / total`, and the
  slots left go to the largest remainders (ties by name, so the result is deterministic). Each count is
  within one slot of the exact share; a backend with a weight above 0 gets at least one slot.
- Order by smooth weighted round robin (nginx's own algorithm, with the counts as weights): 1 slot of A
  for 3 of B is laid out B B A B, never B B B A... a run of one backend is as short as the counts allow.

Weight 0 is a warm standby: probed and kept healthy, given no slot. When every backend of a group is at 0
they share the slots equally: a group of standbys only is a mistake more likely than a wish for JSON 503s,
and `fleet status` shows the weights that caused it.
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_WEIGHT = 100
MAX_WEIGHT = 1000


def effective(weights: Mapping[str, int]) -> dict[str, int]:
    """The weights slots are shared by: the positive ones; all equal if every one is 0."""
    positive = {name: w for name, w in weights.items() if w > 0}
    return positive or dict.fromkeys(weights, 1)


def counts(weights: Mapping[str, int], slots: int) -> dict[str, int]:
    """How many of `slots` slots each backend gets (largest remainder; see the module's docstring)."""
    shares = effective(weights)
    total = sum(shares.values())
    if not shares or slots <= 0:
        return {}
    whole = {name: slots * w // total for name, w in shares.items()}
    rest = {name: slots * w % total for name, w in shares.items()}
    left = slots - sum(whole.values())
    for name in sorted(shares, key=lambda n: (-rest[n], n))[:left]:
        whole[name] += 1
    # A backend with a weight gets a slot, taken from the one with the most, if there are slots enough.
    for name in sorted(n for n in shares if whole[n] == 0):
        richest = max(sorted(whole), key=lambda n: whole[n])
        if whole[richest] <= 1:
            break
        whole[richest] -= 1
        whole[name] = 1
    return {name: c for name, c in whole.items() if c > 0}


def interleave(slot_counts: Mapping[str, int]) -> list[str]:
    """The slots in order: smooth weighted round robin over the counts (no long run of one backend)."""
    total = sum(slot_counts.values())
    current = dict.fromkeys(sorted(slot_counts), 0)
    order = []
    for _ in range(total):
        for name in current:
            current[name] += slot_counts[name]
        pick = max(current, key=lambda n: current[n])  # first in name order on a tie
        current[pick] -= total
        order.append(pick)
    return order


def assign(weights: Mapping[str, int], slots: int) -> list[str]:
    """The backend each of `slots` slots points at, for these backends and weights (deterministic)."""
    return interleave(counts(weights, slots))


def shares(weights: Mapping[str, int]) -> dict[str, float]:
    """Each backend's share of new requests in percent, as the weights ask (0 for a standby)."""
    chosen = effective(weights)
    total = sum(chosen.values())
    return {name: 100.0 * chosen.get(name, 0) / total if total else 0.0 for name in weights}
