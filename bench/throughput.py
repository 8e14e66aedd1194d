"""Throughput and latency of `GET /` with wrk: alternating rounds over all stacks, medians and ratios.

All stacks run side by side (idle ones cost only memory); each round measures every stack once, in
an order rotated from round to round, so drift on a noisy 2-core machine hits them all alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from bench import stats
from bench.servers import Target
from bench.wrk import Wrk, WrkResult


@dataclass(frozen=True)
class Plan:
    rounds: int = 5
    seconds: float = 5.0
    warmup: float = 1.0
    connections: int = 64
    threads: int = 2


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def background_busy(seconds: float = 0.3) -> float:
    """Fraction of all CPUs busy over `seconds` while no load is sent: other work on the machine."""
    busy0, total0 = _cpu_times()
    time.sleep(seconds)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


def wait_quiet(threshold: float = 0.3, max_wait: float = 3.0) -> float:
    """Wait (at most `max_wait` s) for other work to leave the CPUs below `threshold` busy; returns the last reading.

    On a shared machine this keeps most runs out of other people's bursts; the reading is recorded.
    """
    deadline = time.monotonic() + max_wait
    busy = background_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = background_busy()
    return busy


def rotate(items: list, k: int) -> list:
    k %= max(1, len(items))
    return items[k:] + items[:k]


def measure(targets: list[Target], plan: Plan, log: Callable[[str], None] = print) -> dict[str, list[WrkResult]]:
    """wrk each target `plan.rounds` times, interleaved; returns the per-round results by target key."""
    wrk = Wrk(threads=plan.threads, connections=plan.connections)
    try:
        for t in targets:
            wrk.run(t.url, plan.warmup)
        results: dict[str, list[WrkResult]] = {t.key: [] for t in targets}
        for r in range(plan.rounds):
            for t in rotate(targets, r):
                busy = wait_quiet()
                res = wrk.run(t.url, plan.seconds)
                res = replace(res, background_busy=round(busy, 3))
                results[t.key].append(res)
                log(
                    f"  round {r + 1}/{plan.rounds} {t.key:<14} {res.rps:9.0f} req/s  "
                    f"p50 {res.p50_ms:6.2f} ms  p99 {res.p99_ms:6.2f} ms  errors {res.errors}  "
                    f"(machine busy before: {busy * 100:.0f}%)"
                )
        return results
    finally:
        wrk.close()


def summarize(targets: list[Target], results: dict[str, list[WrkResult]]) -> list[dict]:
    """One row per target: median req/s with min/max and spread, median p50/p99, worst max, errors."""
    rows = []
    for t in targets:
        runs = results[t.key]
        rps = [r.rps for r in runs]
        rows.append(
            {
                "key": t.key,
                "label": t.label,
                "rps_median": stats.median(rps),
                "rps_min": min(rps),
                "rps_max": max(rps),
                "rps_spread": stats.spread(rps),
                "p50_ms": stats.median([r.p50_ms for r in runs]),
                "p90_ms": stats.median([r.p90_ms for r in runs]),
                "p99_ms": stats.median([r.p99_ms for r in runs]),
                "p99_ms_worst": max(r.p99_ms for r in runs),
                "max_ms": max(r.max_ms for r in runs),
                "errors": sum(r.errors for r in runs),
                "background_busy": stats.median([r.background_busy for r in runs]),
                "rounds": [r.as_dict() for r in runs],
                "detail": t.detail,
            }
        )
    return rows


def paired_ratio(results: dict[str, list[WrkResult]], a: str, b: str) -> dict[str, float]:
    """Median and range over rounds of rps(a)/rps(b), both measured in the same round."""
    if a not in results or b not in results:
        return {}
    ratios = [x.rps / y.rps for x, y in zip(results[a], results[b], strict=False) if y.rps]
    if not ratios:
        return {}
    return {"median": stats.median(ratios), "min": min(ratios), "max": max(ratios)}


def measure_pairs(
    base: Target, variants: list[Target], plan: Plan, log: Callable[[str], None] = print
) -> tuple[dict[str, list[WrkResult]], dict[str, list[float]]]:
    """Each variant against `base` in back-to-back pairs (order alternating), `plan.rounds` pairs each.

    A pair is measured within seconds, so the ratio inside it is robust to the slow drift of a shared
    machine. Returns all runs by key (the base's pooled) and each variant's per-pair ratios.
    """
    wrk = Wrk(threads=plan.threads, connections=plan.connections)
    try:
        for t in (base, *variants):
            wrk.run(t.url, plan.warmup)
        runs: dict[str, list[WrkResult]] = {t.key: [] for t in (base, *variants)}
        ratios: dict[str, list[float]] = {t.key: [] for t in variants}
        for r in range(plan.rounds):
            for v in variants:
                pair = (base, v) if (r % 2 == 0) else (v, base)
                busy = round(wait_quiet(), 3)
                got = {t.key: replace(wrk.run(t.url, plan.seconds), background_busy=busy) for t in pair}
                runs[base.key].append(got[base.key])
                runs[v.key].append(got[v.key])
                ratios[v.key].append(got[v.key].rps / got[base.key].rps if got[base.key].rps else float("nan"))
                log(
                    f"  pair {r + 1}/{plan.rounds} {v.key:<15} {got[v.key].rps:8.0f} vs {got[base.key].rps:8.0f} req/s"
                    f" ({(ratios[v.key][-1] - 1) * 100:+5.1f}%)  p99 {got[v.key].p99_ms:6.2f} vs "
                    f"{got[base.key].p99_ms:6.2f} ms"
                )
        return runs, ratios
    finally:
        wrk.close()


def hop_summary(runs: dict[str, list[WrkResult]], ratios: dict[str, list[float]], alone: str, proxied: str) -> dict:
    """The proxy hop from paired runs: rps(proxied)/rps(alone) per pair, and each side's medians."""
    r = ratios[proxied]

    def side(key: str) -> dict:
        got = runs[key]
        return {
            "rps": stats.median([x.rps for x in got]),
            "p50_ms": stats.median([x.p50_ms for x in got]),
            "p99_ms": stats.median([x.p99_ms for x in got]),
            "max_ms": max(x.max_ms for x in got),
            "errors": sum(x.errors for x in got),
            "busy": stats.median([x.background_busy for x in got]),
        }

    return {
        "alone": alone,
        "proxied": proxied,
        "ratio": {"median": stats.median(r), "min": min(r), "max": max(r), "pairs": [round(x, 4) for x in r]},
        "alone_stats": side(alone),
        "proxied_stats": side(proxied),
    }


def noise(runs: list[WrkResult]) -> dict:
    """How much two runs of the same stack a few seconds apart differ: |rps[i+1]/rps[i] - 1|, median and p90.

    A one-change variant gains "more than the noise" when its median paired change exceeds the p90."""
    steps = [abs(b.rps / a.rps - 1) for a, b in zip(runs, runs[1:], strict=False) if a.rps]
    if not steps:
        return {}
    return {"median": stats.median(steps), "p90": stats.percentile(steps, 90), "n": len(steps)}
