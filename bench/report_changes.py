"""results.md tables of the sections about change: hot add, keep-alive churn, reloads, scale."""

from __future__ import annotations

import math

from bench import stats
from bench.report_speed import f

STEPS = ("spawn", "import", "healthy", "routed")
STEP_NAMES = {
    "spawn": "drop -> vassal master forked (inotify, a control-plane pass waking the Emperor, its on-demand "
    "socket, the probe's connect)",
    "import": "-> app module executed (launcher, uWSGI start, `import flask`, the app)",
    "healthy": "-> control plane's `healthy` (workers forked, the probe answered, the pass that sees it)",
    "routed": "-> first answer through nginx (slots re-pointed, the pollers' next request)",
}


def hotadd_md(ha: dict) -> list[str]:
    lines = [
        f"{ha.get('trials')} trials each. fleet: file written (temp + rename) to first GET / through nginx "
        "answered by the new backend, while 2 new-connection and 2 keep-alive clients poll; removal: file "
        "deleted to nginx no longer choosing it. Emperor alone (emperor-freq 3, no control plane): drop to "
        "the vassal's socket answering; delete to the socket refusing.",
        "",
        "| | add median ms | add p90 | add max | remove median ms | remove max | failed requests (keep-alive) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, label in (("fleet", "fleet (through nginx)"), ("emperor", "uWSGI Emperor alone (socket)")):
        d = ha.get(key)
        if not d:
            continue
        a, r = d["add_ms"], d["remove_ms"]
        keep = sum(t.get("keepalive_failed", 0) for t in d.get("trials", []))
        failed = f"{d['failed_total']} ({keep})" if "failed_total" in d else "-"
        lines.append(
            f"| {label} | {a['median']:.0f} | {a['p90']:.0f} | {a['max']:.0f} | {r['median']:.0f} "
            f"| {r['max']:.0f} | {failed} |"
        )
    parts = breakdown(ha)
    if parts:
        lines += [
            "",
            "Where fleet's add time goes (ms, median and max over the trials; each step from the previous "
            "mark; process start times have 10 ms resolution):",
            "",
            "| step | median ms | max ms |",
            "| --- | --- | --- |",
        ]
        for step in STEPS:
            if step in parts:
                lines.append(f"| {STEP_NAMES[step]} | {parts[step]['median']:.0f} | {parts[step]['max']:.0f} |")
        if "starting" in parts:
            st = parts["starting"]
            lines += [
                "",
                f"Beside the chain: drop to the control plane's `starting` transition, {st['median']:.0f} ms median, "
                f"{st['max']:.0f} ms max (it is published after the first pass, whose "
                "probe may wait up to the probe timeout, 0.5 s, for a vassal that is still importing).",
            ]
    return lines


def breakdown(ha: dict) -> dict[str, dict]:
    trials = (ha.get("fleet") or {}).get("trials", [])
    out = {}
    for step in (*STEPS, "starting"):
        values = [t["breakdown_s"][step] * 1000 for t in trials if step in t.get("breakdown_s", {})]
        if values:
            out[step] = {"median": stats.median(values), "max": max(values)}
    return out


def churn_md(ch: dict) -> list[str]:
    w = ch["wrk"]
    n = ch.get("new_connection_clients", {})
    kinds = ", ".join(f"{k} {v}" for k, v in ch.get("by_kind", {}).items())
    return [
        f"wrk -t1 -c{w['connections']} (keep-alive) against fleet with 2 backends while {ch['changes']} file "
        f"changes ({kinds}) are made one after another, each applied before the next; beside it, 4 clients "
        "with a new connection per request.",
        "",
        "| keep-alive requests | socket errors (connect / read / write / timeout) | non-2xx | new-connection "
        "requests, failed | nginx reloads | upstream errors in nginx's log |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {w['requests']:,} | **{w['socket_errors']}** ({w['connect_errors']} / {w['read_errors']} / "
        f"{w['write_errors']} / {w['timeouts']}) | **{w['non2xx']}** | {n.get('requests', 0):,}, {n.get('failed', 0)} "
        f"| {ch['nginx_reloads']} | {len(ch.get('nginx_upstream_errors', []))} |",
    ]


def failure_bursts(timeline: list, gap: float = 0.5) -> list[float]:
    """Durations (s) of the bursts of failed requests in a timeline of [start, ms, ok, ...] points.

    A failed request returns fast and its client sends the next one at once, so a count of failures
    depends on the load generator; how long requests kept failing does not.
    """
    starts = sorted(p[0] + p[1] / 1000 for p in timeline if not p[2])
    bursts: list[float] = []
    first = last = None
    for t in starts:
        if last is not None and t - last > gap:
            bursts.append(last - first)
            first = None
        if first is None:
            first = t
        last = t
    if first is not None:
        bursts.append(last - first)
    return bursts


def _failures(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.get("failures", {}).items())


def reload_md(rl: dict) -> list[str]:
    lines = [
        "16 clients with a new connection per request and 8 on keep-alive connections, every request "
        "recorded; numbers cover the whole run (before, during and after the events); 'during' = the seconds "
        "after each event; 'failing for' = the longest stretch in which requests failed; 'back in' = until "
        "the affected backend answers from a freshly loaded app. Keep-alive failures are wrk's kinds "
        "(connect, read, write, timeout).",
        "",
        "| backends | event | requests | failed | keep-alive: requests, failed | failing for | p50 ms | p99 ms "
        "| max ms | during: p99 / max ms | back in |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    names = {"touch": "touch vassal file", "rolling": "fleet reload --all", "kill9": "kill -9 vassal master"}
    for n, scen in rl.items():
        if not isinstance(scen, dict) or n in ("seconds", "skipped", "error", "churn"):
            continue
        for kind, s in scen.items():
            o = s["overall"]
            ev = s["events"]
            keep = o.get("keepalive", {})
            dur_p99 = max((e["p99_ms"] for e in ev), default=math.nan)
            dur_max = max((e["max_ms"] for e in ev), default=math.nan)
            rec = [e["recovered_s"] for e in ev if e.get("recovered_s") is not None]
            cmd = [e["command_s"] for e in ev if e.get("command_s") is not None]
            back = f"{stats.median(rec):.2f} s" if rec else "-"
            if cmd:
                back += f" (command {stats.median(cmd):.1f} s)"
            fails = _failures(o)
            kfails = _failures(keep)
            bursts = failure_bursts(s.get("timeline", []))
            failing = f"{max(bursts):.2f} s" if bursts else "-"
            lines.append(
                f"| {n} | {names.get(kind, kind)} x{len(ev)} | {o['requests']} | {o['failed']}"
                f"{' (' + fails + ')' if fails else ''} | {keep.get('requests', 0)}, {keep.get('failed', 0)}"
                f"{' (' + kfails + ')' if kfails else ''} | {failing} | {o['p50_ms']:.1f} | {o['p99_ms']:.1f} "
                f"| {o['max_ms']:.0f} | {dur_p99:.0f} / {dur_max:.0f} | {back} |"
            )
    if isinstance(rl.get("churn"), dict) and "wrk" in rl["churn"]:
        lines += ["", "**Keep-alive clients across add/touch/rm changes:**", "", *churn_md(rl["churn"])]
    return lines


def scale_md(sc: dict) -> list[str]:
    lines = [
        f"Each size a fresh cluster at the shipped vassal defaults; idle CPU over {sc.get('idle_seconds')} s "
        "(% of one core).",
        "",
        "| vassals | fleet up s | PSS/vassal MiB | RSS/vassal MiB | vassals PSS total MiB | nginx -t ms "
        "| nginx reload ms | fleet add s | sync ms | idle CPU control % | idle CPU Emperor % "
        "| idle CPU vassals % |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sc.get("rows", []):
        nt = r.get("nginx_t_s")
        lines.append(
            f"| {r['vassals']} | {r['up_s']:.1f} | {r['vassal_pss_mib']:.1f} | {r['vassal_rss_mib']:.1f} "
            f"| {r['vassals_pss_total_mib']:.0f} | {f(nt * 1000 if nt else None)} "
            f"| {r['nginx_reload_s'] * 1000:.0f} "
            f"| {f(r.get('add_s'), 2)} | {f(r.get('control_sync_ms'), 1)} "
            f"| {f(r.get('idle_cpu_control_pct'), 2)} | {f(r.get('idle_cpu_emperor_pct'), 2)} "
            f"| {f(r.get('idle_cpu_vassals_pct'), 2)} |"
        )
    return lines
