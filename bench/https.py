"""HTTPS against HTTP through the same fleet: wrk with keep-alive connections (the cost of encryption) and
with a new connection per request (the cost of the TLS handshake, which with fleet's rotation-friendly
config also reads the certificate file), and the handshake's own time as curl sees it.

wrk speaks HTTP/1.1 only; HTTP/2 is not measured here.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bench import stats
from bench.throughput import Plan, rotate, wait_quiet
from bench.wrk import Wrk, WrkResult

CLOSE = ("Connection: close",)


def measure(
    http_url: str, https_url: str, plan: Plan, log: Callable[[str], None] = print
) -> dict[str, list[WrkResult]]:
    """Each of the four (HTTP or HTTPS, keep-alive or a new connection per request) `plan.rounds` times,
    interleaved in a rotating order; the per-round results by key."""
    targets = {
        "http-keepalive": (http_url, ()),
        "https-keepalive": (https_url, ()),
        "http-new-connection": (http_url, CLOSE),
        "https-new-connection": (https_url, CLOSE),
    }
    runners = {
        key: Wrk(threads=plan.threads, connections=plan.connections, headers=headers)
        for key, (_, headers) in targets.items()
    }
    try:
        for key, (url, _) in targets.items():
            runners[key].run(url, plan.warmup)
        results: dict[str, list[WrkResult]] = {key: [] for key in targets}
        for r in range(plan.rounds):
            for key in rotate(list(targets), r):
                busy = wait_quiet()
                res = replace(runners[key].run(targets[key][0], plan.seconds), background_busy=round(busy, 3))
                results[key].append(res)
                log(
                    f"  round {r + 1}/{plan.rounds} {key:<21} {res.rps:8.0f} req/s  p50 {res.p50_ms:6.2f} ms  "
                    f"p99 {res.p99_ms:6.2f} ms  errors {res.errors}  (machine busy before: {busy * 100:.0f}%)"
                )
        return results
    finally:
        for runner in runners.values():
            runner.close()


def handshake_ms(https_url: str, ca: Path, count: int) -> dict:
    """The TLS handshake alone, as curl times it (appconnect - connect), over `count` new connections."""
    curl = shutil.which("curl")
    if curl is None:
        return {"skipped": "curl is not installed"}
    times = []
    for _ in range(count):
        out = subprocess.run(
            [
                curl,
                "-sS",
                "-o",
                "/dev/null",
                "--cacert",
                str(ca),
                "-w",
                "%{time_connect} %{time_appconnect}",
                https_url,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        connect, appconnect = (float(x) for x in out.stdout.split())
        times.append((appconnect - connect) * 1000)
    return {"count": count, "median_ms": stats.median(times), "min_ms": min(times), "max_ms": max(times)}


def summarize(results: dict[str, list[WrkResult]]) -> dict:
    """Medians per key and the HTTPS/HTTP ratios of the medians, keep-alive and new connections."""
    rows = {
        key: {
            "rps_median": stats.median([r.rps for r in runs]),
            "rps_min": min(r.rps for r in runs),
            "rps_max": max(r.rps for r in runs),
            "p50_ms": stats.median([r.p50_ms for r in runs]),
            "p99_ms": stats.median([r.p99_ms for r in runs]),
            "errors": sum(r.errors for r in runs),
            "rounds": [r.as_dict() for r in runs],
        }
        for key, runs in results.items()
    }
    ratios = {
        mode: rows[f"https-{mode}"]["rps_median"] / rows[f"http-{mode}"]["rps_median"]
        for mode in ("keepalive", "new-connection")
        if rows[f"http-{mode}"]["rps_median"]
    }
    return {"rows": rows, "https_over_http": ratios}


def https_md(doc: dict) -> list[str]:
    """results.md's table: req/s and latency of each, the HTTPS/HTTP ratios, the handshake's time."""
    if "rows" not in doc:
        return [f"not measured: {doc.get('skipped') or doc.get('error', '?')}"]
    plan = doc.get("plan", {})
    lines = [
        f"fleet, 1 vassal x 2 processes, `--tls local` (ECDSA P-256), HTTP kept serving beside it; wrk -t2 "
        f"-c{plan.get('connections', '?')}, {plan.get('rounds', '?')} rounds of {plan.get('seconds', '?')} s, "
        "interleaved. New connections: `Connection: close` on every request (a TCP connect, and for HTTPS a "
        "full TLS handshake, each time). HTTP/1.1 (wrk has no HTTP/2).",
        "",
        "| what | req/s (median, min-max) | p50 ms | p99 ms | errors |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, row in doc["rows"].items():
        lines.append(
            f"| {key} | {row['rps_median']:.0f} ({row['rps_min']:.0f}-{row['rps_max']:.0f}) | "
            f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']} |"
        )
    ratios = doc.get("https_over_http", {})
    lines += ["", "HTTPS / HTTP req/s: " + ", ".join(f"{mode} {ratio:.2f}" for mode, ratio in ratios.items()) + "."]
    hs = doc.get("handshake", {})
    if "median_ms" in hs:
        lines.append(
            f"TLS handshake alone (curl, {hs['count']} new connections): median {hs['median_ms']:.2f} ms "
            f"(min {hs['min_ms']:.2f}, max {hs['max_ms']:.2f})."
        )
    return lines
