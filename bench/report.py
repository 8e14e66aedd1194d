"""Turn results.json into results.md (tables, targets met or not) and PNG plots next to it."""

from __future__ import annotations

import math
from pathlib import Path

from bench import stats

TARGETS = {"fleet/tutorial": 2.0, "fleet/gunicorn": 3.0}
P99_TARGET_MS = 15.0
QUIET = 0.10  # a round is "quiet" when other work kept under 10% of the CPUs busy just before it


def quiet_view(tp: dict) -> tuple[dict[str, dict], dict[str, dict]]:
    """Per-stack medians and per-round ratios over the rounds where every stack of the pair was quiet."""
    rows = {r["key"]: r for r in tp.get("rows", [])}
    stacks: dict[str, dict] = {}
    for key, r in rows.items():
        quiet = [x for x in r["rounds"] if x.get("background_busy", 1.0) < QUIET]
        if quiet:
            stacks[key] = {
                "rounds": len(quiet),
                "rps": stats.median([x["rps"] for x in quiet]),
                "p50_ms": stats.median([x["p50_ms"] for x in quiet]),
                "p99_ms": stats.median([x["p99_ms"] for x in quiet]),
            }
    ratios: dict[str, dict] = {}
    for name in tp.get("ratios", {}):
        a, b = name.split("/")
        if a not in rows or b not in rows:
            continue
        pairs = [
            x["rps"] / y["rps"]
            for x, y in zip(rows[a]["rounds"], rows[b]["rounds"], strict=False)
            if max(x.get("background_busy", 1.0), y.get("background_busy", 1.0)) < QUIET and y["rps"]
        ]
        if pairs:
            ratios[name] = {"median": stats.median(pairs), "min": min(pairs), "max": max(pairs), "n": len(pairs)}
    return stacks, ratios


PLOTS = ("throughput.png", "tuning.png", "hotadd.png", "reload.png", "scale.png")


def _f(x: float | None, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.{digits}f}"


# ---- markdown -------------------------------------------------------------------------------------


def machine_md(m: dict) -> str:
    v = m.get("versions", {})
    return (
        f"Measured {m.get('date', '?')} on {m.get('cpus', '?')} CPUs ({m.get('cpu_model', '?')}), "
        f"{m.get('memory_gib', '?')} GiB, Linux {m.get('kernel', '?')} ({m.get('os', '?')}); "
        f"nginx {v.get('nginx', '?')}, uWSGI {v.get('uwsgi', '?')}, Python {v.get('python', '?')}, "
        f"Flask {v.get('flask', '?')}, gunicorn {v.get('gunicorn', '?')}, wrk {v.get('wrk', '?')}. "
        f"Load average at start: {', '.join(str(x) for x in m.get('loadavg_at_start', []))}."
    )


def targets_md(tp: dict) -> list[str]:
    rows = {r["key"]: r for r in tp.get("rows", [])}
    ratios = tp.get("ratios", {})
    q_stacks, q_ratios = quiet_view(tp)
    lines = [
        "Ratios are medians of per-round ratios (both stacks measured in the same round); 2 workers in all. "
        f"'quiet' uses only the rounds where other work kept the CPUs under {QUIET * 100:.0f}% busy just before "
        "each of the two runs (n = such rounds).",
        "",
        "| fleet as | vs tutorial (target >= 2x) | vs gunicorn (target >= 3x) | p99 at 64 conns (target <= 15 ms) "
        "| share of the nginx ceiling | share of uWSGI alone |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key in [k for k in rows if k.startswith("fleet")]:
        cells = [rows[key]["label"].replace("fleet: nginx uwsgi_pass -> ", "")]
        for base, goal in (("tutorial", TARGETS["fleet/tutorial"]), ("gunicorn", TARGETS["fleet/gunicorn"])):
            r = ratios.get(f"{key}/{base}")
            q = q_ratios.get(f"{key}/{base}")
            cell = f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})" if r else "n/a"
            if q:
                cell += f"; quiet {q['median']:.2f}x (n={q['n']})"
            verdict = (r or q or {}).get("median", 0)  # all rounds decide; the quiet view informs
            cell += " **met**" if verdict >= goal else " not met"
            cells.append(cell)
        p99 = rows[key]["p99_ms"]
        qp = q_stacks.get(key, {}).get("p99_ms")
        cell = f"{p99:.1f} ms" + (f"; quiet {qp:.1f} ms" if qp is not None else "")
        cell += " **met**" if p99 <= P99_TARGET_MS else " not met"
        cells.append(cell)
        for base in ("ceiling", "uwsgi-direct"):
            r = ratios.get(f"{key}/{base}")
            q = q_ratios.get(f"{key}/{base}")
            cells.append(
                (f"{r['median'] * 100:.0f}%" if r else "n/a") + (f"; quiet {q['median'] * 100:.0f}%" if q else "")
            )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def quiet_cell(q: dict | None) -> str:
    return f"{q['rps']:,.0f}, {q['p99_ms']:.1f} (n={q['rounds']})" if q else "-"


def throughput_md(tp: dict) -> list[str]:
    plan = tp.get("plan", {})
    q_stacks, _ = quiet_view(tp)
    lines = [
        f"wrk -t{plan.get('threads', 2)} -c{plan.get('connections', 64)}, {plan.get('rounds')} alternating "
        f"rounds of {plan.get('seconds')} s per stack; median (min-max) over rounds. 'busy' = share of "
        "the machine's CPUs busy with other work just before a run (median; each run waits up to 3 s for it "
        "to fall under 30%).",
        "",
        "| stack | req/s | spread | p50 ms | p99 ms | max ms | errors | busy | quiet rounds: req/s, p99 ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in tp.get("rows", []):
        lines.append(
            f"| {r['label']} | {_f(r['rps_median'])} ({_f(r['rps_min'])}-{_f(r['rps_max'])}) "
            f"| {r['rps_spread'] * 100:.0f}% | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.0f} "
            f"| {r['errors']} | {r.get('background_busy', 0) * 100:.0f}% | {quiet_cell(q_stacks.get(r['key']))} |"
        )
    return lines


def tuning_md(tu: dict) -> list[str]:
    plan = tu.get("plan", {})
    lines = [
        "fleet's data path assembled by hand (nginx uwsgi_pass -> 2 vassals x 1 process over unix sockets, no "
        "Emperor), at fleet's settings and with one change each. Every variant runs in "
        f"{plan.get('rounds')} back-to-back pairs of {plan.get('seconds')} s with fleet's settings; change = "
        "median of the per-pair req/s ratios (min..max).",
        "",
        "| variant | req/s | p50 ms | p99 ms | req/s change | p99 change |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in tu.get("rows", []):
        gain = r.get("gain") or {}
        g = (
            f"{(gain['median'] - 1) * 100:+.1f}% ({(gain['min'] - 1) * 100:+.0f}..{(gain['max'] - 1) * 100:+.0f})"
            if gain
            else "(reference)"
        )
        p99 = f"{(r['p99_vs_base'] - 1) * 100:+.0f}%" if r.get("p99_vs_base") else "-"
        lines.append(f"| {r['label']} | {_f(r['rps_median'])} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {g} | {p99} |")
    return lines


def hotadd_md(ha: dict) -> list[str]:
    lines = [
        f"{ha.get('trials')} trials each. fleet: file written (temp + rename) to first GET / through nginx "
        "answered by the new backend; removal: file deleted to nginx no longer choosing it. Emperor alone "
        "(emperor-freq 3, no control plane): drop to the vassal's socket answering; delete to the socket "
        "refusing.",
        "",
        "| | add median ms | add p90 | add max | remove median ms | remove max | failed requests |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, label in (("fleet", "fleet (through nginx)"), ("emperor", "uWSGI Emperor alone (socket)")):
        d = ha.get(key)
        if not d:
            continue
        a, r = d["add_ms"], d["remove_ms"]
        lines.append(
            f"| {label} | {a['median']:.0f} | {a['p90']:.0f} | {a['max']:.0f} | {r['median']:.0f} "
            f"| {r['max']:.0f} | {d.get('failed_total', '-')} |"
        )
    return lines


def failure_bursts(timeline: list, gap: float = 0.5) -> list[float]:
    """Durations (s) of the bursts of failed requests in a timeline of [start, ms, ok] points.

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


def reload_md(rl: dict) -> list[str]:
    lines = [
        "16 concurrent clients, a new connection per request, every request recorded; numbers cover the "
        "whole run (before, during and after the events); 'during' = the seconds after each event; "
        "'failing for' = the longest stretch in which requests failed; 'back in' = until the affected "
        "backend answers from a freshly loaded app.",
        "",
        "| backends | event | requests | failed | failing for | p50 ms | p99 ms | max ms | during: p99 / max ms "
        "| back in |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    names = {"touch": "touch vassal file", "rolling": "fleet reload --all", "kill9": "kill -9 vassal master"}
    for n, scen in rl.items():
        if not isinstance(scen, dict) or n in ("seconds", "skipped", "error"):
            continue
        for kind, s in scen.items():
            o = s["overall"]
            ev = s["events"]
            dur_p99 = max((e["p99_ms"] for e in ev), default=math.nan)
            dur_max = max((e["max_ms"] for e in ev), default=math.nan)
            rec = [e["recovered_s"] for e in ev if e.get("recovered_s") is not None]
            cmd = [e["command_s"] for e in ev if e.get("command_s") is not None]
            back = f"{stats.median(rec):.2f} s" if rec else "-"
            if cmd:
                back += f" (command {stats.median(cmd):.1f} s)"
            fails = ", ".join(f"{k} {v}" for k, v in o["failures"].items())
            bursts = failure_bursts(s.get("timeline", []))
            failing = f"{max(bursts):.2f} s" if bursts else "-"
            lines.append(
                f"| {n} | {names.get(kind, kind)} x{len(ev)} | {o['requests']} | {o['failed']}"
                f"{' (' + fails + ')' if fails else ''} | {failing} | {o['p50_ms']:.1f} | {o['p99_ms']:.1f} "
                f"| {o['max_ms']:.0f} | {dur_p99:.0f} / {dur_max:.0f} | {back} |"
            )
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
            f"| {r['vassals_pss_total_mib']:.0f} | {_f(nt * 1000 if nt else None)} "
            f"| {r['nginx_reload_s'] * 1000:.0f} "
            f"| {_f(r.get('add_s'), 2)} | {_f(r.get('control_sync_ms'), 1)} "
            f"| {_f(r.get('idle_cpu_control_pct'), 2)} | {_f(r.get('idle_cpu_emperor_pct'), 2)} "
            f"| {_f(r.get('idle_cpu_vassals_pct'), 2)} |"
        )
    return lines


def markdown(results: dict, plots: list[str]) -> str:
    out = ["# fleet benchmarks", ""]
    if results.get("quick"):
        out += ["**Quick run (smoke test): too short to quote.**", ""]
    if "machine" in results:
        out += [machine_md(results["machine"]), ""]
    sections = [
        ("throughput", "Throughput and latency, GET / (same app, 2 workers in all)", throughput_md),
        ("tuning", "Tuning: what each option buys", tuning_md),
        ("hotadd", "Hot add and removal", hotadd_md),
        ("reload", "Reloads and crashes under load", reload_md),
        ("scale", "Cost as vassals grow", scale_md),
    ]
    if isinstance(results.get("throughput"), dict) and results["throughput"].get("rows"):
        out += ["## Targets", "", *targets_md(results["throughput"]), ""]
    for key, title, render in sections:
        data = results.get(key)
        if not isinstance(data, dict):
            continue
        out += [f"## {title}", ""]
        if "error" in data or "skipped" in data:
            out += [f"Not measured: {data.get('error') or data.get('skipped')}", ""]
            continue
        out += [*render(data), ""]
        png = f"{key}.png"
        if png in plots:
            out += [f"![{title}]({png})", ""]
    return "\n".join(out)


# ---- plots ----------------------------------------------------------------------------------------


def plot_all(results: dict, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    for key, fn in (
        ("throughput", _plot_throughput),
        ("tuning", _plot_tuning),
        ("hotadd", _plot_hotadd),
        ("reload", _plot_reload),
        ("scale", _plot_scale),
    ):
        data = results.get(key)
        if not isinstance(data, dict) or "error" in data or "skipped" in data:
            continue
        try:
            fig = fn(plt, data)
        except (KeyError, ValueError, TypeError):
            continue
        if fig is None:
            continue
        fig.savefig(out / f"{key}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        made.append(f"{key}.png")
    return made


def _plot_throughput(plt, tp: dict):
    all_rows = tp["rows"]
    ceiling = next((r for r in all_rows if r["key"] == "ceiling"), None)
    rows = [r for r in all_rows if r["key"] != "ceiling"][::-1]
    labels = [r["label"] for r in rows]
    fig, (ax, lat) = plt.subplots(1, 2, figsize=(13, 0.55 * len(rows) + 1.8), sharey=True)
    med = [r["rps_median"] for r in rows]
    lo = [r["rps_median"] - r["rps_min"] for r in rows]
    hi = [r["rps_max"] - r["rps_median"] for r in rows]
    colors = ["#d62728" if r["key"].startswith("fleet") else "#7f7f7f" for r in rows]
    ax.barh(labels, med, xerr=[lo, hi], color=colors, capsize=3)
    for y, r in enumerate(rows):
        ax.text(r["rps_max"], y, f"  {r['rps_median']:,.0f}", va="center", fontsize=8)
    ax.set_xlim(0, max(r["rps_max"] for r in rows) * 1.18)
    ax.set_xlabel("requests/s (median; bars: min-max over rounds)")
    title = "GET /, 2 workers, wrk -c64"
    if ceiling:
        title += f" (nginx return 200 ceiling: {ceiling['rps_median']:,.0f}/s, off scale)"
    ax.set_title(title, fontsize=10)
    ys = range(len(rows))
    lat.barh([y + 0.2 for y in ys], [r["p50_ms"] for r in rows], height=0.4, color="#1f77b4", label="p50")
    lat.barh([y - 0.2 for y in ys], [r["p99_ms"] for r in rows], height=0.4, color="#ff7f0e", label="p99")
    lat.axvline(P99_TARGET_MS, color="black", linestyle="--", linewidth=1, label=f"p99 target {P99_TARGET_MS:g} ms")
    lat.set_xlabel("latency ms (median over rounds)")
    lat.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _plot_tuning(plt, tu: dict):
    rows = [r for r in tu["rows"] if r.get("gain")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    labels = [r["label"] for r in rows][::-1]
    med = [(r["gain"]["median"] - 1) * 100 for r in rows][::-1]
    lo = [(r["gain"]["median"] - r["gain"]["min"]) * 100 for r in rows][::-1]
    hi = [(r["gain"]["max"] - r["gain"]["median"]) * 100 for r in rows][::-1]
    colors = ["#2ca02c" if m > 0 else "#d62728" for m in med]
    ax.barh(labels, med, xerr=[lo, hi], color=colors, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("req/s change vs fleet's settings, % (median of pairs; bars: min-max)")
    ax.set_title("one change at a time to fleet's data path")
    return fig


def _plot_hotadd(plt, ha: dict):
    series = []
    for key, label in (("fleet", "fleet\n(through nginx)"), ("emperor", "Emperor alone\n(freq 3 s)")):
        if key in ha:
            series.append(
                (
                    label,
                    [t["add_s"] * 1000 for t in ha[key]["trials"]],
                    [t["remove_s"] * 1000 for t in ha[key]["trials"]],
                )
            )
    if not series:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, idx, title in (
        (axes[0], 1, "file drop -> first answer"),
        (axes[1], 2, "file delete -> unrouted / gone"),
    ):
        data = [s[idx] for s in series]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(series) + 1), [s[0] for s in series])
        for i, d in enumerate(data, 1):
            ax.scatter([i] * len(d), d, s=10, alpha=0.6, color="#d62728" if i == 1 else "#7f7f7f")
        ax.set_ylabel("ms")
        ax.set_title(title)
    fig.tight_layout()
    return fig


def _plot_reload(plt, rl: dict):
    panels = [
        (n, kind, s)
        for n, scen in rl.items()
        if isinstance(scen, dict)
        for kind, s in scen.items()
        if isinstance(s, dict) and "timeline" in s
    ]
    if not panels:
        return None
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3 * rows), squeeze=False)
    names = {"touch": "touch", "rolling": "fleet reload --all", "kill9": "kill -9 master"}
    for ax, (n, kind, s) in zip(axes.flat, panels, strict=False):
        tl = s["timeline"]
        ok = [(t, ms) for t, ms, good in tl if good]
        bad = [(t, ms) for t, ms, good in tl if not good]
        if ok:
            ax.scatter([p[0] for p in ok], [p[1] for p in ok], s=2, alpha=0.4, color="#1f77b4", rasterized=True)
        if bad:
            ax.scatter([p[0] for p in bad], [p[1] for p in bad], s=12, color="#d62728", marker="x", label="failed")
            ax.legend(loc="upper right", fontsize=7)
        for ev in s["events"]:
            ax.axvline(ev["at"], color="#7f7f7f", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_title(
            f"{names.get(kind, kind)}, backends {n}: failed {s['overall']['failed']}",
            fontsize=9,
        )
        ax.set_xlabel("s")
        ax.set_ylabel("latency ms")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _plot_scale(plt, sc: dict):
    rows = sc["rows"]
    if not rows:
        return None
    n = [r["vassals"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    axes[0].plot(n, [r["vassal_pss_mib"] for r in rows], "o-", label="PSS")
    axes[0].plot(n, [r["vassal_rss_mib"] for r in rows], "s--", label="RSS")
    axes[0].set_title("memory per vassal (MiB)")
    axes[0].legend(fontsize=8)
    axes[1].plot(n, [r["up_s"] for r in rows], "o-", label="fleet up")
    axes[1].plot(n, [r["add_s"] or math.nan for r in rows], "s--", label="fleet add (1 more)")
    axes[1].set_title("seconds")
    axes[1].legend(fontsize=8)
    axes[2].plot(n, [r["nginx_reload_s"] * 1000 for r in rows], "o-", label="nginx reload")
    axes[2].plot(n, [(r.get("nginx_t_s") or math.nan) * 1000 for r in rows], "s--", label="nginx -t")
    axes[2].plot(n, [r.get("control_sync_ms") or math.nan for r in rows], "^:", label="control sync")
    axes[2].set_title("ms per change")
    axes[2].legend(fontsize=8)
    for key, label, style in (
        ("control", "control plane", "o-"),
        ("emperor", "Emperor", "s--"),
        ("vassals", "all vassals", "^:"),
    ):
        axes[3].plot(n, [r.get(f"idle_cpu_{key}_pct", math.nan) for r in rows], style, label=label)
    axes[3].set_title("idle CPU (% of a core)")
    axes[3].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("vassals")
    fig.tight_layout()
    return fig


def write(results: dict, out: Path) -> None:
    plots = plot_all(results, out)
    (out / "results.md").write_text(markdown(results, plots) + "\n")
